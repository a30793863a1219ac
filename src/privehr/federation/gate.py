"""The site's single outbound gate: the one place where anything leaves a site.

Why one gate: the release boundary for differential privacy is "everything a site process
sends off-site". Making every reply pass through ``OutboundGate.emit`` means (1) every release
is charged to the site's privacy ledger *before* its bytes exist (write-ahead; a release made
without DP is charged as non-private, ε = ∞, never skipped), (2) validation of what leaves
(NaN/Inf, shape, norm, range) happens where the individual value is still visible — under
SecAgg or HE the coordinator only ever sees an aggregate — and (3) bytes are counted per round.
Messages that carry no patient-derived data (protocol keys, acknowledgements, fixed error
codes) must say so explicitly with ``Release.data_free``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privehr.federation.wire import Message, encode


class GateRejection(ValueError):
    """An outgoing value failed validation at the site's gate. Names the site and the rule."""

    def __init__(self, site: str, field_name: str, rule: str):
        super().__init__(f"site {site!r}: outgoing field {field_name!r} rejected: {rule}")
        self.site, self.field_name, self.rule = site, field_name, rule


@dataclass(frozen=True)
class Release:
    """What a message releases, for the ledger. ``event`` is a dp_accounting DpEvent or None.

    ``event=None`` with ``data_free=False`` means a *non-private* release (charged as ε = ∞).
    """

    kind: str
    event: Any = None
    data_free: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def free(cls, kind: str) -> Release:
        return cls(kind=kind, data_free=True)


@dataclass(frozen=True)
class Constraint:
    """A declared bound on an outgoing array: shape, and max L2 norm or max |value|."""

    shape: tuple[int, ...] | None = None
    max_l2: float | None = None
    max_abs: float | None = None


ChargeFn = Callable[[Message, Release], None]


class OutboundGate:
    """Validate, charge, encode and count. ``charge`` is the ledger hook (write-ahead)."""

    def __init__(self, site: str, charge: ChargeFn, *, max_bytes: int = 256 * 1024 * 1024):
        self.site = site
        self._charge = charge
        self._max_bytes = max_bytes
        self.bytes_up: dict[int, int] = defaultdict(int)
        self.bytes_down: dict[int, int] = defaultdict(int)

    def received(self, round_: int, nbytes: int) -> None:
        self.bytes_down[round_] += nbytes

    def emit(
        self,
        msg: Message,
        release: Release,
        constraints: dict[str, Constraint] | None = None,
    ) -> bytes:
        self._validate(msg.payload, constraints or {})
        data = encode(msg)
        if len(data) > self._max_bytes:
            raise GateRejection(self.site, "<message>", f"{len(data)} bytes exceeds {self._max_bytes}")
        if not release.data_free:
            self._charge(msg, release)  # write-ahead: the ledger line exists before the bytes leave
        self.bytes_up[msg.round] += len(data)
        return data

    def _validate(self, payload: Any, constraints: dict[str, Constraint], path: str = "") -> None:
        if isinstance(payload, dict):
            for k, v in payload.items():
                self._validate(v, constraints, f"{path}.{k}" if path else k)
            return
        if isinstance(payload, list):
            for i, v in enumerate(payload):
                self._validate(v, constraints, f"{path}[{i}]")
            return
        if isinstance(payload, float) and not np.isfinite(payload):
            raise GateRejection(self.site, path, "value is NaN or Inf")
        if isinstance(payload, np.ndarray):
            if payload.dtype.kind == "f" and not np.isfinite(payload).all():
                raise GateRejection(self.site, path, "array contains NaN or Inf")
            c = constraints.get(path)
            if c is None:
                return
            if c.shape is not None and tuple(payload.shape) != c.shape:
                raise GateRejection(self.site, path, f"shape {payload.shape} != expected {c.shape}")
            if c.max_l2 is not None:
                norm = float(np.linalg.norm(payload.astype(np.float64)))
                if norm > c.max_l2 * (1 + 1e-6):
                    raise GateRejection(self.site, path, f"L2 norm {norm:.4g} exceeds bound {c.max_l2:.4g}")
            if c.max_abs is not None and payload.size:
                peak = float(np.max(np.abs(payload.astype(np.float64))))
                if peak > c.max_abs:
                    raise GateRejection(self.site, path, f"|value| {peak:.4g} exceeds bound {c.max_abs:.4g}")
