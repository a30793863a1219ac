"""One-run privacy audit (Steinke, Nasr, Jagielski 2023, "Privacy Auditing with One (1)
Training Run"): an empirical ε lower bound from a single training run.

Procedure: take ``m`` canaries (patient-like records the auditor controls) and flip a fair
coin for each: heads, the canary joins the training data. Train once, score every canary
(higher = "looks included"), guess "+" for the ``k_plus`` highest scores and "−" for the
``k_minus`` lowest, abstain on the rest. If training is (ε, δ)-DP, the number of correct
guesses W among r = k_plus + k_minus is (up to a δ term) stochastically dominated by
Binomial(r, e^ε / (1 + e^ε)) — the coins act like randomized response (their Theorem 3.1;
the δ correction is their Appendix D computation). The reported bound is the largest ε that
this test rejects at level β: with probability ≥ 1 − β over the coins, training is not
(ε', δ)-DP for any ε' below it.

Why this matters here: it checks the *implementation and the accounting together*. A lower
bound above the ledger's ε means clipping, noise or accounting is wrong. A small bound is
not proof of privacy (the audit is only as strong as its canaries and scores).

Strongest canaries for linear models: records with a feature that no other record has
(:func:`coordinate_canaries`) — their weight moves only if they are trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import expit
from scipy.stats import binom

from privehr.evaluation.attacks._checks import Checks
from privehr.evaluation.attacks._model_io import TrainFn, logit_confidence, true_label_probability
from privehr.evaluation.attacks.results import AuditResult

TrainAndScoreFn = Callable[[Any, np.ndarray, int], np.ndarray]
"""``train_and_score_fn(canaries, include, seed) -> scores``: train once on the base data plus
the canaries where ``include`` is True; return one score per canary (higher = included)."""

_BISECTION_STEPS = 100


def audit_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """P[≥ v correct of r guesses] under the null "training is (ε, δ)-DP", m canaries in all.

    p = P[Bin(r, q) ≥ v] + 2 m δ · max_{1≤i≤v} P[v − i ≤ Bin(r, q) < v] / i,  q = e^ε/(1+e^ε).
    """
    if v <= 0:
        return 1.0
    q = float(expit(eps))
    p = float(binom.sf(v - 1, r, q))
    if delta > 0.0:
        below = binom.pmf(np.arange(v - 1, -1, -1), r, q)  # j = v-1, v-2, ..., 0
        alpha = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))
        p += 2.0 * m * delta * alpha
    return min(p, 1.0)


def eps_lower_bound(m: int, r: int, v: int, *, delta: float, beta: float) -> float:
    """Largest ε rejected at level β, found by bisection on the increasing p-value.

    Invariant: p(lo) < β ≤ p(hi); returns ``lo``, i.e. errs on the low (safe) side.

    All 80 guesses right among 200 canaries, 95% confidence (pure DP):

    >>> round(eps_lower_bound(200, 80, 80, delta=0.0, beta=0.05), 3)
    3.266
    >>> eps_lower_bound(200, 80, 40, delta=0.0, beta=0.05)  # chance level
    0.0
    """
    if audit_p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    lo, hi = 0.0, 1.0
    while audit_p_value(m, r, v, hi, delta) < beta:
        lo, hi = hi, hi * 2.0
        if hi > 1e4:  # p -> 1 as ε grows whenever v <= r, so this cannot be reached
            raise RuntimeError("ε lower bound search did not bracket; check m, r, v.")
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if audit_p_value(m, r, v, mid, delta) < beta:
            lo = mid
        else:
            hi = mid
    return lo


def choose_guesses(
    scores: np.ndarray, k_plus: int, k_minus: int, rng: np.random.Generator
) -> np.ndarray:
    """+1 for the k_plus highest scores, −1 for the k_minus lowest, 0 (abstain) otherwise.

    Ties are broken by a random permutation drawn independently of the inclusion coins, so
    tied scores cannot smuggle in information about which canaries were included.
    """
    order = rng.permutation(scores.size)
    ranked = order[np.argsort(scores[order], kind="stable")]  # ascending
    guesses = np.zeros(scores.size, dtype=np.int8)
    if k_minus:
        guesses[ranked[:k_minus]] = -1
    if k_plus:
        guesses[ranked[scores.size - k_plus:]] = 1
    return guesses


def _take(canaries: Any, m: int) -> Any:
    if isinstance(canaries, tuple):
        return tuple(np.asarray(c)[:m] for c in canaries)
    return np.asarray(canaries)[:m]


def _count(canaries: Any) -> int:
    if isinstance(canaries, tuple):
        counts = {len(c) for c in canaries}
        return counts.pop() if len(counts) == 1 else -1
    return len(canaries)


def one_run_audit(
    train_and_score_fn: TrainAndScoreFn,
    canaries: Any,
    m: int,
    k_plus: int,
    k_minus: int,
    delta: float,
    beta: float,
    seed: int,
    *,
    eps_claimed: float | None = None,
) -> AuditResult:
    """Run the audit: draw inclusion coins, train once, guess, and bound ε.

    ``canaries``: an array with one canary per row, or a tuple of aligned arrays such as
    ``(X_canary, y_canary)``; the first ``m`` are used. ``k_plus``/``k_minus`` must be fixed
    before seeing the scores (choosing them afterwards invalidates the confidence).
    ``eps_claimed`` (the ledger's ε for this run) is recorded for the consistency check.
    """
    checks = Checks("one_run_audit")
    n_available = _count(canaries)
    checks.require(n_available >= 0, "canaries", type(canaries).__name__,
                   "be an array or a tuple of arrays of equal length",
                   "pass (X_canary, y_canary) with one row per canary")
    if checks.int_at_least(m, "m", 1, "use m >= 1 canaries (hundreds give useful bounds)"):
        checks.require(n_available >= m, "m", m, f"not exceed the {n_available} canaries given",
                       "pass more canaries or lower m")
    checks.int_at_least(k_plus, "k_plus", 0, "use k_plus >= 0")
    checks.int_at_least(k_minus, "k_minus", 0, "use k_minus >= 0")
    if isinstance(k_plus, int) and isinstance(k_minus, int) and isinstance(m, int):
        checks.require(0 < k_plus + k_minus <= m, "k_plus + k_minus", k_plus + k_minus,
                       f"be in 1..m (= {m})", "guess on at most m canaries, at least one")
    checks.require(isinstance(delta, float | int) and 0.0 <= delta < 1.0, "delta", delta,
                   "be in [0, 1)", "use the δ of the claim being audited, e.g. 1e-5")
    checks.prob_open(beta, "beta", "e.g. beta=0.05 for 95% confidence")
    checks.done()

    coin_rng, guess_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    include = coin_rng.random(m) < 0.5
    train_seed = int(coin_rng.integers(0, 2**31 - 1))
    scores = np.asarray(train_and_score_fn(_take(canaries, m), include.copy(), train_seed),
                        dtype=float)
    if scores.shape != (m,) or not np.all(np.isfinite(scores)):
        raise ValueError(
            f"train_and_score_fn returned {scores.shape} scores (finite: "
            f"{bool(np.all(np.isfinite(scores)))}); expected {m} finite scores, one per canary."
        )
    guesses = choose_guesses(scores, k_plus, k_minus, guess_rng)
    correct = int(np.sum((guesses == 1) & include) + np.sum((guesses == -1) & ~include))
    r = k_plus + k_minus
    return AuditResult(
        eps_lower_bound=eps_lower_bound(m, r, correct, delta=float(delta), beta=float(beta)),
        correct=correct,
        guesses=r,
        m=m,
        confidence=1.0 - float(beta),
        delta=float(delta),
        k_plus=k_plus,
        k_minus=k_minus,
        eps_claimed=None if eps_claimed is None else float(eps_claimed),
    )


def coordinate_canaries(
    m: int, n_features: int, *, value: float = 1.0, label: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``m`` canaries, each with its own extra feature column: shape (m, n_features + m).

    Canary i is all zeros on the ``n_features`` real columns and ``value`` on column
    ``n_features + i``. Pad the real data with :func:`pad_for_canaries` so no real record
    touches those columns; then a canary's own weight moves only if it is trained on.
    """
    X = np.zeros((m, n_features + m))
    X[np.arange(m), n_features + np.arange(m)] = value
    return X, np.full(m, label, dtype=np.int64)


def pad_for_canaries(X: np.ndarray, m: int) -> np.ndarray:
    """Append ``m`` all-zero columns (the canaries' private coordinates) to real records."""
    X = np.asarray(X, dtype=float)
    return np.concatenate([X, np.zeros((X.shape[0], m))], axis=1)


def input_canary_scorer(X: np.ndarray, y: np.ndarray, train_fn: TrainFn) -> TrainAndScoreFn:
    """Build ``train_and_score_fn`` for input-space canaries from any ``train_fn``.

    The returned function pads the base records ``X`` with one zero column per canary (see
    :func:`pad_for_canaries`), appends the included canaries, trains once with
    ``train_fn`` and scores every canary by φ = logit of its label's probability (higher =
    lower loss = "looks included"). Use with ``canaries = coordinate_canaries(m, d)``.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=np.int64)

    def train_and_score(canaries: Any, include: np.ndarray, seed: int) -> np.ndarray:
        cx, cy = canaries
        m_extra = cx.shape[1] - X.shape[1]
        if m_extra < 0:
            raise ValueError(f"canaries have {cx.shape[1]} columns, fewer than the "
                             f"{X.shape[1]} of X; build them with coordinate_canaries.")
        base = pad_for_canaries(X, m_extra)
        model = train_fn(np.concatenate([base, cx[include]]),
                         np.concatenate([y, cy[include]]), seed)
        return logit_confidence(true_label_probability(model, cx, cy))

    return train_and_score
