import numpy as np
import pytest

from privehr.federation.gate import Constraint, GateRejection, OutboundGate, Release
from privehr.federation.wire import Message


def _gate():
    charged = []
    return OutboundGate("site-a", lambda m, r: charged.append((m.kind, r.kind, r.event))), charged


def _reply(payload, round_=1):
    return Message("reply", "s", round_, "site-a", "coordinator", payload)


def test_release_is_charged_before_bytes_and_counted():
    gate, charged = _gate()
    data = gate.emit(_reply({"delta": np.ones(3, np.float32)}), Release("model_update"))
    assert charged == [("reply", "model_update", None)]  # no event = non-private, still charged
    assert gate.bytes_up[1] == len(data)


def test_data_free_messages_are_not_charged():
    gate, charged = _gate()
    gate.emit(_reply({"ack": True}), Release.free("ack"))
    assert charged == []


@pytest.mark.parametrize("bad", [np.array([1.0, np.nan], np.float32), np.array([np.inf], np.float64)])
def test_non_finite_update_rejected_with_site_named_and_not_charged(bad):
    gate, charged = _gate()
    with pytest.raises(GateRejection, match="site 'site-a'.*delta.*NaN or Inf"):
        gate.emit(_reply({"delta": bad}), Release("model_update"))
    assert charged == [] and gate.bytes_up[1] == 0


def test_norm_and_shape_constraints():
    gate, _ = _gate()
    with pytest.raises(GateRejection, match="L2 norm"):
        gate.emit(_reply({"delta": np.full(4, 1.0)}), Release("u"), {"delta": Constraint(max_l2=1.0)})
    with pytest.raises(GateRejection, match="shape"):
        gate.emit(_reply({"delta": np.zeros(3)}), Release("u"), {"delta": Constraint(shape=(4,))})
    gate.emit(_reply({"delta": np.full(4, 0.5)}), Release("u"), {"delta": Constraint(shape=(4,), max_l2=1.0)})


def test_oversized_message_rejected():
    gate = OutboundGate("site-b", lambda m, r: None, max_bytes=64)
    with pytest.raises(GateRejection, match="site 'site-b'.*bytes exceeds"):
        gate.emit(_reply({"delta": np.zeros(100, np.float32)}), Release("u"))
