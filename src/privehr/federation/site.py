"""A site: holds its patients' tensors, answers coordinator requests, and only speaks via its gate.

The site object owns everything patient-derived: training/test tensors, the privacy ledger,
SecAgg secrets and HE keys. It receives bytes and returns bytes; nothing in here is reachable
from the coordinator except through ``handle``. Exceptions never cross: they become fixed
error codes (``ErrorCode``), because exception text can carry data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privehr.federation import protocol as P
from privehr.federation.gate import GateRejection, OutboundGate, Release
from privehr.federation.handlers import SiteHandlers
from privehr.federation.wire import Message, WireError, decode
from privehr.privacy.errors import BudgetExceeded

log = logging.getLogger(__name__)


@dataclass
class SiteData:
    """A site's own examples, already split patient-disjointly into train and test."""

    X_train: np.ndarray
    y_train: np.ndarray
    pid_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    pid_test: np.ndarray
    groups_test: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return int(len(self.y_train))

    def subset_test(self, mask: np.ndarray) -> SiteData:
        """The same site with only the selected test rows (training rows unchanged)."""
        return SiteData(self.X_train, self.y_train, self.pid_train, self.X_test[mask], self.y_test[mask],
                        self.pid_test[mask], {k: v[mask] for k, v in self.groups_test.items()})


class SiteNode:
    """Bytes in, bytes out. ``handlers`` implement each request kind for this site's mode."""

    def __init__(self, name: str, handlers: SiteHandlers, charge: Callable[[Message, Release], None],
                 precheck: Callable[[Any], None] | None = None):
        self.name = name
        self.gate = OutboundGate(name, charge)
        self.handlers = handlers
        self.precheck = precheck or (lambda event: None)  # ledger.check: raises before data is touched
        self.last_error: P.ErrorCode | None = None  # the fixed code of the last reply, if it refused
        self.handlers.bind(self)

    def handle(self, data: bytes) -> bytes:
        self.last_error = None
        try:
            msg = decode(data)
            P.validate_request(msg)
        except (WireError, P.SchemaError):
            # We cannot trust the header of a malformed message; reply without echoing it.
            self.last_error = P.ErrorCode.MALFORMED_REQUEST
            bad = Message(P.ERROR, "", 0, self.name, "coordinator", {"code": int(self.last_error)})
            return self.gate.emit(bad, Release.free("error"))
        self.gate.received(msg.round, len(data))
        try:
            payload, release, constraints = self.handlers.dispatch(msg)
        except BudgetExceeded as exc:
            log.warning("%s", exc)  # local log only: names the site, spent and remaining
            return self._error(msg, P.ErrorCode.BUDGET_EXHAUSTED)
        except GateRejection:
            log.warning("site %s: outgoing update rejected at the gate (round %d)", self.name, msg.round)
            return self._error(msg, P.ErrorCode.INVALID_UPDATE)
        except Exception as exc:  # noqa: BLE001 - mapped to fixed codes, logged locally only
            code = getattr(exc, "error_code", P.ErrorCode.INTERNAL)
            why = code.name if hasattr(exc, "error_code") else type(exc).__name__
            log.warning("site %s: request %s refused/failed: %s", self.name, msg.kind, why)
            return self._error(msg, code)
        reply = Message(P.REPLY, msg.study, msg.round, self.name, msg.sender, payload)
        try:
            return self.gate.emit(reply, release, constraints)
        except BudgetExceeded as exc:
            log.warning("%s", exc)
            return self._error(msg, P.ErrorCode.BUDGET_EXHAUSTED)
        except GateRejection:
            log.warning("site %s: outgoing update rejected at the gate (round %d)", self.name, msg.round)
            return self._error(msg, P.ErrorCode.INVALID_UPDATE)

    def _error(self, msg: Message, code: P.ErrorCode) -> bytes:
        self.last_error = code
        return self.gate.emit(P.error_reply(msg, self.name, code), Release.free("error"))

