"""CKKS-encrypted weighted aggregation (FedAvg under homomorphic encryption): site and
coordinator roles. The key holder is in :mod:`privehr.secure.he.keyholder`.

Roles and data flow::

    KeyHolder.create(params)  -> (key_holder, public_context_bytes, sha256); key_holder.record
    SiteEncryptor(pub, record, site_id=...).encrypt(update, weight, round_id=...)
                              -> EncryptedUpdate            (site -> coordinator)
    CoordinatorAggregator(pub, sha, length=d, round_id=...).add(u) ... .result()
                              -> EncryptedAggregate         (coordinator -> key holder)
    key_holder.decrypt_aggregate(aggregate) -> weighted mean, rounded   (-> everyone)

Choices:

- **Sites pre-weight.** A site multiplies its (clipped, optionally DP-noised) update by its
  weight (example count) in plaintext before encrypting; the coordinator only adds
  ciphertexts. A plaintext multiplication at the coordinator would consume a modulus level
  (bigger ciphertexts), add a relative error of ~1e-7 in TenSEAL, and -- most important -- the
  key holder can then refuse any ciphertext that is not in fresh form, so the coordinator
  cannot mask out other sites' values. Weights travel in clear, as in plain FedAvg; a common
  scale cancels in the mean.
- **Chunking.** N/2 values per ciphertext (4096 at N=8192); see :mod:`.packing`.
- **Contribution proofs.** Each site appends secret tokens sealed to the key holder, so the
  key holder can check that the aggregate sums exactly the claimed sites
  (:mod:`.contribution`).

Trust model: the coordinator holds a public context and cannot decrypt. The key holder can
decrypt any ciphertext it obtains. With a roster of site signing keys it releases only sums
over >= ``min_sites`` roster sites, once per round, so a lying coordinator gets no single
site's update; without a roster this holds only for an honest-but-curious coordinator. A key
holder that colludes with the coordinator sees every update: where that is unacceptable, use
SecAgg.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.secure.he.backend import CkksBackend, default_backend
from privehr.secure.he.ceremony import CeremonyRecord, load_context
from privehr.secure.he.contribution import draw_tokens, make_proof
from privehr.secure.he.errors import AggregationError, HeParameterError
from privehr.secure.he.keyholder import KeyHolder
from privehr.secure.he.packing import (
    check_update,
    chunk_bounds,
    packed_length,
    require_fresh_form,
)
from privehr.secure.he.payloads import EncryptedAggregate, EncryptedUpdate


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise HeParameterError([f"{name}={value!r} must be a non-empty str"])


class SiteEncryptor:
    """A site's encoder: pre-weights, appends contribution tokens, chunks and encrypts.

    ``record`` is the ceremony record the site pinned at set-up (context hash and the key
    holder's token key); ``signer`` is the site's Ed25519 identity key when the key holder
    checks a roster.
    """

    def __init__(
        self,
        public_context: bytes,
        record: CeremonyRecord,
        *,
        site_id: str,
        signer: Ed25519PrivateKey | None = None,
        backend: CkksBackend | None = None,
    ) -> None:
        _check_id("site_id", site_id)
        if not isinstance(record, CeremonyRecord) or not record.token_public_key:
            raise HeParameterError(
                [
                    "record must be the CeremonyRecord of an aggregation key holder "
                    "(KeyHolder.record), pinned at set-up"
                ]
            )
        self._backend = backend or default_backend()
        self._ctx = load_context(public_context, record.context_sha256, backend=self._backend)
        self._token_key = bytes.fromhex(record.token_public_key)
        self._signer = signer
        self.site_id = site_id
        self.context_sha256 = record.context_sha256.lower()
        self.slots = self._backend.slot_count(self._ctx)

    def encrypt(self, update: np.ndarray, weight: float = 1.0, *, round_id: str) -> EncryptedUpdate:
        """Encrypt ``weight * update`` (plus tokens) as packed CKKS ciphertexts."""
        _check_id("round_id", round_id)
        arr = check_update(update, weight)
        tokens = draw_tokens()
        plain = np.concatenate([arr * float(weight), tokens])
        chunks = tuple(
            self._backend.ciphertext_to_bytes(self._backend.encrypt(self._ctx, plain[s:e]))
            for s, e in chunk_bounds(plain.size, self.slots)
        )
        proof = make_proof(
            tokens,
            self._token_key,
            round_id=round_id,
            site_id=self.site_id,
            context_sha256=self.context_sha256,
            signer=self._signer,
        )
        return EncryptedUpdate(
            site_id=self.site_id,
            round_id=round_id,
            context_sha256=self.context_sha256,
            length=int(arr.size),
            weight=float(weight),
            chunks=chunks,
            proof=proof,
        )


class CoordinatorAggregator:
    """The coordinator's running encrypted sum for one round. Holds a public context only.

    State is explicit in ``site_ids_`` and ``total_weight_``. :meth:`add` is all-or-nothing: a
    rejected update leaves the sum unchanged.
    """

    def __init__(
        self,
        public_context: bytes,
        pinned_sha256: str,
        *,
        length: int,
        round_id: str,
        backend: CkksBackend | None = None,
    ) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise HeParameterError([f"length={length!r} must be an int >= 1 (the update size)"])
        _check_id("round_id", round_id)
        self._backend = backend or default_backend()
        self._ctx = load_context(public_context, pinned_sha256, backend=self._backend)
        self.context_sha256 = pinned_sha256.lower()
        self.length = length
        self.round_id = round_id
        self._bounds = chunk_bounds(packed_length(length), self._backend.slot_count(self._ctx))
        self._sum: list[Any] | None = None
        self._proofs: list[Any] = []
        self.site_ids_: list[str] = []
        self.total_weight_ = 0.0

    def add(self, update: EncryptedUpdate | dict[str, Any]) -> None:
        """Add one site's encrypted update (an :class:`EncryptedUpdate` or its payload)."""
        if isinstance(update, dict):
            update = EncryptedUpdate.from_payload(update)
        sid = update.site_id
        problems = []
        if sid in self.site_ids_:
            problems.append(f"site {sid!r} already contributed to this aggregate")
        if update.round_id != self.round_id or update.proof.round_id != self.round_id:
            problems.append(f"site {sid!r} sent an update for round {update.round_id!r}")
        if update.proof.site_id != sid:
            problems.append(f"site {sid!r} sent a contribution proof of another site")
        if update.context_sha256 != self.context_sha256:
            problems.append(f"site {sid!r} encrypted under another context")
        if update.length != self.length:
            problems.append(f"site {sid!r} sent length {update.length}, expected {self.length}")
        if len(update.chunks) != len(self._bounds):
            problems.append(
                f"site {sid!r} sent {len(update.chunks)} chunks, expected {len(self._bounds)}"
            )
        if not (math.isfinite(update.weight) and update.weight > 0):
            problems.append(f"site {sid!r} declared weight {update.weight!r}")
        if problems:
            raise AggregationError("; ".join(problems))
        cts = []
        for (start, stop), blob in zip(self._bounds, update.chunks, strict=True):
            ct = self._backend.ciphertext_from_bytes(self._ctx, blob)
            require_fresh_form(self._backend, self._ctx, ct, stop - start)
            cts.append(ct)
        new_sum = (
            cts
            if self._sum is None
            else [self._backend.add(a, b) for a, b in zip(self._sum, cts, strict=True)]
        )
        self._sum = new_sum
        self._proofs.append(update.proof)
        self.site_ids_.append(sid)
        self.total_weight_ += update.weight

    def result(self) -> EncryptedAggregate:
        """The encrypted weighted sum so far (to be sent to the key holder)."""
        if self._sum is None:
            raise AggregationError("no site has contributed yet; call add() first")
        return EncryptedAggregate(
            round_id=self.round_id,
            context_sha256=self.context_sha256,
            length=self.length,
            total_weight=self.total_weight_,
            site_ids=tuple(self.site_ids_),
            chunks=tuple(self._backend.ciphertext_to_bytes(ct) for ct in self._sum),
            proofs=tuple(self._proofs),
        )


@dataclass(frozen=True)
class AggregationStats:
    """What one in-process encrypted aggregation cost (bytes are ciphertext bytes)."""

    n_sites: int
    length: int
    public_context_bytes: int
    max_update_bytes: int
    aggregate_bytes: int
    encrypt_seconds: float
    aggregate_seconds: float
    decrypt_seconds: float


def aggregate_encrypted(
    updates: Mapping[str, tuple[np.ndarray, float]],
    key_holder: KeyHolder,
    public_context: bytes,
    *,
    round_id: str,
    signers: Mapping[str, Ed25519PrivateKey] | None = None,
    backend: CkksBackend | None = None,
) -> tuple[np.ndarray, AggregationStats]:
    """One round in one process (simulator, demo, bench): every site encrypts
    ``(update, weight)``, the coordinator sums, the key holder verifies and releases the
    rounded weighted mean. Only payload dicts pass between the roles, as over a network."""
    if not updates:
        raise HeParameterError(["updates is empty; pass {site_id: (update, weight)}"])
    lengths = {np.asarray(vec).size for vec, _ in updates.values()}
    if len(lengths) != 1:
        raise HeParameterError([f"updates have different lengths {sorted(lengths)}"])
    be = backend or default_backend()
    sha = key_holder.public.sha256
    coordinator = CoordinatorAggregator(
        public_context, sha, length=lengths.pop(), round_id=round_id, backend=be
    )
    encrypt_s = add_s = 0.0
    max_bytes = 0
    for site_id, (vec, weight) in updates.items():
        signer = signers.get(site_id) if signers is not None else None
        site = SiteEncryptor(
            public_context, key_holder.record, site_id=site_id, signer=signer, backend=be
        )
        t0 = time.perf_counter()
        payload = site.encrypt(vec, weight, round_id=round_id).to_payload()
        t1 = time.perf_counter()
        coordinator.add(payload)
        add_s += time.perf_counter() - t1
        encrypt_s += t1 - t0
        max_bytes = max(max_bytes, sum(len(c) for c in payload["chunks"]))
    t0 = time.perf_counter()
    aggregate = coordinator.result().to_payload()
    t1 = time.perf_counter()
    mean = key_holder.decrypt_aggregate(aggregate)
    t2 = time.perf_counter()
    stats = AggregationStats(
        n_sites=len(updates),
        length=coordinator.length,
        public_context_bytes=len(public_context),
        max_update_bytes=max_bytes,
        aggregate_bytes=sum(len(c) for c in aggregate["chunks"]),
        encrypt_seconds=encrypt_s,
        aggregate_seconds=add_s + (t1 - t0),
        decrypt_seconds=t2 - t1,
    )
    return mean, stats
