"""Input validation shared by the attacks: collect every problem, then raise once.

Why: an attack run on a study is expensive (shadow models, canary training), and a caller
who fixes one bad argument only to hit the next one wastes a run. Each message names the
field, the value received, the rule broken and what to do about it (house style, STYLE.md §7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class AttackInputError(ValueError):
    """Arguments to an attack or audit are unusable. The message lists every problem and its fix."""

    def __init__(self, where: str, problems: list[str]):
        self.where = where
        self.problems = tuple(problems)
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{where}: {len(problems)} problem(s):\n{body}")


@dataclass
class Checks:
    """Accumulates problems for one call; ``done()`` raises :class:`AttackInputError` if any."""

    where: str
    problems: list[str] = field(default_factory=list)

    def require(self, ok: bool, name: str, value: Any, rule: str, fix: str) -> bool:
        if not ok:
            self.problems.append(f"{name!r} must {rule}; got {_short(value)}. Fix: {fix}")
        return ok

    def int_at_least(self, value: Any, name: str, low: int, fix: str) -> bool:
        ok = isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= low
        return self.require(ok, name, value, f"be an int >= {low}", fix)

    def prob_open(self, value: Any, name: str, fix: str) -> bool:
        ok = isinstance(value, float | int) and 0.0 < float(value) < 1.0
        return self.require(ok, name, value, "be a number in (0, 1)", fix)

    def done(self) -> None:
        if self.problems:
            raise AttackInputError(self.where, self.problems)


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape}, dtype={value.dtype})"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_matrix(checks: Checks, X: Any, name: str) -> np.ndarray:
    """2-D finite float array, or a recorded problem (returns an empty placeholder)."""
    arr = np.asarray(X, dtype=float)
    ok = checks.require(
        arr.ndim == 2 and arr.shape[0] > 0 and arr.shape[1] > 0,
        name, arr, "be a non-empty 2-D array (n_records, n_features)",
        "pass one row per patient record; reshape a single record with x.reshape(1, -1)",
    )
    if ok:
        checks.require(bool(np.isfinite(arr).all()), name, arr, "contain only finite values",
                       "impute or drop NaN/Inf features before attacking")
    return arr


def as_labels(checks: Checks, y: Any, name: str, n: int) -> np.ndarray:
    """1-D non-negative integer class labels of length ``n``."""
    arr = np.asarray(y)
    ok = checks.require(arr.ndim == 1 and arr.shape[0] == n, name, arr,
                        f"be a 1-D array of length {n} (one label per record)",
                        "pass the labels aligned with the feature rows")
    if ok:
        as_int = arr.astype(np.int64)
        checks.require(bool(np.all(as_int == arr)) and bool(np.all(as_int >= 0)), name, arr,
                       "hold non-negative integer class labels", "encode classes as 0..C-1")
    return arr.astype(np.int64) if ok else arr


def as_ids(checks: Checks, ids: Any, name: str, n: int) -> np.ndarray | None:
    """Optional patient ids aligned with ``n`` rows (None means one row per patient)."""
    if ids is None:
        return None
    arr = np.asarray(ids)
    checks.require(arr.ndim == 1 and arr.shape[0] == n, name, arr,
                   f"be a 1-D array of length {n} (one patient id per row)",
                   "pass the patient id of each feature row, or None for one row per patient")
    return arr
