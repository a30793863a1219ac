"""The coordinator: drives stages by sending messages and reading replies. Holds no patient data.

It sees only what sites' gates release: plain deltas in ``plain`` mode, noisy deltas in
``dp_local``, masked words and the unmasked *sum* under SecAgg, ciphertexts and the key
holder's rounded aggregate under HE, and score histograms at evaluation. Every stage has a
deadline of its own: a site that has not answered by then is dropped for that stage,
whatever the transport says (Flower reports a dead node only after up to a minute).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from privehr.federation import protocol as P
from privehr.federation.wire import Message, WireError, decode, encode

log = logging.getLogger(__name__)


class Transport(Protocol):
    """Delivers request bytes to sites and returns reply bytes, or None for a dropped site."""

    def exchange(self, requests: dict[str, bytes], *, stage: str, deadline_s: float) -> dict[str, bytes | None]: ...


class RoundAborted(RuntimeError):
    """A round could not complete safely; the global model was not changed."""


@dataclass
class Deadlines:
    """Per-stage deadlines in seconds (configurable; the transport's own timeouts don't decide)."""

    default: float = 60.0
    per_stage: dict[str, float] = field(default_factory=dict)

    def of(self, stage: str) -> float:
        return self.per_stage.get(stage, self.default)


@dataclass
class StageLog:
    stage: str
    round: int
    sent: dict[str, int]
    received: dict[str, int]
    dropped: list[str]
    errors: dict[str, int]
    seconds: float


class Coordinator:
    def __init__(self, transport: Transport, sites: list[str], study: str, deadlines: Deadlines | None = None):
        self.transport = transport
        self.sites = list(sites)
        self.study = study
        self.deadlines = deadlines or Deadlines()
        self.stage_logs: list[StageLog] = []

    # ------------------------------------------------------------------ messaging
    def exchange(
        self, kind: str, payloads: dict[str, dict[str, Any]], round_: int, *, stage: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Send one request per site; return the payloads of sites that replied in time without error."""
        stage = stage or kind
        requests = {
            s: encode(Message(kind, self.study, round_, "coordinator", s, p)) for s, p in payloads.items()
        }
        t0 = time.perf_counter()
        raw = self.transport.exchange(requests, stage=stage, deadline_s=self.deadlines.of(stage))
        out: dict[str, dict[str, Any]] = {}
        dropped, errors, received = [], {}, {}
        for site in payloads:
            data = raw.get(site)
            if data is None:
                dropped.append(site)
                continue
            received[site] = len(data)
            try:
                msg = decode(data)
            except WireError:
                errors[site] = int(P.ErrorCode.MALFORMED_REQUEST)
                continue
            if msg.sender != site or msg.round != round_:
                errors[site] = int(P.ErrorCode.MALFORMED_REQUEST)
                continue
            if msg.kind == P.ERROR:
                errors[site] = int(msg.payload.get("code", P.ErrorCode.INTERNAL))
                continue
            out[site] = msg.payload
        self.stage_logs.append(
            StageLog(stage, round_, {s: len(b) for s, b in requests.items()}, received, dropped, errors,
                     time.perf_counter() - t0)
        )
        if errors:
            log.info("stage %s round %d: error codes %s", stage, round_, errors)
        return out

    def broadcast(self, kind: str, payload: dict[str, Any], round_: int, sites: list[str] | None = None,
                  *, stage: str | None = None) -> dict[str, dict[str, Any]]:
        return self.exchange(kind, {s: payload for s in (sites or self.sites)}, round_, stage=stage)

    # ------------------------------------------------------------------ stages
    def hello(self) -> int:
        replies = self.broadcast(P.HELLO, {"protocol": P.PROTOCOL_VERSION}, 0)
        dims = {r["n_features"] for r in replies.values()}
        if not dims:
            last = self.stage_logs[-1]
            refused = ", ".join(f"{s}: {_code_name(c)}" for s, c in sorted(last.errors.items()))
            silent = f"; no answer within {self.deadlines.of(P.HELLO):.0f} s from {last.dropped}" if last.dropped else ""
            raise RoundAborted(f"no site accepted the set-up (hello): refused by {refused or 'none'}{silent}. "
                               "STUDY_NOT_APPROVED: the site has not approved this exact study file "
                               "(privehr site approve); see each site's audit log")
        if len(dims) != 1:
            raise RoundAborted(f"sites disagree on the feature count: {sorted(dims)} (same FeatureSpec everywhere?)")
        return dims.pop()

    def standardizer(self, *, dp: bool, std_floor: np.ndarray | None = None) -> tuple[dict[str, Any], dict[str, float]]:
        """Federated standardisation from summed sufficient statistics (never pooled rows)."""
        replies = self.broadcast(P.STATS, {"dp": dp}, 0)
        if not replies:
            raise RoundAborted("no site answered the statistics stage")
        count = sum(max(r["count"], 1.0) for r in replies.values())
        s = sum(np.asarray(r["sum"], dtype=np.float64) for r in replies.values())
        ss = sum(np.asarray(r["sumsq"], dtype=np.float64) for r in replies.values())
        mean = s / count
        var = np.maximum(ss / count - mean**2, 0.0)
        std = np.sqrt(var)
        std[std < 1e-6] = 1.0
        if std_floor is not None:  # noisy (DP) statistics: post-processing, no privacy cost
            std = np.maximum(std, std_floor)
        counts = {site: float(max(r["count"], 1.0)) for site, r in replies.items()}
        return {"mean": mean.tolist(), "std": std.tolist()}, counts

    def train_round(
        self,
        round_: int,
        params: np.ndarray,
        config: dict[str, Any],
        aggregate: Callable[[Coordinator, int, dict[str, dict[str, Any]]], np.ndarray],
        *,
        kind: str = P.TRAIN,
    ) -> tuple[np.ndarray, list[str]]:
        """One round: send the model, let the mode's ``aggregate`` turn replies into a mean delta."""
        replies = self.broadcast(kind, {"params": params.astype(np.float32), "config": config}, round_)
        delta = aggregate(self, round_, replies)
        if delta.shape != params.shape or not np.isfinite(delta).all():
            raise RoundAborted(f"round {round_}: aggregate has wrong shape or non-finite values; model unchanged")
        return delta, sorted(replies)

    def bytes_by_site(self, round_: int | None = None) -> dict[str, dict[str, int]]:
        """Bytes down (to site) and up (from site) per site, over all stages (or one round's)."""
        logs = [lg for lg in self.stage_logs if round_ is None or lg.round == round_]
        out = {s: {"down": 0, "up": 0} for s in self.sites if round_ is None or any(s in lg.sent for lg in logs)}
        for lg in logs:
            for s, n in lg.sent.items():
                out[s]["down"] += n
            for s, n in lg.received.items():
                out[s]["up"] += n
        return out


def weighted_mean_delta(coord: Coordinator, round_: int, replies: dict[str, dict[str, Any]]) -> np.ndarray:
    """FedAvg: Σ wᵢ·δᵢ / Σ wᵢ over the sites that answered (a dropped site is simply absent)."""
    if not replies:
        raise RoundAborted(f"round {round_}: no site returned an update")
    total = sum(r["weight"] for r in replies.values())
    return sum(np.asarray(r["delta"], np.float64) * r["weight"] for r in replies.values()) / total


def _code_name(code: int) -> str:
    try:
        return P.ErrorCode(code).name
    except ValueError:
        return str(code)
