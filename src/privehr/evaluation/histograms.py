"""Score histograms: what a site sends for federated evaluation instead of predictions.

Per equal-width bin on [0, 1] a site counts its negatives and positives and sums its
predicted probabilities; it also sends the total squared error. These are plain sums, so
sites' histograms add up (``+``, or secure aggregation of ``to_vector()``), and the pooled
metrics follow without any per-patient score leaving a site:

- AUROC: exact up to ties *within* a bin (counted one half). With 1000 bins the error is
  far below the sampling error of any realistic test set.
- AUPRC: average precision with each bin treated as one tied threshold.
- Brier: exact (from the summed squared errors).
- ECE over ``k`` bins: exact when ``k`` divides ``n_bins`` (bins nest).
- Accuracy at ``t``: exact when ``t * n_bins`` is an integer (0.5 with 1000 bins).

Not protected: the counts are exact aggregates, not differentially private. A bin holding a
single patient reveals that patient's score bucket and label; a site that must not release
this should add noise first and record the release (ε = ∞ otherwise) in its ledger.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privehr.evaluation.metrics import UndefinedMetricWarning, bin_index, check_binary

DEFAULT_BINS = 1000


def _ro(a: Any, dtype: Any) -> np.ndarray:
    arr = np.array(a, dtype=dtype, copy=True)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class ScoreHistogram:
    """Summable sufficient statistics of (label, probability) pairs."""

    neg: np.ndarray = field(repr=False)
    pos: np.ndarray = field(repr=False)
    sum_p: np.ndarray = field(repr=False)
    sum_sq_err: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "neg", _ro(self.neg, np.int64))
        object.__setattr__(self, "pos", _ro(self.pos, np.int64))
        object.__setattr__(self, "sum_p", _ro(self.sum_p, np.float64))
        object.__setattr__(self, "sum_sq_err", float(self.sum_sq_err))
        shapes = {self.neg.shape, self.pos.shape, self.sum_p.shape}
        if len(shapes) != 1 or self.neg.ndim != 1 or self.neg.size == 0:
            raise ValueError(f"ScoreHistogram: neg/pos/sum_p must be equal non-empty 1-D arrays, "
                             f"got shapes {sorted(shapes)}; build with from_scores")
        if (self.neg < 0).any() or (self.pos < 0).any():
            raise ValueError("ScoreHistogram: counts must be >= 0; a negative count means the "
                             "histogram was corrupted or dequantised wrongly")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        fields = ("neg", "pos", "sum_p", "sum_sq_err")
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in fields)

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_bins(self) -> int:
        return int(self.neg.size)

    @property
    def n(self) -> int:
        return int(self.neg.sum() + self.pos.sum())

    @classmethod
    def from_scores(cls, y: Any, p: Any, n_bins: int = DEFAULT_BINS) -> ScoreHistogram:
        ya, pa = check_binary(y, p, "ScoreHistogram.from_scores")
        if not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"ScoreHistogram: n_bins={n_bins!r} must be a positive integer")
        b = bin_index(pa, n_bins)
        pos = np.bincount(b, weights=ya, minlength=n_bins)
        neg = np.bincount(b, minlength=n_bins) - pos
        sum_p = np.bincount(b, weights=pa, minlength=n_bins)
        return cls(neg.astype(np.int64), pos.astype(np.int64), sum_p,
                   float(((pa - ya) ** 2).sum()))

    @classmethod
    def empty(cls, n_bins: int = DEFAULT_BINS) -> ScoreHistogram:
        z = np.zeros(n_bins)
        return cls(z, z, z, 0.0)

    def __add__(self, other: ScoreHistogram) -> ScoreHistogram:
        if not isinstance(other, ScoreHistogram):
            return NotImplemented
        if other.n_bins != self.n_bins:
            raise ValueError(f"ScoreHistogram: cannot add {self.n_bins} and {other.n_bins} "
                             "bins; every site must use the same n_bins")
        return ScoreHistogram(self.neg + other.neg, self.pos + other.pos,
                              self.sum_p + other.sum_p, self.sum_sq_err + other.sum_sq_err)

    def __radd__(self, other: Any) -> ScoreHistogram:
        if other == 0:  # lets sum(histograms) work
            return self
        return NotImplemented

    def to_vector(self) -> np.ndarray:
        """Flat float64 ``[neg, pos, sum_p, sum_sq_err]`` for summing under SecAgg/HE."""
        return np.concatenate([self.neg, self.pos, self.sum_p, [self.sum_sq_err]]).astype(
            np.float64)

    @classmethod
    def from_vector(cls, vec: Any) -> ScoreHistogram:
        v = np.asarray(vec, dtype=np.float64)
        if v.ndim != 1 or (v.size - 1) % 3 != 0 or v.size < 4:
            raise ValueError(f"ScoreHistogram.from_vector: length {v.size} is not 3*n_bins+1")
        k = (v.size - 1) // 3
        return cls(np.rint(v[:k]), np.rint(v[k : 2 * k]), v[2 * k : 3 * k], v[-1])

    def to_dict(self) -> dict[str, Any]:
        return {"neg": self.neg.tolist(), "pos": self.pos.tolist(),
                "sum_p": self.sum_p.tolist(), "sum_sq_err": self.sum_sq_err}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreHistogram:
        return cls(data["neg"], data["pos"], data["sum_p"], data["sum_sq_err"])


def metrics_from_histogram(
    h: ScoreHistogram, *, ece_bins: int = 10, threshold: float = 0.5
) -> dict[str, float]:
    """Pooled metrics from a (summed) histogram; keys match ``metrics.evaluate``.

    >>> a = ScoreHistogram.from_scores([0, 1], [0.1, 0.35])   # site A
    >>> b = ScoreHistogram.from_scores([0, 1], [0.4, 0.8])    # site B
    >>> m = metrics_from_histogram(a + b)
    >>> m["auroc"], m["accuracy"]
    (0.75, 0.75)
    """
    n_pos = int(h.pos.sum())
    n_neg = int(h.neg.sum())
    n = n_pos + n_neg
    if n == 0:
        raise ValueError("metrics_from_histogram: the histogram is empty; no site sent scores")
    out: dict[str, float] = {"n": float(n), "n_pos": float(n_pos), "prevalence": n_pos / n}
    if n_pos == 0 or n_neg == 0:
        warnings.warn(
            f"AUROC/AUPRC are undefined with a single class ({n_neg} negatives, {n_pos} "
            "positives); returning NaN.", UndefinedMetricWarning, stacklevel=2)
        out["auroc"] = out["auprc"] = math.nan
    else:
        out["auroc"] = _auroc(h, n_pos, n_neg)
        out["auprc"] = _auprc(h, n_pos)
    out["brier"] = h.sum_sq_err / n
    out["ece"] = _ece(h, ece_bins, n)
    out["accuracy"] = _accuracy(h, threshold, n)
    return out


def _auroc(h: ScoreHistogram, n_pos: int, n_neg: int) -> float:
    neg = h.neg.astype(np.float64)
    neg_below = np.cumsum(neg) - neg
    return float((h.pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))


def _auprc(h: ScoreHistogram, n_pos: int) -> float:
    tp = np.cumsum(h.pos[::-1]).astype(np.float64)
    fp = np.cumsum(h.neg[::-1]).astype(np.float64)
    step = h.pos[::-1] / n_pos
    keep = step > 0
    return float((step[keep] * tp[keep] / (tp[keep] + fp[keep])).sum())


def _ece(h: ScoreHistogram, k: int, n: int) -> float:
    if not isinstance(k, int) or k < 1 or h.n_bins % k != 0:
        raise ValueError(f"metrics_from_histogram: ece_bins={k!r} must divide n_bins="
                         f"{h.n_bins} so that calibration bins nest exactly; use e.g. 10")
    group = h.n_bins // k
    sum_y = h.pos.reshape(k, group).sum(axis=1)
    sum_p = h.sum_p.reshape(k, group).sum(axis=1)
    return float(np.abs(sum_y - sum_p).sum() / n)


def _accuracy(h: ScoreHistogram, threshold: float, n: int) -> float:
    cut = threshold * h.n_bins
    if not (0.0 <= threshold <= 1.0) or abs(cut - round(cut)) > 1e-9:
        raise ValueError(f"metrics_from_histogram: threshold={threshold!r} must be a bin edge "
                         f"(a multiple of 1/{h.n_bins} in [0, 1]) for exact accuracy")
    c = int(round(cut))
    correct = h.neg[:c].sum() + h.pos[c:].sum()
    return float(correct / n)

