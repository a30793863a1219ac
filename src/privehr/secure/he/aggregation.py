"""CKKS-encrypted weighted aggregation (FedAvg under homomorphic encryption).

Roles and data flow::

    KeyHolder.create(params)            -> (key_holder, public_context_bytes, sha256)
    SiteEncryptor(pub, sha).encrypt(update, weight)  -> EncryptedUpdate   (site -> coordinator)
    CoordinatorAggregator(pub, sha, length).add(u)   ... .result() -> EncryptedAggregate
    key_holder.decrypt_aggregate(aggregate)          -> weighted mean, rounded

Choices:

- **Sites pre-weight.** A site multiplies its (clipped, optionally DP-noised) update by its
  weight (example count) in plaintext before encrypting; the coordinator only adds
  ciphertexts. A plaintext multiplication at the coordinator would consume a modulus level
  (bigger ciphertexts) and, in TenSEAL, adds a relative error of ~1e-7. The weights are sent in
  clear (as in plain FedAvg); any common scale cancels in the mean.
- **Chunking.** A ciphertext packs N/2 values (4096 at N=8192); an update of length d becomes
  ceil(d / (N/2)) ciphertexts, the last one shorter.
- **Rounding before release.** The key holder rounds the decrypted *sum* to a grid of
  2^-rounding_bits (default 2^-20) before dividing by the total weight. An exact CKKS
  decryption handed to a party that holds the ciphertext reveals the decryption error and with
  it the secret key (Li & Micciancio, EUROCRYPT 2021); the error here is ~2^-26, far below the
  grid. Rounding is a pragmatic mitigation, not a proof (only noise flooding is provably IND-CPA^D).

Error bound (tested): per coordinate, |decrypted weighted mean - plaintext weighted mean|
<= (K * 2^-24 + 2^-(rounding_bits+1)) / W for K sites of total weight W, provided every
pre-weighted value stays within 2^20 (enforced by the site). Measured fresh error: ~2^-26.5.

Trust model: the coordinator holds a public context and cannot decrypt anything. The key
holder can decrypt any ciphertext it obtains; it decrypts only aggregates that *claim* at
least ``min_sites`` sites, but it cannot verify the claim, so a lying coordinator can obtain a
single site's update by submitting it as an aggregate. HE aggregation therefore protects
against an honest-but-curious coordinator and eavesdroppers; when the coordinator may lie or
the key holder may collude, use SecAgg.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from privehr.secure.he.backend import AGGREGATION_PARAMS, CkksBackend, CkksParams, default_backend
from privehr.secure.he.ceremony import (
    CeremonyRecord,
    PublicContext,
    check_pinned,
    load_context,
    run_ceremony,
    sha256_hex,
)
from privehr.secure.he.errors import AggregationError, CiphertextError, HeParameterError
from privehr.secure.he.payloads import EncryptedAggregate, EncryptedUpdate

#: Largest |weight * value| a site may encrypt; keeps the stated error bound valid.
MAX_ABS_WEIGHTED = float(2**20)
#: Per-ciphertext CKKS error bound used in the stated aggregate bound (measured ~2^-26.5).
FRESH_ERROR_BOUND = 2.0**-24
#: Finest rounding grid allowed before a decryption is released (2^-20).
MAX_ROUNDING_BITS = 20


def chunk_bounds(length: int, slots: int) -> list[tuple[int, int]]:
    """[start, stop) of every chunk of a length-``length`` vector packed ``slots`` per chunk."""
    return [(s, min(s + slots, length)) for s in range(0, length, slots)]


def aggregate_error_bound(n_sites: int, total_weight: float, rounding_bits: int = 20) -> float:
    """Stated per-coordinate bound on |decrypted weighted mean - plaintext weighted mean|."""
    return (n_sites * FRESH_ERROR_BOUND + 2.0 ** -(rounding_bits + 1)) / total_weight


def _check_vector(vec: Any, weight: Any) -> np.ndarray:
    problems: list[str] = []
    arr = np.asarray(vec)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
        problems.append(
            f"update has shape {arr.shape} and dtype {arr.dtype}; expected a non-empty 1-D "
            "numeric vector (flatten the model update first)"
        )
    elif not np.all(np.isfinite(arr)):
        problems.append("update contains NaN or inf; clip the update before encrypting")
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not (math.isfinite(weight) and weight > 0)
    ):
        problems.append(f"weight={weight!r} must be a finite number > 0 (the example count)")
    if not problems:
        peak = float(np.max(np.abs(arr))) * float(weight)
        if peak > MAX_ABS_WEIGHTED:
            problems.append(
                f"max |weight * update| = {peak:.3g} exceeds {MAX_ABS_WEIGHTED:.0f} (2^20), the "
                "range of the stated error bound; clip the update or divide every site's "
                "weight by the same public constant (it cancels in the mean)"
            )
    if problems:
        raise HeParameterError(problems)
    return arr.astype(np.float64)


class KeyHolder:
    """The one party holding the secret key; decrypts aggregates and rounds before release.

    Create it with :meth:`create` at the designated site during set-up. Settings
    (``rounding_bits``, ``min_sites``) are fixed at construction.
    """

    def __init__(
        self,
        secret_context: Any,
        public: PublicContext,
        record: CeremonyRecord,
        *,
        rounding_bits: int = MAX_ROUNDING_BITS,
        min_sites: int = 2,
        backend: CkksBackend | None = None,
    ) -> None:
        problems = []
        if (
            isinstance(rounding_bits, bool)
            or not isinstance(rounding_bits, int)
            or not (0 <= rounding_bits <= MAX_ROUNDING_BITS)
        ):
            problems.append(
                f"rounding_bits={rounding_bits!r} must be an int in [0, {MAX_ROUNDING_BITS}] "
                "(grid >= 2^-20, coarser than the CKKS error); use 20"
            )
        if isinstance(min_sites, bool) or not isinstance(min_sites, int) or min_sites < 1:
            problems.append(f"min_sites={min_sites!r} must be an int >= 1; use 2 or more")
        if problems:
            raise HeParameterError(problems)
        self._ctx = secret_context
        self._backend = backend or default_backend()
        self.public = public
        self.record = record
        self.rounding_bits = rounding_bits
        self.min_sites = min_sites

    @classmethod
    def create(
        cls,
        params: CkksParams = AGGREGATION_PARAMS,
        *,
        holder_id: str = "key-holder",
        rounding_bits: int = MAX_ROUNDING_BITS,
        min_sites: int = 2,
        backend: CkksBackend | None = None,
    ) -> tuple[KeyHolder, bytes, str]:
        """Run the ceremony; returns ``(key_holder, public_context_bytes, sha256)``."""
        be = backend or default_backend()
        ctx, public, record = run_ceremony(params, holder_id, backend=be)
        holder = cls(
            ctx, public, record, rounding_bits=rounding_bits, min_sites=min_sites, backend=be
        )
        return holder, public.data, public.sha256

    def to_secret_bytes(self) -> bytes:
        """SECRET: the full context including the secret key, for the holder's own storage
        (mode 0600, never logged, never sent). Reload with :meth:`from_secret_bytes`."""
        return self._backend.serialize_context(self._ctx, secret_key=True)

    @classmethod
    def from_secret_bytes(
        cls,
        data: bytes,
        record: CeremonyRecord,
        *,
        rounding_bits: int = MAX_ROUNDING_BITS,
        min_sites: int = 2,
        backend: CkksBackend | None = None,
    ) -> KeyHolder:
        """Reload a key holder; its public part must still match the pinned ceremony hash."""
        be = backend or default_backend()
        ctx = be.load_context(bytes(data))
        public_bytes = be.serialize_context(ctx, secret_key=False)
        check_pinned(public_bytes, record.context_sha256)
        public = PublicContext(public_bytes, sha256_hex(public_bytes))
        return cls(
            ctx, public, record, rounding_bits=rounding_bits, min_sites=min_sites, backend=be
        )

    def decrypt_aggregate(self, aggregate: EncryptedAggregate, *, mean: bool = True) -> np.ndarray:
        """Decrypt, round the sum to the 2^-rounding_bits grid, then divide by the total weight.

        Refuses aggregates under another context or claiming fewer than ``min_sites`` sites.
        With ``mean=False`` returns the rounded weighted sum.
        """
        if aggregate.context_sha256 != self.public.sha256:
            raise AggregationError(
                "aggregate was made under another context than this key holder's; "
                "it cannot be decrypted here"
            )
        if len(set(aggregate.site_ids)) < self.min_sites:
            raise AggregationError(
                f"aggregate claims {len(set(aggregate.site_ids))} site(s); this key holder "
                f"decrypts only sums over >= {self.min_sites} sites (min_sites) so that no "
                "single site's update is released"
            )
        if not (math.isfinite(aggregate.total_weight) and aggregate.total_weight > 0):
            raise AggregationError(f"total_weight={aggregate.total_weight!r} must be > 0")
        slots = self._backend.slot_count(self._ctx)
        bounds = chunk_bounds(aggregate.length, slots)
        if len(aggregate.chunks) != len(bounds):
            raise AggregationError(
                f"aggregate has {len(aggregate.chunks)} chunks; length {aggregate.length} "
                f"needs {len(bounds)}"
            )
        out = np.empty(aggregate.length, dtype=np.float64)
        for (start, stop), blob in zip(bounds, aggregate.chunks, strict=True):
            ct = self._backend.ciphertext_from_bytes(self._ctx, blob)
            values = self._backend.decrypt(self._ctx, ct)
            if values.shape != (stop - start,):
                raise AggregationError("aggregate chunk has the wrong number of values")
            out[start:stop] = values
        grid = 2.0**-self.rounding_bits
        out = np.round(out / grid) * grid
        return out / aggregate.total_weight if mean else out

    def error_bound(self, n_sites: int, total_weight: float) -> float:
        """Stated bound on the per-coordinate error of :meth:`decrypt_aggregate` (mean)."""
        return aggregate_error_bound(n_sites, total_weight, self.rounding_bits)


class SiteEncryptor:
    """A site's encoder: pre-weights, chunks and encrypts its update under the public key."""

    def __init__(
        self,
        public_context: bytes,
        pinned_sha256: str,
        *,
        site_id: str,
        backend: CkksBackend | None = None,
    ) -> None:
        if not isinstance(site_id, str) or not site_id:
            raise HeParameterError([f"site_id={site_id!r} must be a non-empty str"])
        self._backend = backend or default_backend()
        self._ctx = load_context(public_context, pinned_sha256, backend=self._backend)
        self.site_id = site_id
        self.context_sha256 = pinned_sha256.lower()
        self.slots = self._backend.slot_count(self._ctx)

    def encrypt(self, update: np.ndarray, weight: float = 1.0) -> EncryptedUpdate:
        """Encrypt ``weight * update`` as ceil(d / slots) packed CKKS ciphertexts."""
        arr = _check_vector(update, weight)
        weighted = arr * float(weight)
        chunks = tuple(
            self._backend.ciphertext_to_bytes(self._backend.encrypt(self._ctx, weighted[s:e]))
            for s, e in chunk_bounds(arr.size, self.slots)
        )
        return EncryptedUpdate(
            site_id=self.site_id,
            context_sha256=self.context_sha256,
            length=int(arr.size),
            weight=float(weight),
            chunks=chunks,
        )


class CoordinatorAggregator:
    """The coordinator's running encrypted sum. Holds a public context: it cannot decrypt.

    State is explicit in ``site_ids_`` and ``total_weight_``. :meth:`add` is all-or-nothing: a
    rejected update leaves the sum unchanged.
    """

    def __init__(
        self,
        public_context: bytes,
        pinned_sha256: str,
        *,
        length: int,
        backend: CkksBackend | None = None,
    ) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise HeParameterError([f"length={length!r} must be an int >= 1 (the update size)"])
        self._backend = backend or default_backend()
        self._ctx = load_context(public_context, pinned_sha256, backend=self._backend)
        self.context_sha256 = pinned_sha256.lower()
        self.length = length
        self._bounds = chunk_bounds(length, self._backend.slot_count(self._ctx))
        self._sum: list[Any] | None = None
        self.site_ids_: list[str] = []
        self.total_weight_ = 0.0

    def add(self, update: EncryptedUpdate | dict[str, Any]) -> None:
        """Add one site's encrypted update (an :class:`EncryptedUpdate` or its payload)."""
        if isinstance(update, dict):
            update = EncryptedUpdate.from_payload(update)
        problems = []
        if update.site_id in self.site_ids_:
            problems.append(f"site {update.site_id!r} already contributed to this aggregate")
        if update.context_sha256 != self.context_sha256:
            problems.append(f"site {update.site_id!r} encrypted under another context")
        if update.length != self.length:
            problems.append(
                f"site {update.site_id!r} sent length {update.length}, expected {self.length}"
            )
        if len(update.chunks) != len(self._bounds):
            problems.append(
                f"site {update.site_id!r} sent {len(update.chunks)} chunks, "
                f"expected {len(self._bounds)}"
            )
        if not (math.isfinite(update.weight) and update.weight > 0):
            problems.append(f"site {update.site_id!r} declared weight {update.weight!r}")
        if problems:
            raise AggregationError("; ".join(problems))
        cts = []
        for (start, stop), blob in zip(self._bounds, update.chunks, strict=True):
            ct = self._backend.ciphertext_from_bytes(self._ctx, blob)
            if self._backend.size(ct) != stop - start:
                raise CiphertextError(f"site {update.site_id!r}: ciphertext rejected")
            cts.append(ct)
        new_sum = (
            cts
            if self._sum is None
            else [self._backend.add(a, b) for a, b in zip(self._sum, cts, strict=True)]
        )
        self._sum = new_sum
        self.site_ids_.append(update.site_id)
        self.total_weight_ += update.weight

    def result(self) -> EncryptedAggregate:
        """The encrypted weighted sum so far (to be sent to the key holder)."""
        if self._sum is None:
            raise AggregationError("no site has contributed yet; call add() first")
        return EncryptedAggregate(
            context_sha256=self.context_sha256,
            length=self.length,
            total_weight=self.total_weight_,
            site_ids=tuple(self.site_ids_),
            chunks=tuple(self._backend.ciphertext_to_bytes(ct) for ct in self._sum),
        )
