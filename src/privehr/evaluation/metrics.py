"""Exact binary-classification metrics on numpy arrays (no sklearn dependency).

AUROC uses average ranks, so tied scores count one half (Mann-Whitney U). AUPRC is
average precision over distinct score thresholds (tied scores form one step, as in
sklearn's ``average_precision_score``). A ranking metric needs both classes: given one
class only it returns NaN and emits an ``UndefinedMetricWarning`` saying why, rather than
crashing a whole evaluation over one small site.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import rankdata

Metric = Callable[[np.ndarray, np.ndarray], float]


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for this input (e.g. only one class present); NaN returned."""


def check_binary(y: Any, p: Any, where: str, *, probabilities: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels/scores; all problems are reported in one error with their fix."""
    ya = np.asarray(y)
    pa = np.asarray(p, dtype=np.float64)
    problems: list[str] = []
    if ya.ndim != 1 or pa.ndim != 1:
        problems.append(f"y.shape={ya.shape}, p.shape={pa.shape} must both be 1-D; "
                        "pass p as predict_proba(...) of shape (n,)")
    elif ya.shape != pa.shape:
        problems.append(f"len(y)={ya.size} must equal len(p)={pa.size}; pass one score per label")
    elif ya.size == 0:
        problems.append("y is empty; metrics need at least one example")
    if ya.size and not np.isin(ya, (0, 1)).all():
        problems.append("y has values outside {0, 1}; encode the outcome as 0/1")
    if pa.size and not np.isfinite(pa).all():
        problems.append("p contains NaN/inf; check the model output")
    elif probabilities and pa.size and ((pa < 0).any() or (pa > 1).any()):
        problems.append(f"p must lie in [0, 1] (got min {pa.min():.4g}, max {pa.max():.4g}); "
                        "pass probabilities (sigmoid of logits), not logits")
    if problems:
        raise ValueError(f"{where}: " + " | ".join(problems))
    return ya.astype(np.int64), pa


def _single_class(y: np.ndarray, name: str) -> bool:
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        warnings.warn(
            f"{name} is undefined with a single class ({n_neg} negatives, {n_pos} positives); "
            "returning NaN. Evaluate on a set that contains both classes.",
            UndefinedMetricWarning, stacklevel=3,
        )
        return True
    return False


def auroc(y: Any, p: Any) -> float:
    """Area under the ROC curve; ties count one half.

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> auroc([0, 1], [0.5, 0.5])
    0.5
    """
    ya, pa = check_binary(y, p, "auroc", probabilities=False)
    if _single_class(ya, "AUROC"):
        return math.nan
    n_pos = int(ya.sum())
    n_neg = ya.size - n_pos
    ranks = rankdata(pa, method="average")
    u = ranks[ya == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auprc(y: Any, p: Any) -> float:
    """Average precision: sum over thresholds of (recall step) x precision.

    >>> round(auprc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)  # 0.5 * 1 + 0.5 * 2/3
    0.8333
    """
    ya, pa = check_binary(y, p, "auprc", probabilities=False)
    if _single_class(ya, "AUPRC"):
        return math.nan
    order = np.argsort(-pa, kind="stable")
    ys, ps = ya[order], pa[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    last_of_group = np.r_[np.flatnonzero(np.diff(ps) != 0), ys.size - 1]
    tp, fp = tp[last_of_group], fp[last_of_group]
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    steps = np.diff(np.r_[0.0, recall])
    return float((steps * precision).sum())


def brier(y: Any, p: Any) -> float:
    """Mean squared error of probabilities (lower is better)."""
    ya, pa = check_binary(y, p, "brier")
    return float(np.mean((pa - ya) ** 2))


def bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each probability on [0, 1]; p == 1 falls in the last bin."""
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)


def ece(y: Any, p: Any, n_bins: int = 10) -> float:
    """Expected calibration error over equal-width bins: sum_b (n_b/n)|mean y_b - mean p_b|."""
    ya, pa = check_binary(y, p, "ece")
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"ece: n_bins={n_bins!r} must be a positive integer; use e.g. 10")
    b = bin_index(pa, n_bins)
    sum_y = np.bincount(b, weights=ya, minlength=n_bins)
    sum_p = np.bincount(b, weights=pa, minlength=n_bins)
    return float(np.abs(sum_y - sum_p).sum() / ya.size)


def accuracy(y: Any, p: Any, threshold: float = 0.5) -> float:
    """Fraction correct when predicting positive for ``p >= threshold``."""
    ya, pa = check_binary(y, p, "accuracy")
    return float(np.mean((pa >= threshold).astype(np.int64) == ya))


def evaluate(y: Any, p: Any) -> dict[str, float]:
    """All metrics at once, plus counts; undefined ranking metrics are NaN."""
    ya, pa = check_binary(y, p, "evaluate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ranking = {"auroc": auroc(ya, pa), "auprc": auprc(ya, pa)}
    return {
        "n": float(ya.size),
        "n_pos": float(ya.sum()),
        "prevalence": float(ya.mean()),
        **ranking,
        "brier": brier(ya, pa),
        "ece": ece(ya, pa),
        "accuracy": accuracy(ya, pa),
    }


_NAMED: dict[str, Metric] = {
    "auroc": auroc, "auprc": auprc, "brier": brier, "ece": ece, "accuracy": accuracy,
}


def bootstrap_ci(
    y: Any,
    p: Any,
    metric: Metric | str,
    *,
    n_boot: int = 200,
    seed: int | np.random.Generator,
    alpha: float = 0.05,
    patient_ids: Any = None,
) -> tuple[float, float]:
    """Percentile bootstrap ``(lo, hi)`` interval, resampling within each class.

    Stratification keeps the class counts of every replicate equal to the original, so a
    ranking metric is always defined. With ``patient_ids`` the unit resampled is the patient
    (all of its rows together, stratified by the patient's max label): rows of one patient
    are correlated and a row bootstrap would give intervals that are too narrow.
    """
    ya, pa = check_binary(y, p, "bootstrap_ci", probabilities=False)
    fn = _NAMED[metric] if isinstance(metric, str) else metric
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"bootstrap_ci: n_boot={n_boot!r} must be a positive integer")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"bootstrap_ci: alpha={alpha!r} must lie in (0, 1); use 0.05 for 95%")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    draw = _row_sampler(ya, rng) if patient_ids is None else _cluster_sampler(
        ya, np.asarray(patient_ids), rng)
    stats = np.empty(n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for i in range(n_boot):
            idx = draw()
            stats[i] = fn(ya[idx], pa[idx])
    if np.isnan(stats).all():
        return math.nan, math.nan
    lo, hi = np.nanquantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def _row_sampler(y: np.ndarray, rng: np.random.Generator) -> Callable[[], np.ndarray]:
    groups = [np.flatnonzero(y == c) for c in (0, 1)]
    groups = [g for g in groups if g.size]

    def draw() -> np.ndarray:
        return np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])

    return draw


def _cluster_sampler(y: np.ndarray, ids: np.ndarray, rng: np.random.Generator
                     ) -> Callable[[], np.ndarray]:
    if ids.shape != y.shape:
        raise ValueError(f"bootstrap_ci: patient_ids has shape {ids.shape} but y has {y.shape}; "
                         "pass one patient id per row")
    _, inverse = np.unique(ids, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    sizes = np.bincount(inverse)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    label = np.zeros(sizes.size, dtype=np.int64)
    np.maximum.at(label, inverse, y)
    groups = [np.flatnonzero(label == c) for c in (0, 1)]
    groups = [g for g in groups if g.size]

    def draw() -> np.ndarray:
        chosen = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        lens = sizes[chosen]
        # rows of each chosen patient: start + 0..len-1, vectorised
        offsets = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        return order[np.repeat(starts[chosen], lens) + offsets]

    return draw
