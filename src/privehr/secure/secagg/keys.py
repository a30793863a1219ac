"""Key material of one round: X25519 agreement, HKDF-SHA256 derivations, AES-GCM share channel.

Every derivation binds the configuration digest (round id, study id, sizes) and the ordered
pair of site ids, so a key, mask or ciphertext of one round or pair is useless in another.
Each site holds two fresh X25519 key pairs per round (Bonawitz et al.): ``c`` encrypts the
Shamir shares it sends, ``s`` derives pairwise masks. Revealing a dropped site's ``s`` key
(dropout recovery) therefore never opens the share channel, and because keys are fresh each
round a revealed key is never used again.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privehr.secure.secagg.constants import (
    LABEL_COMMIT,
    LABEL_PAIR_MASK,
    LABEL_SELF_MASK,
    LABEL_SHARE_AD,
    LABEL_SHARE_KEY,
)
from privehr.secure.secagg.shamir import RandomSource

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


class CryptoCheckFailed(Exception):
    """Internal: a signature, AEAD or key check failed (mapped to SecAggCryptoError)."""


def encode_fields(*parts: bytes | str | int) -> bytes:
    """Unambiguous length-prefixed encoding of the fields of a signed or hashed statement."""
    out = bytearray()
    for part in parts:
        if isinstance(part, str):
            raw = b"s" + part.encode()
        elif isinstance(part, int):
            raw = b"i" + str(part).encode()
        else:
            raw = b"b" + bytes(part)
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def new_x25519(rng: RandomSource) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(rng.token_bytes(KEY_BYTES))


def public_raw(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def private_raw(key: X25519PrivateKey) -> bytes:
    return key.private_bytes_raw()


def x25519_from_raw(private: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(private)


def x25519_public_of(private: bytes) -> bytes:
    """Public key of a raw private key (to check a reconstructed key against its advert)."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def _agree(private: X25519PrivateKey | bytes, peer_public: bytes) -> bytes:
    if isinstance(private, bytes):
        private = X25519PrivateKey.from_private_bytes(private)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # low-order point / all-zero shared secret
        raise CryptoCheckFailed from exc
    return shared


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def pair_mask_seed(
    private: X25519PrivateKey | bytes, peer_public: bytes, cfg_digest: bytes, a: str, b: str
) -> bytes:
    """Seed of the pairwise mask between sites ``a`` and ``b`` (symmetric in a, b)."""
    lo, hi = _pair(a, b)
    return _hkdf(_agree(private, peer_public), encode_fields(LABEL_PAIR_MASK, cfg_digest, lo, hi))


def self_mask_seed(b_seed: bytes, cfg_digest: bytes, site_id: str) -> bytes:
    """Seed of a site's self mask, derived from its Shamir-shared secret ``b``."""
    return _hkdf(b_seed, encode_fields(LABEL_SELF_MASK, cfg_digest, site_id))


def commit_seed(b_seed: bytes, cfg_digest: bytes, site_id: str) -> bytes:
    """Hash commitment to ``b`` (256-bit random, so hiding), published at advertise time."""
    return hashlib.sha256(encode_fields(LABEL_COMMIT, cfg_digest, site_id, b_seed)).digest()


def channel_key(
    private: X25519PrivateKey, peer_public: bytes, cfg_digest: bytes, a: str, b: str
) -> bytes:
    lo, hi = _pair(a, b)
    return _hkdf(_agree(private, peer_public), encode_fields(LABEL_SHARE_KEY, cfg_digest, lo, hi))


def _share_ad(cfg_digest: bytes, sender: str, receiver: str) -> bytes:
    return encode_fields(LABEL_SHARE_AD, cfg_digest, sender, receiver)


def seal_share(
    key: bytes, rng: RandomSource, cfg_digest: bytes, sender: str, receiver: str, plain: bytes
) -> bytes:
    """AES-256-GCM; round and direction (sender -> receiver) bound in the associated data."""
    nonce = rng.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plain, _share_ad(cfg_digest, sender, receiver))


def open_share(key: bytes, cfg_digest: bytes, sender: str, receiver: str, blob: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise CryptoCheckFailed
    try:
        return AESGCM(key).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], _share_ad(cfg_digest, sender, receiver)
        )
    except InvalidTag as exc:
        raise CryptoCheckFailed from exc


def verify_signature(public_raw_key: bytes, signature: bytes, message: bytes) -> None:
    """Ed25519 verification against a roster key; raises CryptoCheckFailed."""
    try:
        Ed25519PublicKey.from_public_bytes(public_raw_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise CryptoCheckFailed from exc
