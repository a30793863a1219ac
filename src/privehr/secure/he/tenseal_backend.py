"""TenSEAL (Microsoft SEAL) implementation of :class:`~privehr.secure.he.backend.CkksBackend`.

TenSEAL facts this adapter relies on or guards against (tenseal 0.3.18):

- ``Context.serialize(save_secret_key=False, save_relin_keys=False, save_galois_keys=False)``
  gives the public part only (~0.35 MB at N=8192 with three primes); TenSEAL creates relin keys
  by default, and we drop them because no party multiplies two ciphertexts.
- ``context_from`` accepts corrupted bytes silently and encrypts garbage under them; hence the
  pinned SHA-256 in :mod:`privehr.secure.he.ceremony`.
- ``CKKSVector.decrypt`` returns ``size()`` values, where ``size`` is metadata written by the
  encryptor. Code that must see *every* slot works on full-slot vectors (size == N/2).
- After a plaintext multiplication TenSEAL rescales and then *declares* the scale to be the
  global scale although the true scale is off by q_last/2^40: multiplying values of ~1e3 by
  777 gave an absolute error of 0.1 here (relative ~1.3e-7) against ~1e-8 for a fresh
  ciphertext. This is one reason aggregation avoids multiplications (sites pre-weight).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tenseal as ts

from privehr.secure.he.backend import CkksParams
from privehr.secure.he.errors import CiphertextError, DecryptionUnavailableError, HeError


class TenSealBackend:
    """CKKS through TenSEAL. Stateless: every method takes the context it works under."""

    name = "tenseal-0.3"

    def create_context(self, params: CkksParams) -> Any:
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        )
        ctx.global_scale = float(2**params.scale_bits)
        return ctx

    def serialize_context(self, ctx: Any, *, secret_key: bool, relin_keys: bool = False) -> bytes:
        return bytes(
            ctx.serialize(
                save_public_key=True,
                save_secret_key=secret_key,
                save_galois_keys=False,
                save_relin_keys=relin_keys,
            )
        )

    def has_relin_keys(self, ctx: Any) -> bool:
        return bool(ctx.has_relin_keys())

    def load_context(self, data: bytes) -> Any:
        try:
            return ts.context_from(data)
        except Exception as exc:  # TenSEAL raises several unrelated types
            raise HeError("context bytes could not be parsed as a TenSEAL context") from exc

    def has_secret_key(self, ctx: Any) -> bool:
        return bool(ctx.has_secret_key())

    def slot_count(self, ctx: Any) -> int:
        parms = ctx.seal_context().data.key_context_data().parms()
        return int(parms.poly_modulus_degree()) // 2

    def scale(self, ctx: Any) -> float:
        return float(ctx.global_scale)

    def coeff_modulus_bits(self, ctx: Any) -> int:
        data = ctx.seal_context().data
        if not data.parameters_set():
            raise HeError("context parameters are not valid for SEAL")
        return int(data.key_context_data().total_coeff_modulus_bit_count())

    def multiplicative_levels(self, ctx: Any) -> int:
        return int(ctx.seal_context().data.first_context_data().chain_index())

    def encrypt(self, ctx: Any, values: np.ndarray) -> Any:
        return ts.ckks_vector(ctx, np.asarray(values, dtype=np.float64).tolist())

    def ciphertext_to_bytes(self, ct: Any) -> bytes:
        return bytes(ct.serialize())

    def ciphertext_from_bytes(self, ctx: Any, data: bytes) -> Any:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CiphertextError("ciphertext rejected")
        try:
            return ts.ckks_vector_from(ctx, bytes(data))
        except Exception as exc:
            raise CiphertextError("ciphertext rejected") from exc

    def ciphertext_form(self, ctx: Any, ct: Any) -> tuple[int, int, float]:
        try:
            parts = ct.ciphertext()
            if len(parts) != 1:
                raise CiphertextError("ciphertext rejected")
            seal_ct = parts[0]
            level = ctx.seal_context().data.get_context_data(seal_ct.parms_id()).chain_index()
            return int(seal_ct.size()), int(level), float(seal_ct.scale)
        except CiphertextError:
            raise
        except Exception as exc:
            raise CiphertextError("ciphertext rejected") from exc

    def size(self, ct: Any) -> int:
        return int(ct.size())

    def add(self, a: Any, b: Any) -> Any:
        try:
            return a + b
        except Exception as exc:
            raise CiphertextError("ciphertext rejected") from exc

    def multiply_plain(self, ct: Any, values: np.ndarray) -> Any:
        try:
            return ct * np.asarray(values, dtype=np.float64).tolist()
        except Exception as exc:
            raise CiphertextError("ciphertext rejected") from exc

    def add_plain(self, ct: Any, values: np.ndarray) -> Any:
        try:
            return ct + np.asarray(values, dtype=np.float64).tolist()
        except Exception as exc:
            raise CiphertextError("ciphertext rejected") from exc

    def multiply_scalar(self, ct: Any, value: float) -> Any:
        try:
            return ct * float(value)
        except Exception as exc:
            raise CiphertextError("ciphertext rejected") from exc

    def add_scalar(self, ct: Any, value: float) -> Any:
        try:
            return ct + float(value)
        except Exception as exc:
            raise CiphertextError("ciphertext rejected") from exc

    def square(self, ct: Any) -> Any:
        try:
            return ct.square()
        except Exception as exc:
            raise CiphertextError("ciphertext rejected") from exc

    def decrypt(self, ctx: Any, ct: Any) -> np.ndarray:
        if not ctx.has_secret_key():
            raise DecryptionUnavailableError(
                "this context holds no secret key (a public context): only the key holder can "
                "decrypt; send the ciphertext to it"
            )
        try:
            return np.asarray(ct.decrypt(ctx.secret_key()), dtype=np.float64)
        except Exception as exc:
            raise CiphertextError("ciphertext rejected") from exc
