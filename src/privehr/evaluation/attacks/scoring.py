"""Turning attack scores into evidence: AUROC with a bootstrap CI, and TPR at low FPR.

Convention everywhere in this package: a *higher* score means "more likely a member"
(label 1 = member / canary included, 0 = non-member).

Why TPR at low FPR and not only AUC (Carlini et al. 2022, "Membership Inference Attacks From
First Principles"): an attack that is right about a few patients with near certainty is a
real privacy harm even when its average-case AUC is close to 0.5. A FPR target is only
*resolvable* when there are at least 1/FPR non-members, so we report TPR only at the
requested FPRs that satisfy ``fpr >= 1 / n_nonmembers`` and list the others as unresolved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

DEFAULT_FPRS: tuple[float, ...] = (0.1, 0.01, 0.001)
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


def rank_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC by the rank-sum (Mann-Whitney U) formula; ties count one half.

    >>> rank_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"AUROC needs both classes; got {n_pos} members and {n_neg} non-members. "
            "Fix: pass at least one record of each."
        )
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC via the project's shared metric (``privehr.evaluation.metrics.auroc(y, p)``).

    Falls back to :func:`rank_auroc` (the same Mann-Whitney formula) only if that module is
    absent, so this package still runs on its own.
    """
    labels = np.asarray(labels).astype(np.int64)
    try:
        from privehr.evaluation.metrics import auroc as shared_auroc
    except ImportError:
        return rank_auroc(labels, scores)
    return float(shared_auroc(labels, np.asarray(scores, dtype=float)))


def bootstrap_auroc_ci(
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUROC, resampling members and non-members separately.

    Stratified resampling keeps the member/non-member counts fixed, which is how the attack
    was set up (the prior is chosen by the auditor, not sampled).
    """
    pos = np.asarray(member_scores, dtype=float)
    neg = np.asarray(nonmember_scores, dtype=float)
    n_pos, n_neg = pos.size, neg.size
    per_rep = n_pos + n_neg
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // per_rep)
    aucs: list[np.ndarray] = []
    done = 0
    while done < n_bootstrap:
        b = min(chunk, n_bootstrap - done)
        sample = np.concatenate(
            [pos[rng.integers(0, n_pos, size=(b, n_pos))],
             neg[rng.integers(0, n_neg, size=(b, n_neg))]], axis=1)
        ranks = rankdata(sample, axis=1)
        aucs.append((ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
        done += b
    all_aucs = np.concatenate(aucs)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(all_aucs, [tail, 1.0 - tail])
    return float(lo), float(hi)


def resolvable_fprs(
    fprs: Sequence[float], n_nonmembers: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Split requested FPRs into (resolvable, unresolved) given the number of non-members."""
    floor = 1.0 / n_nonmembers
    ok = tuple(float(f) for f in fprs if f >= floor - 1e-15)
    bad = tuple(float(f) for f in fprs if f < floor - 1e-15)
    return ok, bad


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float) -> float:
    """Largest TPR of a threshold rule ``score > t`` whose empirical FPR is at most ``fpr``.

    The threshold is the (k+1)-th largest non-member score with k = floor(fpr · n_nonmembers)
    false positives allowed; members tied with it count as negatives (conservative).
    """
    pos = np.asarray(member_scores, dtype=float)
    neg = np.sort(np.asarray(nonmember_scores, dtype=float))[::-1]
    allowed = int(np.floor(fpr * neg.size + 1e-9))
    if allowed >= neg.size:
        return 1.0
    threshold = neg[allowed]
    return float(np.mean(pos > threshold))
