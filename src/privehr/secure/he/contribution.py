"""Contribution proofs: the key holder checks that an "aggregate" really sums the claimed sites.

Why: the key holder decrypts whatever the coordinator hands it. A lying coordinator could
hand it one site's ciphertext and call it the aggregate, and would get that site's update
back. The ciphertext alone cannot show what was summed, so each site adds a secret tag:

1. The site draws ``TOKEN_SLOTS`` random tokens (from ``secrets``), appends them to its
   (pre-weighted) update *inside* the ciphertext, and seals the same tokens to the key
   holder's X25519 token key (X25519 + HKDF-SHA256 + AES-GCM, all from ``cryptography``).
   The seal is bound to round, site and context; with a roster, the site signs it (Ed25519).
2. The coordinator adds ciphertexts and forwards the sealed tokens of the sites it claims.
3. The key holder opens the seals, decrypts, and releases the (rounded) aggregate only if the
   decrypted token slots equal the sum of the claimed sites' tokens, every claimed site is in
   its roster with a valid signature, the ciphertexts are in fresh form (two polynomials, top
   level, scale 2^scale_bits: no plaintext multiplication happened), and the round was never
   decrypted before. Any attempt burns the round.

The coordinator cannot learn the tokens, so it cannot drop, double or scale a contribution
without the check failing: a token is one of 2^31 values on a 2^-20 grid in [-2^10, 2^10), and
the check accepts a window of width 2 * K * 2^-24 around the true sum, so a blind guess passes
with probability about K * 2^-34 per slot (2^-30.7 at K = 10; four slots: ~2^-123).
It can still choose *which* roster sites it sums (at least ``min_sites``) and it can always
abort a round. Without a roster the coordinator can fabricate sites of its own, and the check
then only defends against an honest-but-curious coordinator.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Mapping

import numpy as np
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privehr.secure.he.errors import AggregationError, CiphertextError, HeParameterError
from privehr.secure.he.payloads import ContributionProof

TOKEN_SLOTS = 4
TOKEN_GRID_BITS = 20
TOKEN_RANGE_BITS = 10
_LABEL_SEAL = b"privehr/he/token-seal/v1"
_LABEL_STATEMENT = "privehr/he/contribution/v1"
_NONCE = 12


def _fields(*parts: str | bytes) -> bytes:
    """Unambiguous length-prefixed encoding of the fields of a sealed or signed statement."""
    out = bytearray()
    for part in parts:
        raw = b"s" + part.encode() if isinstance(part, str) else b"b" + bytes(part)
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def _binding(round_id: str, site_id: str, context_sha256: str) -> bytes:
    return _fields(_LABEL_STATEMENT, round_id, site_id, context_sha256)


def draw_tokens() -> np.ndarray:
    """TOKEN_SLOTS secret tokens on a 2^-20 grid in [-2^10, 2^10) (OS randomness)."""
    span = 1 << (TOKEN_GRID_BITS + TOKEN_RANGE_BITS + 1)
    half = span // 2
    return np.array(
        [(secrets.randbelow(span) - half) / float(1 << TOKEN_GRID_BITS) for _ in range(TOKEN_SLOTS)]
    )


def _seal_key(shared: bytes, ephemeral_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral_pub + recipient_pub, info=_LABEL_SEAL
    ).derive(shared)


def seal_tokens(
    tokens: np.ndarray,
    token_public_key: bytes,
    *,
    round_id: str,
    site_id: str,
    context_sha256: str,
) -> bytes:
    """Encrypt tokens to the key holder: ephemeral X25519 public key || nonce || AES-GCM."""
    try:
        recipient = X25519PublicKey.from_public_bytes(bytes(token_public_key))
    except ValueError as exc:
        raise HeParameterError(
            ["token_public_key must be the key holder's 32-byte X25519 key from the ceremony"]
        ) from exc
    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes_raw()
    key = _seal_key(ephemeral.exchange(recipient), eph_pub, bytes(token_public_key))
    nonce = secrets.token_bytes(_NONCE)
    plain = struct.pack(f">{TOKEN_SLOTS}d", *np.asarray(tokens, dtype=np.float64))
    aad = _binding(round_id, site_id, context_sha256)
    return eph_pub + nonce + AESGCM(key).encrypt(nonce, plain, aad)


def open_tokens(
    sealed: bytes,
    token_key: X25519PrivateKey,
    *,
    round_id: str,
    site_id: str,
    context_sha256: str,
) -> np.ndarray:
    """Open a seal made by :func:`seal_tokens`; one opaque error for any failure."""
    try:
        eph_pub, nonce, body = sealed[:32], sealed[32 : 32 + _NONCE], sealed[32 + _NONCE :]
        own_pub = token_key.public_key().public_bytes_raw()
        shared = token_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        key = _seal_key(shared, eph_pub, own_pub)
        aad = _binding(round_id, site_id, context_sha256)
        plain = AESGCM(key).decrypt(nonce, body, aad)
        return np.array(struct.unpack(f">{TOKEN_SLOTS}d", plain))
    except (InvalidTag, ValueError, struct.error) as exc:
        raise CiphertextError("contribution proof rejected") from exc


def make_proof(
    tokens: np.ndarray,
    token_public_key: bytes,
    *,
    round_id: str,
    site_id: str,
    context_sha256: str,
    signer: Ed25519PrivateKey | None,
) -> ContributionProof:
    """Seal the tokens and (with a signer) sign round, site, context and seal."""
    sealed = seal_tokens(
        tokens,
        token_public_key,
        round_id=round_id,
        site_id=site_id,
        context_sha256=context_sha256,
    )
    statement = _binding(round_id, site_id, context_sha256) + _fields(sealed)
    signature = signer.sign(statement) if signer is not None else b""
    return ContributionProof(
        site_id=site_id, round_id=round_id, sealed_tokens=sealed, signature=signature
    )


def verified_token_sum(
    proofs: tuple[ContributionProof, ...],
    *,
    token_key: X25519PrivateKey,
    round_id: str,
    context_sha256: str,
    roster: Mapping[str, Ed25519PublicKey] | None,
) -> np.ndarray:
    """Check every proof (round, roster signature, seal) and return the sum of the tokens."""
    total = np.zeros(TOKEN_SLOTS)
    for proof in proofs:
        if proof.round_id != round_id:
            raise AggregationError("aggregate carries a contribution proof of another round")
        if roster is not None:
            public = roster.get(proof.site_id)
            if public is None:
                raise AggregationError(f"site {proof.site_id!r} is not in the key holder's roster")
            statement = _binding(round_id, proof.site_id, context_sha256) + _fields(
                proof.sealed_tokens
            )
            try:
                public.verify(proof.signature, statement)
            except InvalidSignature as exc:
                raise CiphertextError("contribution proof rejected") from exc
        total += open_tokens(
            proof.sealed_tokens,
            token_key,
            round_id=round_id,
            site_id=proof.site_id,
            context_sha256=context_sha256,
        )
    return total
