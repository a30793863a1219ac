"""Update inversion for logistic regression: what the coordinator can rebuild from updates.

Why logistic regression is the worked case: the gradient of one record is (p − y)·[x, 1], so
the bias gradient is the scalar that multiplies the record. For any number of local
gradient steps on a *single* record every step moves the weights along x, and
``Δw / Δb = x`` exactly. For a batch of B records the ratio is Σ c_i x_i / Σ c_i with
c_i = Σ_t (p_i,t − y_i): a weighted average of the batch, with weights of both signs when
labels are mixed (so it can overshoot). Not exact under weight decay or momentum.

Update layout everywhere in this module: a flat vector ``[w_1 … w_d, b]`` (bias last).

Settings analysed (threat model: an honest-but-curious or lying coordinator):
(a) a single site's plain update: exact for one record, the batch average for more;
(b) the masked words a coordinator holds under SecAgg: fixed-point words plus a uniform
    mask over Z_2^bits; decoding them as if unmasked gives noise (cosine ≈ 0);
(c) the unmasked aggregate over sites: still the weighted average of every record in the
    round, which leaks a single patient when the total batch is tiny and fades as it grows;
(d) the aggregate of clipped, Gaussian-noised gradients (DP): cosine falls roughly like
    1 / sqrt(1 + σ² d) for one record (a signal-to-noise guide, not a proof).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

UpdateFn = Callable[[np.ndarray, float, np.ndarray, np.ndarray], np.ndarray]
MaskFn = Callable[[int, type], np.ndarray]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def lr_per_example_gradients(w: np.ndarray, b: float, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-record gradients of the logistic loss, shape (n, d + 1), bias last."""
    g = (_sigmoid(X @ w + b) - y)[:, None]
    return np.concatenate([g * X, g], axis=1)


def lr_local_update(
    w: np.ndarray, b: float, X: np.ndarray, y: np.ndarray, *, lr: float = 0.1, steps: int = 1
) -> np.ndarray:
    """Plain local training (full-batch gradient descent on the site's batch); returns Δ."""
    theta0 = np.append(np.asarray(w, dtype=float), float(b))
    theta = theta0.copy()
    d = theta.size - 1
    for _ in range(steps):
        theta -= lr * lr_per_example_gradients(theta[:d], theta[d], X, y).mean(axis=0)
    return theta - theta0


def reconstruct_from_update(update: np.ndarray) -> np.ndarray:
    """x̂ = Δw / Δb. A zero bias change leaves only the direction Δw (returned as is).

    >>> reconstruct_from_update(np.array([0.2, -0.4, 0.0, 0.1]))  # [Δw, Δb]
    array([ 2., -4.,  0.])
    """
    u = np.asarray(update, dtype=float)
    dw, db = u[:-1], u[-1]
    if db == 0.0 or not np.isfinite(db):
        return dw.copy()
    return dw / db


def encode_fixed_point(values: np.ndarray, *, frac_bits: int, dtype: type = np.uint32) -> np.ndarray:
    """Round to multiples of 2^-frac_bits and store as two's-complement words of ``dtype``.

    Refuses values outside the representable range instead of wrapping around silently.
    """
    bits = np.dtype(dtype).itemsize * 8
    limit = 2.0 ** (bits - 1 - frac_bits)
    values = np.asarray(values, dtype=float)
    if values.size and not np.max(np.abs(values)) < limit:
        raise ValueError(
            f"values reach {np.max(np.abs(values)):.4g}, beyond ±{limit:.4g} representable with "
            f"{bits}-bit words and frac_bits={frac_bits}; lower frac_bits or clip the update."
        )
    ints = np.round(values * 2.0**frac_bits).astype(np.int64)
    return (ints & ((1 << bits) - 1) if bits < 64 else ints).astype(dtype)


def decode_fixed_point(
    words: np.ndarray,
    *,
    frac_bits: int | None = None,
    scale: float | None = None,
    bits: int | None = None,
) -> np.ndarray:
    """Words mod 2^bits -> floats: centred (two's-complement) lift, then divide by the scale.

    Give ``frac_bits`` (scale 2^frac_bits, as :func:`encode_fixed_point`) or any ``scale``
    (e.g. ``FixedPointCodec.scale`` of ``privehr.secure.quantize``); ``bits`` defaults to the
    word width, and may be smaller when b-bit words travel in a wider container.
    """
    words = np.asarray(words)
    if words.dtype not in (np.uint32, np.uint64):
        raise ValueError(f"expected uint32 or uint64 words, got {words.dtype}; "
                         "pass the coordinator's raw masked vector.")
    if (frac_bits is None) == (scale is None):
        raise ValueError("pass exactly one of frac_bits or scale (how values were scaled)")
    factor = 2.0**frac_bits if frac_bits is not None else float(scale)  # type: ignore[arg-type]
    width = words.dtype.itemsize * 8
    bits = width if bits is None else int(bits)
    if not 1 <= bits <= width:
        raise ValueError(f"bits={bits} must be in 1..{width} for {words.dtype} words")
    if bits == width:
        return words.view(np.int32 if width == 32 else np.int64).astype(float) / factor
    v = (words.astype(np.uint64) & np.uint64((1 << bits) - 1)).astype(np.int64)
    v[v >= 1 << (bits - 1)] -= 1 << bits
    return v.astype(float) / factor


def reconstruct_from_masked_words(
    words: np.ndarray,
    *,
    frac_bits: int | None = None,
    scale: float | None = None,
    bits: int | None = None,
) -> np.ndarray:
    """The same attack on what a coordinator holds under SecAgg: decode, then Δw / Δb."""
    decoded = decode_fixed_point(words, frac_bits=frac_bits, scale=scale, bits=bits)
    return reconstruct_from_update(decoded)


def chacha20_mask(n_words: int, dtype: type = np.uint32, key: bytes | None = None) -> np.ndarray:
    """Uniform mask words from a ChaCha20 keystream (the PRG SecAgg uses; see DESIGN.md).

    Local stand-in for ``privehr.secure.secagg`` so this module does not depend on it; a
    fresh random key per call unless one is given (tests).
    """
    key = os.urandom(32) if key is None else key
    nbytes = n_words * np.dtype(dtype).itemsize
    stream = Cipher(algorithms.ChaCha20(key, b"\x00" * 16), mode=None).encryptor()
    return np.frombuffer(stream.update(b"\x00" * nbytes), dtype=dtype).copy()


def mask_words(words: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """words + mask mod 2^bits (unsigned wrap-around)."""
    return (words + mask).astype(words.dtype)


def best_matching_record(x_hat: np.ndarray, candidates: np.ndarray) -> tuple[int, float]:
    """Linkage: the candidate row with the highest cosine to the reconstruction.

    Models a coordinator holding a list of possible patients (a registry, another dataset):
    if the best match is a patient of the batch, the update re-identified them.
    """
    C = np.asarray(candidates, dtype=float)
    x = np.nan_to_num(np.asarray(x_hat, dtype=float))
    denom = np.linalg.norm(C, axis=1) * np.linalg.norm(x)
    with np.errstate(invalid="ignore", over="ignore"):
        cos = np.where(denom > 0, (C @ x) / np.where(denom > 0, denom, 1.0), 0.0)
    best = int(np.argmax(np.nan_to_num(cos)))
    return best, float(cos[best])


def binary_columns(X: np.ndarray) -> np.ndarray:
    """Boolean mask of columns whose values are all 0 or 1."""
    X = np.asarray(X, dtype=float)
    return np.all((X == 0.0) | (X == 1.0), axis=0)


def score_reconstruction(
    x_hat: np.ndarray,
    X_true: np.ndarray,
    *,
    binary: np.ndarray | None = None,
    population: np.ndarray | None = None,
) -> dict[str, float | int | None]:
    """Compare a reconstruction with the true batch records.

    Returns cosine and relative L2 error against the best-matching record (max cosine),
    cosine against the batch average, the fraction of binary features recovered exactly
    (rounding x̂ at 0.5) and the prior-only baseline (population majority per feature).
    """
    X_true = np.atleast_2d(np.asarray(X_true, dtype=float))
    x_hat = np.nan_to_num(np.asarray(x_hat, dtype=float), nan=0.0, posinf=1e300, neginf=-1e300)
    pop = X_true if population is None else np.asarray(population, dtype=float)
    binary = binary_columns(pop) if binary is None else np.asarray(binary, dtype=bool)
    norm_hat = np.linalg.norm(x_hat)
    norms = np.linalg.norm(X_true, axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        cos = np.where(norms * norm_hat > 0, (X_true @ x_hat) / (norms * norm_hat + 1e-300), 0.0)
        cos = np.nan_to_num(cos)
        best = int(np.argmax(cos))
        mean = X_true.mean(axis=0)
        mean_norm = np.linalg.norm(mean)
        cos_mean = float(mean @ x_hat / (mean_norm * norm_hat)) if mean_norm * norm_hat else 0.0
        rel_l2 = float(np.linalg.norm(x_hat - X_true[best]) / max(norms[best], 1e-12))
    out: dict[str, float | int | None] = {
        "cosine": float(cos[best]),
        "cosine_to_mean": float(np.nan_to_num(cos_mean)),
        "relative_l2": rel_l2,
        "matched_index": best,
        "binary_exact_fraction": None,
        "binary_baseline_fraction": None,
    }
    if binary.any():
        truth = X_true[best, binary]
        out["binary_exact_fraction"] = float(np.mean((x_hat[binary] >= 0.5) == (truth >= 0.5)))
        majority = pop[:, binary].mean(axis=0) >= 0.5
        out["binary_baseline_fraction"] = float(np.mean(majority == (truth >= 0.5)))
    return out
