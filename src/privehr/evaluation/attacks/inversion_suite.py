"""The study entry point for update inversion: every setting, several batch sizes, one dict.

What it measures (means over ``n_trials`` random batches of the given records):
Every setting also reports linkage: how often the record of ``X`` closest to the
reconstruction belongs to the batch (``reidentification_rate``, chance = batch / len(X)).

- ``plain_update``: one site's update after plain local training, per batch size;
- ``masked_words``: the same updates as fixed-point words under a fresh ChaCha20 mask,
  decoded by a coordinator that does not hold the mask;
- ``aggregate``: the unmasked fixed-point sum over ``n_sites`` sites, per *total* batch size
  (records split evenly over the sites);
- ``dp_aggregate``: the sum of per-record gradients clipped to ``clip_norm`` plus
  N(0, (σ·clip_norm)²) noise per coordinate (what central or distributed DP releases), per
  noise multiplier σ and batch size, with the signal-to-noise guide
  ``cosine_ceiling ≈ 1/sqrt(1 + σ² d)`` for one record, and a proven bound on recovering a
  binary feature, ``binary_rero_bound``.

How DP bounds reconstruction (Hayes, Mahloujifar, Balle 2023, "Bounding data reconstruction
attacks with the hypothesis testing interpretation of DP"): a mechanism with trade-off
function f limits any reconstruction attack whose baseline (prior-only) success probability
is κ to success ≤ 1 − f(κ). One release of a sum with per-record sensitivity C and Gaussian
noise σC is μ-GDP with μ = 1/σ, so 1 − f(κ) = Φ(Φ⁻¹(κ) + 1/σ). For binary feature j the
best prior guess succeeds with κ_j = max(prevalence_j, 1 − prevalence_j); we report the mean
of Φ(Φ⁻¹(κ_j) + 1/σ) over binary features. It covers this single release only: T releases
of the same record compose (μ = sqrt(T)/σ without subsampling).

The noise here is a simulation of what DP would release (numpy Generator), not a
protection mechanism: privacy noise for real releases comes from ``privehr.privacy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

from privehr.evaluation.attacks._checks import Checks, as_labels, as_matrix
from privehr.evaluation.attacks.inversion import (
    MaskFn,
    UpdateFn,
    best_matching_record,
    binary_columns,
    chacha20_mask,
    decode_fixed_point,
    encode_fixed_point,
    lr_local_update,
    lr_per_example_gradients,
    mask_words,
    reconstruct_from_masked_words,
    reconstruct_from_update,
    score_reconstruction,
)
from privehr.evaluation.attacks.results import (
    ATTACK_RELEASE_KIND,
    SCHEMA_VERSION,
    InversionResult,
)

_METRICS = ("cosine", "cosine_to_mean", "relative_l2", "binary_exact_fraction",
            "binary_baseline_fraction")


def _mean_result(setting: str, batch: int, d: int, trials: list[dict[str, Any]],
                 **extra: Any) -> InversionResult:
    def avg(key: str) -> float | None:
        vals = [t[key] for t in trials if t[key] is not None]
        return float(np.mean(vals)) if vals else None

    means = {k: avg(k) for k in (*_METRICS, "cosine_chance", "reidentified")}
    return InversionResult(
        setting=setting, batch_size=batch, n_features=d, n_trials=len(trials),
        cosine=float(means["cosine"] or 0.0), cosine_to_mean=float(means["cosine_to_mean"] or 0.0),
        relative_l2=float(means["relative_l2"] or 0.0),
        binary_exact_fraction=means["binary_exact_fraction"],
        binary_baseline_fraction=means["binary_baseline_fraction"],
        cosine_chance=means["cosine_chance"], reidentification_rate=means["reidentified"],
        **extra,
    )


def binary_rero_bound(X: np.ndarray, binary: np.ndarray, sigma: float) -> float | None:
    """Mean over binary features of Φ(Φ⁻¹(κ_j) + 1/σ); 1.0 without noise; None if none."""
    if not binary.any():
        return None
    if sigma <= 0:
        return 1.0
    prevalence = np.asarray(X, dtype=float)[:, binary].mean(axis=0)
    kappa = np.maximum(prevalence, 1.0 - prevalence)
    return float(np.mean(norm.cdf(norm.ppf(kappa) + 1.0 / sigma)))


def _split(idx: np.ndarray, n_sites: int) -> list[np.ndarray]:
    return [part for part in np.array_split(idx, min(n_sites, idx.size)) if part.size]


def run_inversion_suite(
    X: np.ndarray,
    y: np.ndarray,
    *,
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    noise_multipliers: Sequence[float] = (0.0, 0.1, 0.5, 1.0, 2.0),
    dp_batch_sizes: Sequence[int] = (1, 8),
    n_sites: int = 4,
    n_trials: int = 5,
    lr: float = 0.1,
    local_steps: int = 1,
    clip_norm: float = 1.0,
    frac_bits: int = 16,
    word_dtype: type = np.uint32,
    model: tuple[np.ndarray, float] | None = None,
    update_fn: UpdateFn | None = None,
    mask_fn: MaskFn = chacha20_mask,
    seed: int = 0,
) -> dict[str, Any]:
    """Run every inversion setting on records ``X`` (labels ``y``); returns a JSON-able dict.

    ``model`` is the global model (w, b) the updates start from (zeros by default);
    ``update_fn(w, b, X_batch, y_batch) -> Δ`` replaces the default plain local training.
    """
    checks = Checks("run_inversion_suite")
    X = as_matrix(checks, X, "X")
    y = as_labels(checks, y, "y", X.shape[0] if X.ndim == 2 else -1)
    n = X.shape[0] if X.ndim == 2 else 0
    checks.require(len(batch_sizes) > 0 and all(1 <= int(b) <= n for b in batch_sizes),
                   "batch_sizes", tuple(batch_sizes), f"hold sizes in 1..{n} (records given)",
                   "drop batch sizes larger than the number of records")
    checks.require(all(1 <= int(b) <= n for b in dp_batch_sizes), "dp_batch_sizes",
                   tuple(dp_batch_sizes), f"hold sizes in 1..{n}", "use sizes <= len(X)")
    checks.require(all(s >= 0 for s in noise_multipliers), "noise_multipliers",
                   tuple(noise_multipliers), "be >= 0", "use σ values such as (0, 0.5, 1, 2)")
    checks.int_at_least(n_sites, "n_sites", 1, "use n_sites >= 1")
    checks.int_at_least(n_trials, "n_trials", 1, "use n_trials >= 1")
    checks.require(np.dtype(word_dtype) in (np.dtype(np.uint32), np.dtype(np.uint64)),
                   "word_dtype", word_dtype, "be np.uint32 or np.uint64", "match the SecAgg words")
    checks.done()

    d = X.shape[1]
    w, b = (np.zeros(d), 0.0) if model is None else (np.asarray(model[0], float), float(model[1]))
    upd = update_fn or (lambda w_, b_, Xb, yb: lr_local_update(w_, b_, Xb, yb, lr=lr,
                                                               steps=local_steps))
    binary = binary_columns(X)
    rng = np.random.default_rng(seed)

    def score(x_hat: np.ndarray, idx: np.ndarray) -> dict[str, Any]:
        out = score_reconstruction(x_hat, X[idx], binary=binary, population=X)
        chance = score_reconstruction(rng.normal(size=d), X[idx], binary=binary, population=X)
        out["cosine_chance"] = chance["cosine"]
        out["reidentified"] = float(best_matching_record(x_hat, X)[0] in set(idx.tolist()))
        return out

    plain, masked, aggregate = [], [], []
    for batch in batch_sizes:
        p_trials, m_trials, a_trials = [], [], []
        for _ in range(n_trials):
            idx = rng.choice(n, size=int(batch), replace=False)
            update = upd(w, b, X[idx], y[idx])
            p_trials.append(score(reconstruct_from_update(update), idx))
            words = encode_fixed_point(update, frac_bits=frac_bits, dtype=word_dtype)
            seen = mask_words(words, mask_fn(words.size, word_dtype))
            m_trials.append(score(reconstruct_from_masked_words(seen, frac_bits=frac_bits), idx))
            total = np.zeros(d + 1, dtype=word_dtype)
            for part in _split(idx, n_sites):
                site_words = encode_fixed_point(upd(w, b, X[part], y[part]), frac_bits=frac_bits,
                                                dtype=word_dtype)
                total = (total + site_words).astype(word_dtype)
            agg = decode_fixed_point(total, frac_bits=frac_bits)
            a_trials.append(score(reconstruct_from_update(agg), idx))
        sites = min(n_sites, int(batch))
        chance = int(batch) / n
        plain.append(_mean_result("plain_update", int(batch), d, p_trials,
                                  reidentification_chance=chance))
        masked.append(_mean_result("masked_words", int(batch), d, m_trials,
                                   reidentification_chance=chance))
        aggregate.append(_mean_result("aggregate", int(batch), d, a_trials, n_sites=sites,
                                      reidentification_chance=chance))

    dp = []
    for sigma in noise_multipliers:
        for batch in dp_batch_sizes:
            trials = []
            for _ in range(n_trials):
                idx = rng.choice(n, size=int(batch), replace=False)
                g = lr_per_example_gradients(w, b, X[idx], y[idx])
                norms = np.linalg.norm(g, axis=1, keepdims=True)
                g = g * np.minimum(1.0, clip_norm / np.maximum(norms, 1e-12))
                noisy = g.sum(axis=0) + rng.normal(0.0, sigma * clip_norm, size=d + 1)
                trials.append(score(reconstruct_from_update(noisy), idx))
            dp.append(_mean_result("dp_aggregate", int(batch), d, trials,
                                   noise_multiplier=float(sigma),
                                   cosine_ceiling=float(1.0 / np.sqrt(1.0 + sigma**2 * d)),
                                   binary_rero_bound=binary_rero_bound(X, binary, sigma),
                                   reidentification_chance=int(batch) / n))

    return {
        "schema_version": SCHEMA_VERSION,
        "release_kind": ATTACK_RELEASE_KIND,
        "attack": "update_inversion",
        "model": "logistic_regression",
        "n_features": d,
        "n_binary_features": int(binary.sum()),
        "frac_bits": frac_bits,
        "word_bits": np.dtype(word_dtype).itemsize * 8,
        "plain_update": [r.to_dict() for r in plain],
        "masked_words": [r.to_dict() for r in masked],
        "aggregate": [r.to_dict() for r in aggregate],
        "dp_aggregate": [r.to_dict() for r in dp],
    }
