"""Packing rules and bounds shared by the aggregation roles (site, coordinator, key holder).

A site's plaintext is ``weight * update`` followed by ``TOKEN_SLOTS`` contribution tokens,
packed N/2 values per ciphertext (4096 at N=8192): an update of length d travels as
ceil((d + 4) / (N/2)) ciphertexts, the last one shorter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from privehr.secure.he.backend import CkksBackend
from privehr.secure.he.contribution import TOKEN_SLOTS
from privehr.secure.he.errors import CiphertextError, HeParameterError

#: Largest |weight * value| a site may encrypt; keeps the stated error bound valid.
MAX_ABS_WEIGHTED = float(2**20)
#: Per-ciphertext CKKS error bound used in the stated aggregate bound (measured ~2^-26.5).
FRESH_ERROR_BOUND = 2.0**-24
#: Finest rounding grid allowed before a decryption is released (2^-20).
MAX_ROUNDING_BITS = 20


def chunk_bounds(length: int, slots: int) -> list[tuple[int, int]]:
    """[start, stop) of every chunk of a length-``length`` vector packed ``slots`` per chunk."""
    return [(s, min(s + slots, length)) for s in range(0, length, slots)]


def packed_length(update_length: int) -> int:
    """Values actually encrypted for an update of this length (update, then tokens)."""
    return update_length + TOKEN_SLOTS


def aggregate_error_bound(n_sites: int, total_weight: float, rounding_bits: int = 20) -> float:
    """Stated per-coordinate bound on |decrypted weighted mean - plaintext weighted mean|."""
    return (n_sites * FRESH_ERROR_BOUND + 2.0 ** -(rounding_bits + 1)) / total_weight


def token_tolerance(n_sites: int) -> float:
    """How far decrypted token sums may sit from the true sum (the CKKS error bound)."""
    return n_sites * FRESH_ERROR_BOUND


def check_update(vec: Any, weight: Any) -> np.ndarray:
    """Validate a site's update and weight; returns the update as float64."""
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


def require_fresh_form(backend: CkksBackend, ctx: Any, ct: Any, expected_size: int) -> None:
    """Refuse a ciphertext that is not a sum of fresh encryptions of ``expected_size`` values:
    two polynomials, top modulus level, the context's scale. A plaintext multiplication
    (e.g. a mask that keeps one site's values) would lower the level or change the scale."""
    polys, level, scale = backend.ciphertext_form(ctx, ct)
    if (
        polys != 2
        or level != backend.multiplicative_levels(ctx)
        or scale != backend.scale(ctx)
        or backend.size(ct) != expected_size
    ):
        raise CiphertextError("ciphertext rejected")
