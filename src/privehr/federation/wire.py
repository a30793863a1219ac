"""Bytes on the wire: a versioned, schema-checked envelope with no pickle anywhere.

Why our own envelope rather than pickle or protobuf-per-message: payloads are small trees of
scalars, byte strings and numeric arrays. A JSON header describes the tree (arrays and bytes
become references into one binary blob), so decoding never executes anything, array dtypes
come from a closed list, and every length is checked against the blob before it is used.
The same bytes travel through the in-process simulator and through Flower.

Layout: ``MAGIC (4) | version (1) | header_len (4, big-endian) | header JSON | blob``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAGIC = b"PEHR"
WIRE_VERSION = 1
MAX_MESSAGE_BYTES = 512 * 1024 * 1024  # refuse anything larger before parsing
_ALLOWED_DTYPES = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64", "bool"}
)


class WireError(ValueError):
    """A message that cannot be decoded. Says what is wrong, never echoes payload content."""


@dataclass(frozen=True)
class Message:
    """One protocol message. ``kind`` selects the schema the payload must satisfy."""

    kind: str
    study: str
    round: int
    sender: str
    recipient: str
    payload: dict[str, Any] = field(default_factory=dict)


def _encode_value(value: Any, blobs: list[bytes], offset: list[int]) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        if f != f or f in (float("inf"), float("-inf")):
            return {"$f": repr(f)}  # JSON has no NaN/Inf; keep them explicit so validators see them
        return f
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        ref = {"$b": [offset[0], len(data)]}
        blobs.append(data)
        offset[0] += len(data)
        return ref
    if isinstance(value, np.ndarray):
        dtype = value.dtype.name
        if dtype not in _ALLOWED_DTYPES:
            raise WireError(f"array dtype {dtype!r} cannot travel; use one of {sorted(_ALLOWED_DTYPES)}")
        data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
        ref = {"$a": [offset[0], len(data), dtype, list(value.shape)]}
        blobs.append(data)
        offset[0] += len(data)
        return ref
    if isinstance(value, list | tuple):
        return [_encode_value(v, blobs, offset) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k.startswith("$"):
                raise WireError(f"payload keys must be strings not starting with '$', got {k!r}")
            out[k] = _encode_value(v, blobs, offset)
        return out
    raise WireError(f"type {type(value).__name__} cannot travel on the wire")


def encode(msg: Message) -> bytes:
    blobs: list[bytes] = []
    offset = [0]
    header = {
        "kind": msg.kind,
        "study": msg.study,
        "round": int(msg.round),
        "sender": msg.sender,
        "recipient": msg.recipient,
        "payload": _encode_value(msg.payload, blobs, offset),
    }
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    return MAGIC + bytes([WIRE_VERSION]) + struct.pack(">I", len(head)) + head + b"".join(blobs)


def _decode_value(value: Any, blob: memoryview) -> Any:
    if isinstance(value, list):
        return [_decode_value(v, blob) for v in value]
    if not isinstance(value, dict):
        return value
    if "$b" in value:
        start, length = _span(value["$b"], blob)
        return bytes(blob[start : start + length])
    if "$a" in value:
        spec = value["$a"]
        if not (isinstance(spec, list) and len(spec) == 4):
            raise WireError("malformed array reference")
        start, length = _span(spec[:2], blob)
        dtype, shape = spec[2], spec[3]
        if dtype not in _ALLOWED_DTYPES:
            raise WireError(f"array dtype {dtype!r} is not allowed")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise WireError("malformed array shape")
        dt = np.dtype(dtype).newbyteorder("<")
        if int(np.prod(shape, dtype=np.int64)) * dt.itemsize != length:
            raise WireError("array length does not match its shape")
        return np.frombuffer(blob[start : start + length], dtype=dt).reshape(shape).astype(dtype)
    if "$f" in value:
        if value["$f"] not in ("nan", "inf", "-inf"):
            raise WireError("malformed special float")
        return float(value["$f"])
    return {k: _decode_value(v, blob) for k, v in value.items()}


def _span(ref: Any, blob: memoryview) -> tuple[int, int]:
    if not (isinstance(ref, list) and len(ref) == 2 and all(isinstance(x, int) for x in ref)):
        raise WireError("malformed blob reference")
    start, length = ref
    if start < 0 or length < 0 or start + length > len(blob):
        raise WireError("blob reference points outside the message (truncated message?)")
    return start, length


def decode(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    if len(data) > max_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    if len(data) < 9 or data[:4] != MAGIC:
        raise WireError("not a privehr message (bad magic)")
    if data[4] != WIRE_VERSION:
        raise WireError(f"wire version {data[4]} is not supported (expected {WIRE_VERSION})")
    (head_len,) = struct.unpack(">I", data[5:9])
    if 9 + head_len > len(data):
        raise WireError("header runs past the end of the message (truncated message?)")
    try:
        header = json.loads(data[9 : 9 + head_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not valid JSON: {exc.msg if hasattr(exc, 'msg') else 'bad bytes'}") from None
    if not isinstance(header, dict):
        raise WireError("header must be an object")
    for key, typ in (("kind", str), ("study", str), ("round", int), ("sender", str), ("recipient", str), ("payload", dict)):
        if not isinstance(header.get(key), typ):
            raise WireError(f"header field {key!r} missing or not {typ.__name__}")
    blob = memoryview(data)[9 + head_len :]
    payload = _decode_value(header["payload"], blob)
    return Message(header["kind"], header["study"], header["round"], header["sender"], header["recipient"], payload)
