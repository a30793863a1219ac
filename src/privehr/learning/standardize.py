"""Federated feature standardisation from summable sufficient statistics.

Each site computes ``(count, sum, sumsq)`` per column from its own matrix; the coordinator
adds them (in the clear or under secure aggregation: they are plain sums) and derives the
pooled mean and population standard deviation. No row ever leaves a site. The statistics
are aggregates, not differentially private: a site that must not release them exactly
should noise them first and record the release in its ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privehr.learning._checks import Problems


def _matrix(X: Any, where: str) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float64)
    p = Problems(where)
    p.require(arr.ndim == 2, "X.ndim", arr.ndim, "be 2", "pass an (n_examples, n_features) matrix")
    p.raise_if_any()
    p.require(bool(np.isfinite(arr).all()), "X", "contains NaN/inf", "be finite",
              "impute missing values before computing statistics")
    p.raise_if_any()
    return arr


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class SufficientStats:
    """Per-column ``count``, ``sum`` and ``sumsq`` of one site's (or several sites') rows.

    >>> site_a = SufficientStats.from_matrix([[1.0], [3.0]])
    >>> site_b = SufficientStats.from_matrix([[5.0]])
    >>> st = Standardizer.from_stats(site_a + site_b)
    >>> float(st.mean[0]), st.transform([[3.0]]).tolist()
    (3.0, [[0.0]])
    """

    count: int
    sum: np.ndarray = field(repr=False)
    sumsq: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sum", _ro(self.sum))
        object.__setattr__(self, "sumsq", _ro(self.sumsq))
        p = Problems("SufficientStats")
        p.require(isinstance(self.count, int | np.integer) and self.count >= 0, "count",
                  self.count, "be a non-negative integer", "pass the number of rows")
        p.require(self.sum.ndim == 1 and self.sum.shape == self.sumsq.shape, "sum/sumsq shapes",
                  (self.sum.shape, self.sumsq.shape), "be equal 1-D shapes",
                  "build with SufficientStats.from_matrix")
        p.raise_if_any()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        fields = ("count", "sum", "sumsq")
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in fields)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_matrix(cls, X: Any) -> SufficientStats:
        arr = _matrix(X, "SufficientStats.from_matrix")
        return cls(int(arr.shape[0]), arr.sum(axis=0), (arr * arr).sum(axis=0))

    @property
    def n_features(self) -> int:
        return int(self.sum.shape[0])

    def __add__(self, other: SufficientStats) -> SufficientStats:
        if not isinstance(other, SufficientStats):
            return NotImplemented
        if other.n_features != self.n_features:
            raise ValueError(f"SufficientStats: cannot add stats over {self.n_features} and "
                             f"{other.n_features} columns; sites must use the same features")
        return SufficientStats(self.count + other.count, self.sum + other.sum,
                               self.sumsq + other.sumsq)

    def __radd__(self, other: Any) -> SufficientStats:
        if other == 0:  # lets sum(list_of_stats) work
            return self
        return NotImplemented

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.sum.tolist(), "sumsq": self.sumsq.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SufficientStats:
        return cls(int(data["count"]), np.asarray(data["sum"]), np.asarray(data["sumsq"]))


@dataclass(frozen=True, eq=False)
class Standardizer:
    """``(X - mean) / scale`` with a pooled mean and population std (ddof=0).

    Columns whose std is below ``min_std`` (constant columns) get ``scale = 1`` so they
    become zeros instead of NaN/inf.
    """

    mean: np.ndarray = field(repr=False)
    scale: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _ro(self.mean))
        object.__setattr__(self, "scale", _ro(self.scale))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        fields = ("mean", "scale")
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in fields)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_stats(cls, stats: SufficientStats, *, min_std: float = 1e-8) -> Standardizer:
        p = Problems("Standardizer.from_stats")
        p.require(stats.count > 0, "stats.count", stats.count, "be > 0",
                  "sum the statistics of at least one non-empty site")
        p.nonneg_float("min_std", min_std, "use e.g. 1e-8")
        p.raise_if_any()
        mean = stats.sum / stats.count
        # E[x^2] - E[x]^2 can dip below 0 by rounding for constant columns.
        var = np.maximum(stats.sumsq / stats.count - mean * mean, 0.0)
        std = np.sqrt(var)
        scale = np.where(std < min_std, 1.0, std)
        return cls(mean, scale)

    def transform(self, X: Any) -> np.ndarray:
        arr = _matrix(X, "Standardizer.transform")
        if arr.shape[1] != self.mean.shape[0]:
            raise ValueError(f"Standardizer.transform: X has {arr.shape[1]} columns but the "
                             f"standardiser was fitted on {self.mean.shape[0]}")
        return (arr - self.mean) / self.scale
