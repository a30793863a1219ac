"""The coordinator's side of SecAgg/SecAgg+: relays, tracks survivors, unmasks the sum.

It never sees a plaintext share in transit (only AES-GCM ciphertext between sites) and never
a single site's input (only masked words). It aborts rather than return a partial or wrong
sum: too few survivors at any stage, or a secret whose shares do not reconstruct the
committed seed / advertised key (after trying redundant share subsets), raises
``SecAggAborted``. Missing site ids in ``advance`` = dropped at that stage; a malformed reply
counts as a dropout too (recorded in ``stats``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privehr.secure.secagg import constants as c
from privehr.secure.secagg.config import SecAggConfig
from privehr.secure.secagg.errors import SecAggAborted, SecAggCryptoError
from privehr.secure.secagg.graph import is_connected, neighbourhoods
from privehr.secure.secagg.keys import (
    CryptoCheckFailed,
    commit_seed,
    pair_mask_seed,
    self_mask_seed,
    verify_signature,
    x25519_from_raw,
    x25519_public_of,
)
from privehr.secure.secagg.messages import (
    SIGNATURE_BYTES,
    Payload,
    advert_statement,
    check_advert,
    require_bytes,
    require_bytes_map,
    transcript_hash,
)
from privehr.secure.secagg.prg import MaskExpander
from privehr.secure.secagg.shamir import SHARE_BYTES, combine

MAX_SUBSETS = 256  # redundant-share subsets tried before declaring a secret unrecoverable


@dataclass(frozen=True)
class SecAggResult:
    """The unmasked sum (uint64 words mod 2^b) of exactly the ``included`` sites' inputs."""

    sum: np.ndarray
    included: frozenset[str]
    dropped: frozenset[str]
    stats: dict[str, Any] = field(default_factory=dict)


class SecAggCoordinator:
    """``begin()`` then ``advance(responses)`` once per stage until a ``SecAggResult``."""

    def __init__(
        self,
        config: SecAggConfig,
        roster_ids: Iterable[str],
        roster_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        """``roster_keys`` (optional, public identity keys) lets the coordinator drop a forged
        advertisement as a dropout instead of relaying it and making every honest site abort.
        Sites never rely on this check: they verify every advertisement themselves."""
        self.config = config
        self.roster = frozenset(roster_ids)
        self._roster_keys = dict(roster_keys) if roster_keys is not None else None
        if len(self.roster) != config.n_sites:
            raise ValueError(
                f"roster_ids: {len(self.roster)} distinct ids but config.n_sites="
                f"{config.n_sites}; fix: make them agree"
            )
        self._cfg = config.digest()
        self._stage: str | None = None
        self._sent_to: frozenset[str] = frozenset()
        self._graph: dict[str, frozenset[str]] = {}
        self._lagrange: dict[tuple[int, ...], list[int]] = {}  # this round's point sets
        self.stats: dict[str, Any] = {"malformed": {}}

    @property
    def stage(self) -> str | None:
        """The stage whose responses ``advance`` expects next (None before ``begin``)."""
        return self._stage

    @property
    def neighbours(self) -> dict[str, frozenset[str]]:
        """Communication graph over the advertised sites (available after advertise)."""
        if not self._graph:
            raise RuntimeError("the graph is fixed only once the advertise stage is complete")
        return dict(self._graph)

    def begin(self) -> dict[str, Payload]:
        if self._stage is not None:
            raise SecAggAborted(c.STAGE_ADVERTISE, "begin() called twice; use a new coordinator")
        return self._send(c.STAGE_ADVERTISE, {sid: {} for sid in sorted(self.roster)})

    def advance(
        self, responses: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Payload] | SecAggResult:
        stage = self._stage
        if stage not in c.STAGES:
            raise SecAggAborted(str(stage), "advance() outside a running round")
        replies = {s: r for s, r in responses.items() if s in self._sent_to}
        self.stats[f"responded_{stage}"] = len(replies)
        step: dict[str, Callable[[dict[str, Mapping[str, Any]]], Any]] = {
            c.STAGE_ADVERTISE: self._after_advertise,
            c.STAGE_SHARE: self._after_share,
            c.STAGE_MASKED: self._after_masked,
            c.STAGE_CONSISTENCY: self._after_consistency,
            c.STAGE_UNMASK: self._after_unmask,
        }
        try:
            return step[stage](replies)
        except SecAggAborted:
            self._stage = "aborted"
            raise

    # -- stages -------------------------------------------------------------------------------
    def _after_advertise(self, replies: dict[str, Mapping[str, Any]]) -> dict[str, Payload]:
        adverts = self._valid(c.STAGE_ADVERTISE, replies, self._check_advert)
        self._enough(c.STAGE_ADVERTISE, adverts)
        self._adverts = adverts
        transcript = transcript_hash(self._cfg, adverts)
        self._graph = neighbourhoods(list(adverts), self.config.effective_degree, transcript)
        wire = {sid: dict(a) for sid, a in adverts.items()}
        return self._send(c.STAGE_SHARE, {sid: {c.KEY_ADVERTISED: wire} for sid in adverts})

    def _after_share(self, replies: dict[str, Mapping[str, Any]]) -> dict[str, Payload]:
        size = 12 + 2 * SHARE_BYTES + 16

        def check(sid: str, reply: Mapping[str, Any]) -> dict[str, bytes]:
            cts = require_bytes_map("", reply, c.KEY_CIPHERTEXTS, size)
            if set(cts) != set(self._graph[sid]):
                raise SecAggAborted("", "ciphertexts not addressed to the neighbourhood")
            return cts

        cts = self._valid(c.STAGE_SHARE, replies, check)
        self._u2 = frozenset(cts)
        self._enough(c.STAGE_SHARE, self._u2)
        self._feasible(c.STAGE_SHARE, self._u2, self._u2)
        u2 = sorted(self._u2)
        out = {
            j: {
                c.KEY_U2: u2,
                c.KEY_CIPHERTEXTS: {i: cts[i][j] for i in u2 if j in cts[i]},
            }
            for j in u2
        }
        return self._send(c.STAGE_MASKED, out)

    def _after_masked(self, replies: dict[str, Mapping[str, Any]]) -> dict[str, Payload]:
        cfg = self.config

        def check(_sid: str, reply: Mapping[str, Any]) -> np.ndarray:
            arr = reply.get(c.KEY_MASKED)
            if not isinstance(arr, np.ndarray) or arr.shape != (cfg.dim,) or arr.dtype.kind != "u":
                raise SecAggAborted("", "masked input has the wrong shape or dtype")
            return arr

        self._masked = self._valid(c.STAGE_MASKED, replies, check)
        self._u3 = frozenset(self._masked)
        self._enough(c.STAGE_MASKED, self._u3)
        self._feasible(c.STAGE_MASKED, self._u2, self._u3)
        if not is_connected(self._graph, self._u3):
            raise SecAggAborted(
                c.STAGE_MASKED, "survivor graph is disconnected; honest sites would refuse"
            )
        u3 = sorted(self._u3)
        return self._send(c.STAGE_CONSISTENCY, {j: {c.KEY_SURVIVORS: u3} for j in u3})

    def _after_consistency(self, replies: dict[str, Mapping[str, Any]]) -> dict[str, Payload]:
        sigs = self._valid(
            c.STAGE_CONSISTENCY,
            replies,
            lambda _s, r: require_bytes("", r, c.KEY_SIGNATURE, SIGNATURE_BYTES),
        )
        u4 = frozenset(sigs)
        if len(u4) < self.config.threshold:
            raise SecAggAborted(
                c.STAGE_CONSISTENCY, f"{len(u4)} signatures < t={self.config.threshold}"
            )
        self._feasible(c.STAGE_CONSISTENCY, self._u2, u4)
        payload = {
            c.KEY_SURVIVORS: sorted(self._u3),
            c.KEY_DROPPED: sorted(self._u2 - self._u3),
            c.KEY_SIGNATURES: dict(sorted(sigs.items())),
        }
        return self._send(c.STAGE_UNMASK, {j: dict(payload) for j in sorted(u4)})

    def _after_unmask(self, replies: dict[str, Mapping[str, Any]]) -> SecAggResult:
        stage = c.STAGE_UNMASK

        def check(_sid: str, reply: Mapping[str, Any]) -> tuple[dict[str, bytes], dict[str, bytes]]:
            return (
                require_bytes_map("", reply, c.KEY_B_SHARES, SHARE_BYTES),
                require_bytes_map("", reply, c.KEY_SK_SHARES, SHARE_BYTES),
            )

        shares = self._valid(stage, replies, check)
        self._feasible(stage, self._u2, frozenset(shares))
        t0, c0 = time.perf_counter(), time.process_time()
        cfg, dropped = self.config, self._u2 - self._u3
        seeds: dict[str, bytes] = {}
        for owner in sorted(self._u3):
            got = [s[0][owner] for s in shares.values() if owner in s[0]]
            b = self._reconstruct(
                owner,
                got,
                lambda v, o=owner: commit_seed(v, self._cfg, o) == self._adverts[o][c.KEY_COMMIT],
            )
            seeds[owner] = b
        sks: dict[str, bytes] = {}
        for owner in sorted(dropped):
            got = [s[1][owner] for s in shares.values() if owner in s[1]]
            sks[owner] = self._reconstruct(owner, got, lambda v, o=owner: self._pk_ok(v, o))
        t1, c1 = time.perf_counter(), time.process_time()
        total = np.zeros(cfg.dim, dtype=cfg.word_dtype)
        for arr in self._masked.values():
            total += arr.astype(cfg.word_dtype, copy=False)
        prg = MaskExpander(cfg.dim, cfg.word_dtype)
        for owner, b in seeds.items():
            total -= prg.expand(self_mask_seed(b, self._cfg, owner))
        for owner, sk_raw in sks.items():
            sk = x25519_from_raw(sk_raw)  # parse once, not once per peer
            for peer in sorted(self._graph[owner] & self._u3):
                seed = pair_mask_seed(sk, self._adverts[peer][c.KEY_S_PK], self._cfg, owner, peer)
                mask = prg.expand(seed)
                if peer < owner:  # the survivor added +mask
                    total -= mask
                else:
                    total += mask
        result = total.astype(np.uint64) & np.uint64(cfg.modulus_mask)
        self._stage = c.STAGE_UNMASK + ":done"
        self.stats.update(  # wall clock, and CPU time of this thread (robust on shared hosts)
            reconstruct_seconds=t1 - t0,
            unmask_seconds=time.perf_counter() - t1,
            reconstruct_cpu_seconds=c1 - c0,
            unmask_cpu_seconds=time.process_time() - c1,
        )
        return SecAggResult(
            sum=result,
            included=self._u3,
            dropped=self.roster - self._u3,
            stats=dict(self.stats),
        )

    # -- helpers ------------------------------------------------------------------------------
    def _send(self, stage: str, payloads: dict[str, Payload]) -> dict[str, Payload]:
        for payload in payloads.values():
            payload[c.KEY_STAGE] = stage
            payload[c.KEY_ROUND] = self.config.round_id
        self._stage = stage
        self._sent_to = frozenset(payloads)
        return payloads

    def _valid(
        self, stage: str, replies: dict[str, Mapping[str, Any]], check: Callable[[str, Any], Any]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for sid in sorted(replies):
            reply = replies[sid]
            try:
                if not isinstance(reply, Mapping) or reply.get(c.KEY_STAGE) != stage:
                    raise SecAggAborted(stage, "reply for another stage")
                out[sid] = check(sid, reply)
            except SecAggAborted:  # a malformed reply counts as a dropout
                self.stats["malformed"].setdefault(stage, []).append(sid)
        return out

    def _enough(self, stage: str, members: Iterable[str]) -> None:
        n = len(list(members))
        if n < self.config.min_survivors:
            raise SecAggAborted(
                stage, f"{n} sites left; a round needs max(t, 3) = {self.config.min_survivors}"
            )

    def _feasible(self, stage: str, owners: Iterable[str], holders: frozenset[str]) -> None:
        """Every secret still needed must keep at least t live share holders."""
        t = self.config.threshold
        short = sorted(o for o in owners if len((self._graph[o] | {o}) & holders) < t)
        if short:
            raise SecAggAborted(
                stage, f"fewer than t={t} share holders remain for {short}; cannot unmask"
            )

    def _check_advert(self, sid: str, reply: Mapping[str, Any]) -> dict[str, bytes]:
        advert = check_advert("", reply)
        if self._roster_keys is not None:
            try:
                verify_signature(
                    self._roster_keys[sid],
                    advert[c.KEY_SIGNATURE],
                    advert_statement(self._cfg, sid, advert),
                )
            except (KeyError, CryptoCheckFailed) as exc:
                raise SecAggAborted("", "advertisement does not verify") from exc
        return advert

    def _pk_ok(self, sk: bytes, owner: str) -> bool:
        return x25519_public_of(sk) == self._adverts[owner][c.KEY_S_PK]

    def _reconstruct(self, owner: str, shares: list[bytes], ok: Callable[[bytes], bool]) -> bytes:
        t = self.config.threshold
        if len(shares) < t:
            raise SecAggAborted(c.STAGE_UNMASK, f"only {len(shares)} shares for {owner!r} < t={t}")
        for subset in itertools.islice(itertools.combinations(shares, t), MAX_SUBSETS):
            try:
                value = combine(subset, 32, self._lagrange)
                if ok(value):
                    return value
            except (ValueError, CryptoCheckFailed):
                continue
        raise SecAggCryptoError(c.STAGE_UNMASK, owner)
