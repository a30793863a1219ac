"""DP federated statistics: counts, sums, standardisation statistics, histograms.

Privacy unit: the patient. Every function first reduces a patient's rows to *one* bounded
contribution vector (clipped in L2), sums over patients and releases the sum through the
lattice Gaussian mechanism (:func:`privehr.privacy.noise.gaussian_mechanism`). Each returns a
:class:`DpRelease` -- the noisy value and the ``GaussianDpEvent`` to charge to the site's
ledger *before* the value is sent. Neighbouring datasets differ by adding or removing one
patient, so a count has sensitivity 1.

With a test noise source or ``noise_multiplier = 0`` the event is ``NonPrivateDpEvent``.
What is *not* protected: the set of categories (vocabulary) passed in, and the bound/clip
settings -- those are public configuration. Reports must still suppress cells below 11
patients (:func:`suppress_small_cells`); DP does not replace that rule, it adds to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dp_accounting import dp_event as de

from privehr.privacy.errors import PrivacyConfigError
from privehr.privacy.noise import NoiseSource, gaussian_mechanism

SMALL_CELL = 11


@dataclass(frozen=True)
class DpRelease:
    """A released value and the event to charge for it."""

    value: Any
    event: de.DpEvent
    nominal_event: de.DpEvent
    private: bool


@dataclass(frozen=True)
class StandardisationStats:
    """Noisy patient count, per-feature sum and sum of squares, and the mean/std they imply."""

    count: float
    sum: np.ndarray
    sum_sq: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def _release(summed: np.ndarray, sensitivity: float, noise_multiplier: float,
             noise: NoiseSource) -> tuple[np.ndarray, de.DpEvent, de.DpEvent, bool]:
    if not isinstance(noise, NoiseSource):
        raise PrivacyConfigError("noise", noise, "must be a NoiseSource", "NoiseSource.secure()")
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise PrivacyConfigError("noise_multiplier", noise_multiplier, "must be >= 0",
                                 "calibrate it or pass e.g. 5.0")
    noisy = gaussian_mechanism(summed, l2_sensitivity=sensitivity,
                               noise_multiplier=noise_multiplier, rng=noise.generator())
    nominal = de.GaussianDpEvent(noise_multiplier)
    private = noise.is_private and noise_multiplier > 0
    return noisy, (nominal if private else de.NonPrivateDpEvent()), nominal, private


def clip_rows(contributions: np.ndarray, clip_norm: float) -> np.ndarray:
    """Scale each row (one patient) to L2 norm at most ``clip_norm``."""
    c = np.asarray(contributions, dtype=np.float64)
    norms = np.linalg.norm(c, axis=1, keepdims=True)
    return c * np.minimum(1.0, clip_norm / np.maximum(norms, 1e-300))


def release_sum(contributions: np.ndarray, *, clip_norm: float, noise_multiplier: float,
                noise: NoiseSource) -> DpRelease:
    """Noisy sum of per-patient vectors ``[P, k]`` (one row per patient), each L2-clipped."""
    c = np.asarray(contributions, dtype=np.float64)
    if c.ndim != 2:
        raise PrivacyConfigError("contributions", c.shape, "must be 2-D [patients, k]",
                                 "aggregate rows per patient first")
    if not (math.isfinite(clip_norm) and clip_norm > 0):
        raise PrivacyConfigError("clip_norm", clip_norm, "must be > 0", "e.g. 1.0")
    value, event, nominal, private = _release(
        clip_rows(c, clip_norm).sum(axis=0), clip_norm, noise_multiplier, noise
    )
    return DpRelease(value, event, nominal, private)


def release_count(n_patients: int, *, noise_multiplier: float, noise: NoiseSource) -> DpRelease:
    """Noisy patient count (sensitivity 1): cohort sizes, FedAvg example-count weights."""
    if isinstance(n_patients, bool) or not isinstance(n_patients, int | np.integer) or (
        n_patients < 0
    ):
        raise PrivacyConfigError("n_patients", n_patients, "must be an int >= 0",
                                 "count distinct patients, not rows")
    value, event, nominal, private = _release(
        np.array([float(n_patients)]), 1.0, noise_multiplier, noise
    )
    return DpRelease(float(value[0]), event, nominal, private)


def _group_mean(X: np.ndarray, patient_ids: Sequence | np.ndarray) -> np.ndarray:
    ids = np.asarray(patient_ids)
    if ids.shape != (X.shape[0],):
        raise PrivacyConfigError("patient_ids", ids.shape, f"must have shape ({X.shape[0]},)",
                                 "one patient id per row")
    _, inverse = np.unique(ids, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    sums = np.zeros((counts.size, X.shape[1]))
    np.add.at(sums, inverse, X)
    return sums / counts[:, None]


def release_standardisation_stats(
    X: np.ndarray, patient_ids: Sequence | np.ndarray, *, bound: float,
    noise_multiplier: float, noise: NoiseSource,
) -> DpRelease:
    """Noisy (count, sum, sum of squares) per feature for federated standardisation.

    Each patient contributes once: the mean of its rows, each feature clipped to
    ``[-bound, bound]``, as ``[1, m/bound, (m/bound)^2]`` whose L2 norm is at most
    ``sqrt(1 + 2d)`` -- the sensitivity of the single Gaussian release. Features must be
    roughly centred/scaled so that ``bound`` is meaningful (e.g. ages in decades).
    """
    Xn = np.asarray(X, dtype=np.float64)
    if Xn.ndim != 2:
        raise PrivacyConfigError("X", Xn.shape, "must be 2-D (rows, features)", "reshape X")
    if not (math.isfinite(bound) and bound > 0):
        raise PrivacyConfigError("bound", bound, "must be > 0", "e.g. 5.0")
    d = Xn.shape[1]
    m = np.clip(_group_mean(Xn, patient_ids), -bound, bound) / bound
    contrib = np.concatenate([np.ones((m.shape[0], 1)), m, m * m], axis=1).sum(axis=0)
    sens = math.sqrt(1.0 + 2.0 * d)
    value, event, nominal, private = _release(contrib, sens, noise_multiplier, noise)
    count = float(value[0])
    s = value[1:d + 1] * bound
    ss = value[d + 1:] * bound * bound
    n = max(count, 1.0)
    mean = s / n
    var = np.maximum(ss / n - mean * mean, 1e-12)
    return DpRelease(StandardisationStats(count, s, ss, mean, np.sqrt(var)), event, nominal,
                     private)


def release_histogram(
    values: Sequence | np.ndarray, patient_ids: Sequence | np.ndarray,
    categories: Sequence, *, noise_multiplier: float, noise: NoiseSource,
    clip_norm: float = 1.0,
) -> DpRelease:
    """Noisy number of patients per category (code frequencies, evaluation histograms).

    A patient contributes the 0/1 indicator of the categories it has (any number of rows),
    scaled down to L2 norm ``clip_norm`` if it has more than ``clip_norm^2`` categories.
    Values outside ``categories`` (a public vocabulary) are ignored. Returns
    ``{category: noisy count}``.
    """
    vals = np.asarray(values)
    ids = np.asarray(patient_ids)
    if vals.shape != ids.shape or vals.ndim != 1:
        raise PrivacyConfigError("values/patient_ids", (vals.shape, ids.shape),
                                 "must be 1-D and of equal length", "one value per row")
    cats = list(categories)
    if len(set(cats)) != len(cats) or not cats:
        raise PrivacyConfigError("categories", cats[:5], "must be non-empty and unique",
                                 "pass the public vocabulary")
    index = {c: i for i, c in enumerate(cats)}
    col = np.array([index.get(v, -1) for v in vals.tolist()], dtype=np.int64)
    known = col >= 0
    _, inverse = np.unique(ids, return_inverse=True)
    ind = np.zeros((int(inverse.max()) + 1 if ids.size else 0, len(cats)))
    ind[inverse[known], col[known]] = 1.0
    rel = release_sum(ind, clip_norm=clip_norm, noise_multiplier=noise_multiplier, noise=noise)
    return DpRelease(dict(zip(cats, rel.value.tolist(), strict=True)), rel.event, rel.nominal_event,
                     rel.private)


def suppress_small_cells(counts: np.ndarray | Sequence[float], threshold: int = SMALL_CELL):
    """Replace cells below ``threshold`` patients by NaN (the reporting rule, not a DP tool)."""
    c = np.asarray(counts, dtype=np.float64).copy()
    c[c < threshold] = np.nan
    return c
