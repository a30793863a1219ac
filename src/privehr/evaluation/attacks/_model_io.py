"""How attacks talk to a model: through injected callables only.

Why callables: the attacks must run against whatever the learning package trains (numpy
logistic regression in tests, torch models in studies) without importing it. The contract:

- ``PredictProba``: ``predict_proba(X) -> p`` with ``p`` of shape (n,) holding P(y = 1) for a
  binary task, or (n, C) holding class probabilities.
- ``TrainFn``: ``train_fn(X, y, seed) -> PredictProba``; trains a fresh model from scratch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

PredictProba = Callable[[np.ndarray], np.ndarray]
TrainFn = Callable[[np.ndarray, np.ndarray, int], PredictProba]

# Probabilities are clipped before taking logs so that a saturated (overfit) model yields
# large but finite scores; 1e-12 bounds |logit| by about 27.6, well above what separates
# members from non-members in practice.
PROB_CLIP = 1e-12


def true_label_probability(predict_proba: PredictProba, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Model probability of each record's true label, clipped to [PROB_CLIP, 1 - PROB_CLIP]."""
    p = np.asarray(predict_proba(X), dtype=float)
    y = np.asarray(y, dtype=np.int64)
    if p.ndim == 1 or (p.ndim == 2 and p.shape[1] == 1):
        p1 = p.reshape(-1)
        if p1.shape[0] != y.shape[0]:
            raise ValueError(
                f"predict_proba returned {p1.shape[0]} probabilities for {y.shape[0]} records. "
                "Fix: return one P(y=1) per input row."
            )
        if np.any(y > 1):
            raise ValueError(
                "predict_proba returned a 1-D P(y=1) but labels exceed 1. "
                "Fix: return an (n, C) matrix of class probabilities for multi-class tasks."
            )
        p_true = np.where(y == 1, p1, 1.0 - p1)
    elif p.ndim == 2:
        if p.shape[0] != y.shape[0] or np.any(y >= p.shape[1]):
            raise ValueError(
                f"predict_proba returned shape {p.shape} for {y.shape[0]} records with labels "
                f"up to {int(y.max())}. Fix: return (n_records, n_classes) probabilities."
            )
        p_true = p[np.arange(y.shape[0]), y]
    else:
        raise ValueError(f"predict_proba returned a {p.ndim}-D array; expected 1-D or 2-D.")
    if not np.all(np.isfinite(p_true)):
        raise ValueError("predict_proba returned NaN/Inf. Fix: check the model's output layer.")
    return np.clip(p_true, PROB_CLIP, 1.0 - PROB_CLIP)


def logit_confidence(p_true: np.ndarray) -> np.ndarray:
    """φ = log(p / (1 − p)) of the true-label probability (LiRA's Gaussian-friendly scale)."""
    p = np.clip(np.asarray(p_true, dtype=float), PROB_CLIP, 1.0 - PROB_CLIP)
    return np.log(p) - np.log1p(-p)


def estimator_train_fn(make_estimator: Callable[[int], Any]) -> TrainFn:
    """Adapt an sklearn-shaped estimator factory to a ``TrainFn``.

    ``make_estimator(seed)`` returns an unfitted object with ``fit(X, y)`` and
    ``predict_proba(X)``; e.g. ``lambda s: Estimator("logreg", epochs=50, seed=s)`` from
    ``privehr.learning.models``. A fresh estimator per call keeps shadow models independent.
    """

    def train(X: np.ndarray, y: np.ndarray, seed: int) -> PredictProba:
        estimator = make_estimator(int(seed))
        estimator.fit(X, y)
        return estimator.predict_proba

    return train


def patient_groups(ids: np.ndarray | None, n_rows: int) -> tuple[np.ndarray, int]:
    """(row -> patient index, number of patients); without ids every row is a patient."""
    if ids is None:
        return np.arange(n_rows), n_rows
    _, inverse = np.unique(np.asarray(ids), return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse, int(inverse.max()) + 1 if inverse.size else 0


def group_mean(values: np.ndarray, inverse: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of row values per patient along the last axis (rows -> patients).

    Why: the privacy unit is the patient (DESIGN.md), so a patient with several rows is one
    candidate, scored by the mean of its rows' scores.
    """
    values = np.asarray(values, dtype=float)
    counts = np.bincount(inverse, minlength=n_groups).astype(float)
    if values.ndim == 1:
        return np.bincount(inverse, weights=values, minlength=n_groups) / counts
    return np.stack([np.bincount(inverse, weights=v, minlength=n_groups) for v in values]) / counts
