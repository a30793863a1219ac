"""Input validation shared by the learning modules.

Every problem names the field, the value received, the rule broken and a fix, and all
problems found in one call are reported together (one raise), so a user fixing a config
does not discover its errors one at a time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


class InvalidParameterError(ValueError):
    """One or more arguments broke a rule; ``problems`` lists each as a sentence."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = tuple(problems)
        super().__init__(f"{where}: " + " | ".join(problems))


class Problems:
    """Collects argument problems for one call, then raises them all at once."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._items: list[str] = []

    def require(self, ok: bool, field: str, value: Any, rule: str, fix: str) -> bool:
        if not ok:
            self._items.append(f"{field}={value!r} must {rule}; {fix}")
        return ok

    def positive_int(self, field: str, value: Any, fix: str) -> bool:
        ok = isinstance(value, int | np.integer) and not isinstance(value, bool) and value > 0
        return self.require(ok, field, value, "be a positive integer", fix)

    def nonneg_float(self, field: str, value: Any, fix: str) -> bool:
        ok = _is_real(value) and math.isfinite(float(value)) and float(value) >= 0.0
        return self.require(ok, field, value, "be a finite number >= 0", fix)

    def positive_float(self, field: str, value: Any, fix: str) -> bool:
        ok = _is_real(value) and math.isfinite(float(value)) and float(value) > 0.0
        return self.require(ok, field, value, "be a finite number > 0", fix)

    def in_range(self, field: str, value: Any, lo: float, hi: float, fix: str) -> bool:
        ok = _is_real(value) and lo <= float(value) <= hi
        return self.require(ok, field, value, f"lie in [{lo}, {hi}]", fix)

    def one_of(self, field: str, value: Any, options: tuple[str, ...]) -> bool:
        return self.require(
            value in options, field, value, f"be one of {options}", f"pass one of {options}"
        )

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidParameterError(self.where, self._items)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool
    )


def as_features(X: Any, where: str, *, n_features: int | None = None) -> torch.Tensor:
    """Return ``X`` as a float32 (n, d) tensor, or raise naming what is wrong and the fix."""
    t = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    t = t.to(torch.float32)
    p = Problems(where)
    p.require(
        t.ndim == 2, "X.shape", tuple(t.shape), "be 2-D (n_examples, n_features)",
        "reshape with X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for one row",
    )
    p.raise_if_any()
    p.require(t.shape[0] > 0, "X.shape", tuple(t.shape), "have at least one row", "pass data")
    if n_features is not None:
        p.require(
            t.shape[1] == n_features, "X.shape[1]", t.shape[1], f"equal n_features={n_features}",
            "use the same feature columns the model was built for",
        )
    p.require(
        bool(torch.isfinite(t).all()), "X", "contains NaN/inf", "be finite",
        "impute missing values and standardise before training",
    )
    p.raise_if_any()
    return t


def as_labels(y: Any, n: int, where: str) -> torch.Tensor:
    """Return binary labels as a float32 (n, 1) tensor, or raise naming the fix."""
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    t = t.to(torch.float32).reshape(-1)
    p = Problems(where)
    p.require(
        t.shape[0] == n, "len(y)", t.shape[0], f"equal the number of rows of X ({n})",
        "pass one label per row",
    )
    p.require(
        bool(((t == 0) | (t == 1)).all()), "y", "values outside {0, 1}", "be binary 0/1",
        "encode the outcome as 0 (no event) / 1 (event)",
    )
    p.raise_if_any()
    return t.reshape(-1, 1)
