"""Key ceremony: who creates the CKKS key, what everyone else receives, and hash pinning.

Trust model, stated plainly:

- One designated party (for aggregation: one site chosen at set-up; for encrypted scoring:
  the scoring site itself) creates the context and is the only holder of the secret key.
- Everybody else receives a *public* context: the encryption parameters and the public key,
  no secret key, no relinearisation or Galois keys (nothing here needs them; the Galois-key
  context is ~35 MB). A public context can encrypt and add, never decrypt.
- At the ceremony every party records the SHA-256 of the public context it was given
  (:class:`CeremonyRecord`), out of band or through a signed roster. Later loads go through
  :func:`load_context`, which refuses any context whose hash differs: TenSEAL itself parses a
  corrupted or substituted context without complaint and will encrypt under it.

What the ceremony does *not* protect: a key holder that is malicious or compromised can
decrypt every ciphertext it obtains, including an individual site's update if it colludes
with the coordinator (an honest key holder refuses single updates passed off as aggregates:
see :mod:`privehr.secure.he.contribution`). Where that is unacceptable, use SecAgg.

For aggregation the record also carries the key holder's X25519 *token key* (sites seal their
contribution tokens to it); pin the whole record, e.g. by comparing ``record.sha256()`` out of
band: a coordinator that substituted the token key could forge contribution proofs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from privehr.secure.he.backend import (
    MAX_COEFF_BITS_128,
    CkksBackend,
    CkksParams,
    default_backend,
)
from privehr.secure.he.errors import ContextMismatchError, HeError, HeParameterError

CEREMONY_RECORD_VERSION = 1


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (the value parties pin)."""
    return hashlib.sha256(bytes(data)).hexdigest()


@dataclass(frozen=True)
class PublicContext:
    """A public CKKS context as shipped: the bytes and their SHA-256."""

    data: bytes
    sha256: str

    @property
    def nbytes(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class CeremonyRecord:
    """What every party pins at the ceremony. Frozen and versioned; contains no secret."""

    holder_id: str
    params: CkksParams
    context_sha256: str
    backend: str
    #: hex X25519 key to which sites seal their contribution tokens ("" when unused)
    token_public_key: str = ""
    version: int = CEREMONY_RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "holder_id": self.holder_id,
            "params": self.params.to_dict(),
            "context_sha256": self.context_sha256,
            "backend": self.backend,
            "token_public_key": self.token_public_key,
        }

    def sha256(self) -> str:
        """Digest of the whole record (canonical JSON): what parties compare out of band."""
        return sha256_hex(json.dumps(self.to_dict(), sort_keys=True).encode())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CeremonyRecord:
        version = int(data.get("version", 0))
        if version != CEREMONY_RECORD_VERSION:
            raise HeParameterError(
                [
                    f"version={version!r} is not a known ceremony-record version "
                    f"({CEREMONY_RECORD_VERSION}); upgrade privehr or re-run the ceremony"
                ]
            )
        return cls(
            holder_id=str(data["holder_id"]),
            params=CkksParams.from_dict(data["params"]),
            context_sha256=str(data["context_sha256"]),
            backend=str(data["backend"]),
            token_public_key=str(data.get("token_public_key", "")),
            version=version,
        )


def run_ceremony(
    params: CkksParams,
    holder_id: str,
    *,
    backend: CkksBackend | None = None,
    token_public_key: bytes = b"",
    relin_keys: bool = False,
) -> tuple[Any, PublicContext, CeremonyRecord]:
    """Create a key pair at the key holder.

    Returns ``(secret_context, public_context, record)``. The secret context never leaves the
    key holder; the public context and the record go to every other party. ``relin_keys``
    ships relinearisation keys (only the quadratic scoring model needs them).
    """
    if not isinstance(holder_id, str) or not holder_id:
        raise HeParameterError(
            [f"holder_id={holder_id!r} must be a non-empty str naming the key-holder site"]
        )
    be = backend or default_backend()
    secret_ctx = be.create_context(params)
    public_bytes = be.serialize_context(secret_ctx, secret_key=False, relin_keys=relin_keys)
    public = PublicContext(data=public_bytes, sha256=sha256_hex(public_bytes))
    record = CeremonyRecord(
        holder_id=holder_id,
        params=params,
        context_sha256=public.sha256,
        backend=be.name,
        token_public_key=bytes(token_public_key).hex(),
    )
    return secret_ctx, public, record


def check_pinned(data: bytes, pinned_sha256: str) -> None:
    """Raise :class:`ContextMismatchError` unless ``sha256(data)`` equals the pinned hash."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise HeParameterError(
            [f"context must be bytes, got {type(data).__name__}; pass the bytes as received"]
        )
    if not isinstance(pinned_sha256, str) or len(pinned_sha256) != 64:
        raise HeParameterError(
            [
                f"pinned_sha256={pinned_sha256!r} must be the 64-hex-digit SHA-256 recorded at the "
                "key ceremony"
            ]
        )
    actual = sha256_hex(bytes(data))
    if not hmac.compare_digest(actual, pinned_sha256.lower()):
        raise ContextMismatchError(
            f"context SHA-256 {actual[:16]}... does not match the hash pinned at the key "
            f"ceremony ({pinned_sha256[:16]}...): the context was corrupted or substituted. "
            "Refuse it; fetch the public context again from the key holder or re-run the "
            "ceremony -- never re-pin to make it pass"
        )


def check_security(backend: CkksBackend, ctx: Any) -> None:
    """Refuse contexts below 128-bit security (HomomorphicEncryption.org table).

    Why the *receiver* checks too: in encrypted scoring the site picks the parameters, and with
    a weak ring the site could solve for the host's weights from the re-randomised result.
    """
    n = 2 * backend.slot_count(ctx)
    bits = backend.coeff_modulus_bits(ctx)
    limit = MAX_COEFF_BITS_128.get(n)
    if limit is None or bits > limit:
        raise HeParameterError(
            [
                f"context has N={n} and a {bits}-bit coefficient modulus, below 128-bit security "
                f"(allowed: {MAX_COEFF_BITS_128}); recreate it with CkksParams defaults"
            ]
        )


def load_context(
    data: bytes,
    pinned_sha256: str,
    *,
    backend: CkksBackend | None = None,
    allow_secret_key: bool = False,
) -> Any:
    """Load a context only if its SHA-256 matches the hash pinned at the ceremony.

    A context that carries a secret key is refused unless ``allow_secret_key`` (the key holder
    reloading its own key): a secret key in a shipped context means the ceremony leaked it.
    """
    check_pinned(data, pinned_sha256)
    be = backend or default_backend()
    ctx = be.load_context(bytes(data))
    check_security(be, ctx)
    if be.has_secret_key(ctx) and not allow_secret_key:
        raise HeError(
            "this context carries a SECRET key; other parties must receive the public context "
            "only. Treat the key as leaked and re-run the ceremony"
        )
    return ctx
