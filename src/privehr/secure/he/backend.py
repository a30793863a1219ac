"""The CKKS backend interface: what privehr needs from a homomorphic-encryption library.

Aggregation and encrypted scoring are written against :class:`CkksBackend`, not against
TenSEAL, so that another library (OpenFHE, Lattigo via bindings) can replace TenSEAL by
implementing these few methods. The interface is deliberately small: encrypt, add, multiply
by a *plaintext*, serialise, decrypt -- plus ``square`` for the optional quadratic-activation
scoring model. Nothing here rotates, so no party ever needs Galois keys (the Galois-key context
is ~35 MB; we never ship it), and relinearisation keys travel only for that optional model.

Contexts and ciphertexts are opaque handles (``Any``); only bytes cross party boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from privehr.secure.he.errors import HeParameterError

# Largest total coefficient-modulus size (bits) for 128-bit classical security, per the
# HomomorphicEncryption.org standard as enforced by Microsoft SEAL (``CoeffModulus::MaxBitCount``).
MAX_COEFF_BITS_128 = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


@dataclass(frozen=True)
class CkksParams:
    """CKKS encryption parameters, fixed at the key ceremony and pinned with the context hash.

    ``poly_modulus_degree`` N gives N/2 slots per ciphertext. ``coeff_mod_bit_sizes`` is the
    modulus chain (first and last primes 60 bits; the middle primes equal the scale and each
    allows one plaintext multiplication). ``scale_bits`` sets the fixed-point precision: with
    2^40 a freshly encrypted value carries an error of ~1e-8.

    Why the defaults: aggregation only adds ciphertexts (sites pre-weight, see
    :mod:`privehr.secure.he.aggregation`) and scoring needs one plaintext multiplication, so
    (60, 40, 60) at N=8192 is enough, keeps 128-bit security with room to spare, and makes a
    ciphertext ~57 bytes per value (14x float32); each extra 40-bit prime adds ~24 bytes/value.
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 60)
    scale_bits: int = 40

    def __post_init__(self) -> None:
        problems: list[str] = []
        n = self.poly_modulus_degree
        if n not in MAX_COEFF_BITS_128:
            problems.append(
                f"poly_modulus_degree={n!r} must be one of {sorted(MAX_COEFF_BITS_128)}; "
                "use 8192 (or 16384 for deeper circuits)"
            )
        sizes = tuple(self.coeff_mod_bit_sizes)
        if len(sizes) < 3 or any(not isinstance(b, int) or not 20 <= b <= 60 for b in sizes):
            problems.append(
                f"coeff_mod_bit_sizes={sizes!r} must list at least 3 prime sizes, each an int "
                "in [20, 60]; use (60, 40, 60)"
            )
        elif n in MAX_COEFF_BITS_128 and sum(sizes) > MAX_COEFF_BITS_128[n]:
            problems.append(
                f"coeff_mod_bit_sizes={sizes!r} total {sum(sizes)} bits, above the 128-bit "
                f"security limit {MAX_COEFF_BITS_128[n]} for N={n}; drop a prime or raise N"
            )
        if not isinstance(self.scale_bits, int) or not 20 <= self.scale_bits <= 59:
            problems.append(f"scale_bits={self.scale_bits!r} must be an int in [20, 59]; use 40")
        elif len(sizes) >= 3 and sizes[0] <= self.scale_bits:
            problems.append(
                f"scale_bits={self.scale_bits} must be below the first prime ({sizes[0]} bits) "
                "so decrypted values keep integer headroom; use 40 with a 60-bit first prime"
            )
        if problems:
            raise HeParameterError(problems)
        object.__setattr__(self, "coeff_mod_bit_sizes", sizes)

    @property
    def slot_count(self) -> int:
        """Values packed per ciphertext (N/2)."""
        return self.poly_modulus_degree // 2

    @property
    def multiplicative_levels(self) -> int:
        """Plaintext multiplications a fresh ciphertext can absorb (middle primes)."""
        return len(self.coeff_mod_bit_sizes) - 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CkksParams:
        return cls(
            poly_modulus_degree=int(data["poly_modulus_degree"]),
            coeff_mod_bit_sizes=tuple(int(b) for b in data["coeff_mod_bit_sizes"]),
            scale_bits=int(data["scale_bits"]),
        )


#: Encrypted aggregation: additions only (sites pre-weight).
AGGREGATION_PARAMS = CkksParams()
#: Encrypted scoring: one plaintext multiplication (weights x features, masked).
SCORING_PARAMS = CkksParams()


@runtime_checkable
class CkksBackend(Protocol):
    """What privehr needs from a CKKS library. Contexts and ciphertexts are opaque handles."""

    name: str

    def create_context(self, params: CkksParams) -> Any:
        """A fresh context holding a new secret key (and its public key)."""
        ...

    def serialize_context(self, ctx: Any, *, secret_key: bool, relin_keys: bool = False) -> bytes:
        """Bytes of the context; relinearisation keys only on request (quadratic models),
        Galois keys never (nothing here rotates)."""
        ...

    def has_relin_keys(self, ctx: Any) -> bool: ...

    def load_context(self, data: bytes) -> Any:
        """A context from bytes. Unchecked: callers go through ``ceremony.load_context``."""
        ...

    def has_secret_key(self, ctx: Any) -> bool: ...

    def slot_count(self, ctx: Any) -> int: ...

    def scale(self, ctx: Any) -> float:
        """The context's encoding scale (2^scale_bits)."""
        ...

    def coeff_modulus_bits(self, ctx: Any) -> int:
        """Total bits of the full coefficient modulus (special prime included)."""
        ...

    def multiplicative_levels(self, ctx: Any) -> int: ...

    def encrypt(self, ctx: Any, values: np.ndarray) -> Any: ...

    def ciphertext_to_bytes(self, ct: Any) -> bytes: ...

    def ciphertext_from_bytes(self, ctx: Any, data: bytes) -> Any: ...

    def ciphertext_form(self, ctx: Any, ct: Any) -> tuple[int, int, float]:
        """(polynomials, modulus level, scale) of a ciphertext. A fresh or merely added
        ciphertext has (2, multiplicative_levels(ctx), 2^scale_bits); anything else was
        multiplied, rescaled or forged."""
        ...

    def size(self, ct: Any) -> int:
        """Number of values the ciphertext claims to carry (metadata, set by the encryptor)."""
        ...

    def add(self, a: Any, b: Any) -> Any: ...

    def multiply_plain(self, ct: Any, values: np.ndarray) -> Any:
        """Slot-wise product with a plaintext vector of length ``size(ct)``."""
        ...

    def add_plain(self, ct: Any, values: np.ndarray) -> Any: ...

    def multiply_scalar(self, ct: Any, value: float) -> Any: ...

    def add_scalar(self, ct: Any, value: float) -> Any: ...

    def square(self, ct: Any) -> Any:
        """Ciphertext squared and relinearised (needs relinearisation keys)."""
        ...

    def decrypt(self, ctx: Any, ct: Any) -> np.ndarray:
        """Decrypt with ``ctx``'s secret key; raises DecryptionUnavailableError without one."""
        ...


def default_backend() -> CkksBackend:
    """The TenSEAL backend (imported lazily so the interface has no hard TenSEAL import)."""
    from privehr.secure.he.tenseal_backend import TenSealBackend

    return TenSealBackend()
