import numpy as np
import pytest

from privehr.federation import protocol as P
from privehr.federation.wire import MAGIC, Message, WireError, decode, encode


def _msg(payload):
    return Message(P.TRAIN, "s1", 3, "coordinator", "site-a", payload)


def test_round_trip_preserves_types_and_values():
    payload = {
        "params": np.arange(5, dtype=np.float32),
        "words": np.array([1, 2**32 - 1], dtype=np.uint64),
        "config": {"lr": 0.1, "mode": "plain", "nested": [1, b"\x00\xff", None, True]},
        "special": float("nan"),
    }
    back = decode(encode(_msg(payload)))
    assert back.kind == P.TRAIN and back.round == 3 and back.sender == "coordinator"
    np.testing.assert_array_equal(back.payload["params"], payload["params"])
    assert back.payload["params"].dtype == np.float32
    assert back.payload["words"].dtype == np.uint64 and back.payload["words"][1] == 2**32 - 1
    assert back.payload["config"]["nested"] == [1, b"\x00\xff", None, True]
    assert np.isnan(back.payload["special"])


def test_object_arrays_and_unknown_types_cannot_travel():
    with pytest.raises(WireError, match="dtype"):
        encode(_msg({"x": np.array([object()], dtype=object)}))
    with pytest.raises(WireError, match="cannot travel"):
        encode(_msg({"x": {1, 2}}))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b[:4] + bytes([9]) + b[5:], "version"),
        (lambda b: b[: len(b) - 3], "outside the message"),
        (lambda b: b[:12], "truncated"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(mutate, match):
    data = encode(_msg({"params": np.zeros(4, dtype=np.float32)}))
    with pytest.raises(WireError, match=match):
        decode(mutate(data))


def test_oversized_message_rejected_before_parsing():
    data = encode(_msg({"params": np.zeros(1000, dtype=np.float32)}))
    with pytest.raises(WireError, match="exceeds the limit"):
        decode(data, max_bytes=100)


def test_array_shape_must_match_blob_length():
    data = bytearray(encode(_msg({"a": np.zeros(4, dtype=np.float32)})))
    assert data.startswith(MAGIC)
    tampered = bytes(data).replace(b'"float32",[4]', b'"float32",[5]')
    with pytest.raises(WireError):
        decode(tampered)


def test_schema_rejects_nan_params_and_missing_fields():
    with pytest.raises(P.SchemaError, match="NaN"):
        P.validate_request(_msg({"params": np.array([np.nan], dtype=np.float32), "config": {}}))
    with pytest.raises(P.SchemaError, match="config"):
        P.validate_request(_msg({"params": np.zeros(2, dtype=np.float32)}))
