"""Message kinds, their payload schemas, and the fixed error codes that may cross the gate.

Every kind has one schema; a message that does not satisfy it is rejected on decode at the
receiver and before encode at the sender's gate. Constants live here and nowhere else
(Flower's ``secaggplus_constants`` habit), so the simulator and the Flower transport agree.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

from privehr.federation.wire import Message

PROTOCOL_VERSION = 1

# coordinator -> site
HELLO = "hello"
STATS = "stats"
TRAIN = "train"
EVALUATE = "evaluate"
SECAGG = "secagg"  # payload carries the SecAgg stage name; one kind keeps routing simple
HE_TRAIN = "he.train"
HE_DECRYPT = "he.decrypt"  # to the key holder only
HE_CEREMONY = "he.ceremony"  # to the key holder only: run the key ceremony, return the signed public part
HE_CONTEXT = "he.context"  # to every site: pin the key holder's signed ceremony record
SETUP_KINDS = frozenset({HELLO, HE_CEREMONY, HE_CONTEXT})  # first contact: a longer deadline
# site -> coordinator
REPLY = "reply"
ERROR = "error"

REQUEST_KINDS = frozenset({HELLO, STATS, TRAIN, EVALUATE, SECAGG, HE_TRAIN, HE_DECRYPT, HE_CEREMONY, HE_CONTEXT})


class ErrorCode(IntEnum):
    """Fixed codes only: exception text can contain patient data, so it never leaves a site."""

    MALFORMED_REQUEST = 1
    UNKNOWN_KIND = 2
    BUDGET_EXHAUSTED = 3
    INVALID_UPDATE = 4  # NaN/Inf, wrong shape, norm or range violation at the site's gate
    STUDY_NOT_APPROVED = 5
    PROTOCOL_ABORT = 6  # e.g. SecAgg misbehaviour detected
    INTERNAL = 7
    PRIVACY_PARAMS_MISMATCH = 8  # a round's DP/SecAgg parameters differ from the site's approved ones


class SchemaError(ValueError):
    """A payload that does not match its kind's schema; names the field and what was expected."""


# kind -> {field: (type or tuple of types)}; np.ndarray entries must be finite unless integer
_REQUEST_SCHEMAS: dict[str, dict[str, Any]] = {
    HELLO: {"protocol": int},
    STATS: {"dp": bool},
    TRAIN: {"params": np.ndarray, "config": dict},
    EVALUATE: {"params": np.ndarray, "standardizer": dict, "dp": dict},
    SECAGG: {"stage": str, "body": dict},
    HE_TRAIN: {"params": np.ndarray, "config": dict},
    HE_DECRYPT: {"aggregate": dict},
    HE_CEREMONY: {},
    HE_CONTEXT: {"context": bytes, "record": bytes, "signature": bytes},
}


def validate_request(msg: Message) -> None:
    schema = _REQUEST_SCHEMAS.get(msg.kind)
    if schema is None:
        raise SchemaError(f"unknown request kind {msg.kind!r}")
    _check_fields(msg.kind, msg.payload, schema)


def _check_fields(kind: str, payload: dict[str, Any], schema: dict[str, Any]) -> None:
    for name, typ in schema.items():
        if name not in payload:
            raise SchemaError(f"{kind}: field {name!r} is missing")
        value = payload[name]
        if not isinstance(value, typ):
            raise SchemaError(f"{kind}: field {name!r} must be {getattr(typ, '__name__', typ)}, got {type(value).__name__}")
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise SchemaError(f"{kind}: field {name!r} contains NaN or Inf")


def error_reply(request: Message, sender: str, code: ErrorCode) -> Message:
    return Message(ERROR, request.study, request.round, sender, request.sender, {"code": int(code)})
