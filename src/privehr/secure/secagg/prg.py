"""Mask expansion: a 32-byte seed -> ``d`` words mod 2^b, by the AES-256-CTR keystream.

Why AES-CTR from ``cryptography``: a mask must be computationally indistinguishable from
uniform to anyone without the seed. Flower 1.42 folds its seed to 32 bits for NumPy's
MT19937, which a coordinator can brute-force in minutes; here the full 256-bit key drives a
standard stream cipher (AES-NI, several GB/s). Every seed is itself a fresh HKDF output used
for exactly one expansion, so the all-zero counter block is safe.

Words are produced in the working dtype (uint32 for b <= 32, else uint64); arithmetic mod
2^32 / 2^64 is exact mod 2^b, and the final sum is reduced with ``& (2**b - 1)``.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SEED_BYTES = 32
_ZERO_IV = bytes(16)
_SPARE = 15  # update_into wants block_size - 1 spare bytes after the output


def _word(dtype: str) -> np.dtype:
    word = np.dtype(dtype)
    if word not in (np.dtype(np.uint32), np.dtype(np.uint64)):
        raise ValueError(f"dtype={dtype!r}: expected 'uint32' or 'uint64'")
    return word


def _check_seed(seed: bytes) -> None:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed: expected {SEED_BYTES} bytes, got {len(seed)}")


def expand_mask(seed: bytes, dim: int, dtype: str = "uint32") -> np.ndarray:
    """Expand ``seed`` into ``dim`` uniform words of ``dtype`` (uint32 or uint64); owned array."""
    _check_seed(seed)
    n_bytes = dim * _word(dtype).itemsize
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_IV)).encryptor()
    # Encrypt a zeroed buffer in place: the output is the bare keystream, with no copy.
    buf = bytearray(n_bytes + _SPARE)
    encryptor.update_into(memoryview(buf)[:n_bytes], buf)
    return np.frombuffer(buf, dtype=dtype, count=dim)


class MaskExpander:
    """Reusable expander for hot loops (a site's masks, the coordinator's unmasking).

    Holds one zero source and one scratch buffer for its lifetime (explicit state, no module
    cache), which saves an allocation and its page faults per mask: ~10% of the masking time.
    ``expand`` returns a view of the scratch buffer, valid until the next call: add it into an
    accumulator at once.
    """

    def __init__(self, dim: int, dtype: str = "uint32") -> None:
        self.dim = dim
        self.dtype = _word(dtype)
        self._n = dim * self.dtype.itemsize
        self._zeros = bytes(self._n)
        self._scratch = bytearray(self._n + _SPARE)

    def expand(self, seed: bytes) -> np.ndarray:
        _check_seed(seed)
        encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_IV)).encryptor()
        encryptor.update_into(self._zeros, self._scratch)
        return np.frombuffer(self._scratch, dtype=self.dtype, count=self.dim)
