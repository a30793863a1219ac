"""The key holder: the one party with the CKKS secret key. It decrypts aggregates -- and only
genuine ones -- and rounds them before release.

Before it releases anything, :meth:`KeyHolder.decrypt_aggregate` checks, collecting the round
as spent *before* decrypting (so a refused forgery cannot be retried in the same round):

- the aggregate is under this key holder's context and for a round never decrypted before;
- it claims >= ``min_sites`` distinct sites, each with a contribution proof of this round
  (with a roster: a roster site with a valid Ed25519 signature);
- every chunk is in fresh form (two polynomials, top level, the context's scale), so no
  plaintext mask was applied;
- the decrypted token slots equal the sum of the claimed sites' sealed tokens within the
  CKKS error bound.

Rounding before release: the decrypted *sum* is rounded to 2^-rounding_bits (default 2^-20)
before division by the total weight. An exact CKKS decryption handed to a party that holds
the ciphertext reveals the decryption error and with it the secret key (Li & Micciancio,
EUROCRYPT 2021); the error here is ~2^-26, far below the grid. Rounding is a pragmatic
mitigation, not a proof (noise flooding with proven parameters would be).

Error bound (tested): per coordinate, |released weighted mean - plaintext weighted mean|
<= (K * 2^-24 + 2^-(rounding_bits+1)) / W for K sites of total weight W, provided every
pre-weighted value stays within 2^20 (enforced at the site). Measured fresh error ~2^-26.5.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from privehr.secure.he.backend import AGGREGATION_PARAMS, CkksBackend, CkksParams, default_backend
from privehr.secure.he.ceremony import (
    CeremonyRecord,
    PublicContext,
    check_pinned,
    run_ceremony,
    sha256_hex,
)
from privehr.secure.he.contribution import verified_token_sum
from privehr.secure.he.errors import AggregationError, CiphertextError, HeParameterError
from privehr.secure.he.packing import (
    MAX_ROUNDING_BITS,
    aggregate_error_bound,
    chunk_bounds,
    packed_length,
    require_fresh_form,
    token_tolerance,
)
from privehr.secure.he.payloads import EncryptedAggregate

_SECRET_MAGIC = b"PRIVEHR-HE-KEYHOLDER-1\n"


class KeyHolder:
    """Holds the secret key; decrypts verified aggregates and rounds them before release.

    Settings (``rounding_bits``, ``min_sites``, ``roster``) are fixed at construction; the only
    state is ``decrypted_rounds_`` (persist it with the key, see :meth:`to_secret_bytes`).
    """

    def __init__(
        self,
        secret_context: Any,
        token_key: X25519PrivateKey,
        public: PublicContext,
        record: CeremonyRecord,
        *,
        rounding_bits: int = MAX_ROUNDING_BITS,
        min_sites: int = 2,
        roster: Mapping[str, Ed25519PublicKey | bytes] | None = None,
        decrypted_rounds: Iterable[str] = (),
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
        keys: dict[str, Ed25519PublicKey] | None = None
        if roster is not None:
            keys = {}
            for sid, key in roster.items():
                try:
                    keys[str(sid)] = (
                        key if isinstance(key, Ed25519PublicKey)
                        else Ed25519PublicKey.from_public_bytes(bytes(key))
                    )
                except (TypeError, ValueError):
                    problems.append(
                        f"roster[{sid!r}] must be an Ed25519 public key (object or 32 raw bytes)"
                    )
        if problems:
            raise HeParameterError(problems)
        self._ctx = secret_context
        self._token_key = token_key
        self._backend = backend or default_backend()
        self.public = public
        self.record = record
        self.rounding_bits = rounding_bits
        self.min_sites = min_sites
        self.roster = keys
        self.decrypted_rounds_: set[str] = set(decrypted_rounds)

    @classmethod
    def create(
        cls,
        params: CkksParams = AGGREGATION_PARAMS,
        *,
        holder_id: str = "key-holder",
        rounding_bits: int = MAX_ROUNDING_BITS,
        min_sites: int = 2,
        roster: Mapping[str, Ed25519PublicKey | bytes] | None = None,
        backend: CkksBackend | None = None,
    ) -> tuple[KeyHolder, bytes, str]:
        """Run the ceremony; returns ``(key_holder, public_context_bytes, sha256)``.

        Ship ``key_holder.record`` (context hash + token key) with the public context; every
        party pins it (compare ``record.sha256()`` out of band).
        """
        be = backend or default_backend()
        token_key = X25519PrivateKey.generate()
        ctx, public, record = run_ceremony(
            params,
            holder_id,
            backend=be,
            token_public_key=token_key.public_key().public_bytes_raw(),
        )
        holder = cls(
            ctx,
            token_key,
            public,
            record,
            rounding_bits=rounding_bits,
            min_sites=min_sites,
            roster=roster,
            backend=be,
        )
        return holder, public.data, public.sha256

    def to_secret_bytes(self) -> bytes:
        """SECRET: CKKS secret context and token key, for the holder's own storage only (mode
        0600, never logged, never sent). Reload with :meth:`from_secret_bytes`."""
        ctx_bytes = self._backend.serialize_context(self._ctx, secret_key=True)
        return _SECRET_MAGIC + self._token_key.private_bytes_raw() + ctx_bytes

    @classmethod
    def from_secret_bytes(cls, data: bytes, record: CeremonyRecord, **settings: Any) -> KeyHolder:
        """Reload a key holder; its public part must still match the pinned ceremony record.
        ``settings`` are the constructor's keyword settings (incl. ``decrypted_rounds``)."""
        if not data.startswith(_SECRET_MAGIC):
            raise HeParameterError(["data is not a key-holder secret made by to_secret_bytes"])
        be = settings.pop("backend", None) or default_backend()
        body = data[len(_SECRET_MAGIC) :]
        token_key = X25519PrivateKey.from_private_bytes(body[:32])
        ctx = be.load_context(body[32:])
        public_bytes = be.serialize_context(ctx, secret_key=False)
        check_pinned(public_bytes, record.context_sha256)
        if token_key.public_key().public_bytes_raw().hex() != record.token_public_key:
            raise HeParameterError(["token key does not match the pinned ceremony record"])
        public = PublicContext(public_bytes, sha256_hex(public_bytes))
        return cls(ctx, token_key, public, record, backend=be, **settings)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_secret_bytes` to ``path`` with mode 0600 (atomic replace).
        ``decrypted_rounds_`` is state, not secret: persist it with the site's other state."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, self.to_secret_bytes())
        finally:
            os.close(fd)
        os.replace(tmp, target)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], record: CeremonyRecord, **settings: Any
    ) -> KeyHolder:
        """Read a key holder written by :meth:`save` (checked against the pinned record)."""
        return cls.from_secret_bytes(Path(path).read_bytes(), record, **settings)

    def decrypt_aggregate(
        self, aggregate: EncryptedAggregate | dict[str, Any], *, mean: bool = True
    ) -> np.ndarray:
        """Verify, decrypt, round the sum to the 2^-rounding_bits grid, divide by the weight.

        With ``mean=False`` returns the rounded weighted sum. Any failed check raises and
        releases nothing; the round is spent either way.
        """
        if isinstance(aggregate, dict):
            aggregate = EncryptedAggregate.from_payload(aggregate)
        self._check_claims(aggregate)
        self.decrypted_rounds_.add(aggregate.round_id)  # spent before any decryption
        tokens = verified_token_sum(
            aggregate.proofs,
            token_key=self._token_key,
            round_id=aggregate.round_id,
            context_sha256=self.public.sha256,
            roster=self.roster,
        )
        plain = self._decrypt_chunks(aggregate)
        n_sites = len(aggregate.site_ids)
        if np.max(np.abs(plain[aggregate.length :] - tokens)) > token_tolerance(n_sites):
            raise AggregationError(
                "aggregate is not the sum of the claimed sites' contributions; nothing released"
            )
        grid = 2.0**-self.rounding_bits
        out = np.round(plain[: aggregate.length] / grid) * grid
        return out / aggregate.total_weight if mean else out

    def error_bound(self, n_sites: int, total_weight: float) -> float:
        """Stated bound on the per-coordinate error of :meth:`decrypt_aggregate` (mean)."""
        return aggregate_error_bound(n_sites, total_weight, self.rounding_bits)

    def _check_claims(self, aggregate: EncryptedAggregate) -> None:
        problems = []
        if aggregate.context_sha256 != self.public.sha256:
            problems.append("aggregate was made under another context than this key holder's")
        if aggregate.round_id in self.decrypted_rounds_:
            problems.append(
                f"round {aggregate.round_id!r} was already decrypted (or attempted); one "
                "decryption per round"
            )
        sites = aggregate.site_ids
        if len(set(sites)) != len(sites) or len(set(sites)) < self.min_sites:
            problems.append(
                f"aggregate claims {len(set(sites))} distinct site(s) in {len(sites)}; this key "
                f"holder decrypts only sums over >= {self.min_sites} distinct sites (min_sites)"
            )
        if tuple(p.site_id for p in aggregate.proofs) != tuple(sites):
            problems.append("aggregate must carry exactly one contribution proof per claimed site")
        if not (math.isfinite(aggregate.total_weight) and aggregate.total_weight > 0):
            problems.append(f"total_weight={aggregate.total_weight!r} must be > 0")
        if problems:
            raise AggregationError("; ".join(problems))

    def _decrypt_chunks(self, aggregate: EncryptedAggregate) -> np.ndarray:
        total = packed_length(aggregate.length)
        bounds = chunk_bounds(total, self._backend.slot_count(self._ctx))
        if len(aggregate.chunks) != len(bounds):
            raise CiphertextError("ciphertext rejected")
        out = np.empty(total, dtype=np.float64)
        for (start, stop), blob in zip(bounds, aggregate.chunks, strict=True):
            ct = self._backend.ciphertext_from_bytes(self._ctx, blob)
            require_fresh_form(self._backend, self._ctx, ct, stop - start)
            values = self._backend.decrypt(self._ctx, ct)
            if values.shape != (stop - start,):
                raise CiphertextError("ciphertext rejected")
            out[start:stop] = values
        return out
