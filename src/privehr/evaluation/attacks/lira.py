"""LiRA: the likelihood-ratio membership attack with shadow models (Carlini et al. 2022).

How it works: train ``n_shadow`` shadow models, each on a random half of the candidate pool
(members ∪ non-members), with *balanced* inclusion — every candidate is IN for exactly half
of the shadows and OUT for the rest, so each candidate gets ``n_shadow / 2`` samples of both
distributions. For each candidate, the logit-scaled confidence of its true label,
φ = log(p / (1 − p)), is close to Gaussian across shadows; fit one Gaussian to the IN values
and one to the OUT values. Then score the target model's φ for that candidate:

- offline: how far φ sits above the OUT distribution, z = (φ − μ_out) / σ_out (a one-sided
  test; monotone in the paper's offline statistic Φ(z)). Uses only OUT shadows, so it also
  applies when the attacker cannot train on the candidate.
- online: log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out), the likelihood ratio.

Why per-candidate distributions: some patients are hard (atypical) and have high loss
even when trained on; a global threshold cannot tell "hard" from "not a member", the
per-candidate calibration can. That is where LiRA gets its TPR at low FPR.

Cost: ``n_shadow`` calls to ``train_fn``. Not covered: multi-query augmentation (no
natural augmentations for tabular EHR features).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from privehr.evaluation.attacks._checks import Checks, as_ids, as_labels, as_matrix
from privehr.evaluation.attacks._model_io import (
    PredictProba,
    TrainFn,
    group_mean,
    logit_confidence,
    patient_groups,
    true_label_probability,
)
from privehr.evaluation.attacks.mia import check_disjoint, summarise_scores
from privehr.evaluation.attacks.results import MembershipAttackResult
from privehr.evaluation.attacks.scoring import DEFAULT_FPRS

MIN_SHADOWS = 16
# Floor on fitted standard deviations: a saturated model can give identical φ in every
# shadow, and a zero variance would turn the likelihood into ±inf.
STD_FLOOR = 1e-3


def balanced_inclusion(n_candidates: int, n_shadow: int, rng: np.random.Generator) -> np.ndarray:
    """(n_shadow, n_candidates) bool matrix; each column has exactly n_shadow/2 True entries."""
    if n_shadow % 2:
        raise ValueError(f"n_shadow must be even for balanced inclusion; got {n_shadow}.")
    base = np.broadcast_to(np.arange(n_shadow)[:, None] < n_shadow // 2, (n_shadow, n_candidates))
    return rng.permuted(base, axis=0)


@dataclass(frozen=True)
class ShadowFit:
    """Per-candidate Gaussian fits of φ over IN and OUT shadows."""

    mean_in: np.ndarray
    std_in: np.ndarray
    mean_out: np.ndarray
    std_out: np.ndarray


def fit_shadow_gaussians(
    phi_shadow: np.ndarray, inclusion: np.ndarray, *, global_variance: bool = False
) -> ShadowFit:
    """Fit N(μ, σ²) per candidate to its IN and OUT φ values (ddof=1).

    ``global_variance=True`` pools one σ per side over all candidates, which Carlini et al.
    recommend when there are few shadows per candidate.
    """
    phi = np.asarray(phi_shadow, dtype=float)
    inc = np.asarray(inclusion, dtype=bool)

    def side(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = mask.sum(axis=0)
        mean = (phi * mask).sum(axis=0) / n
        resid = (phi - mean) * mask
        if global_variance:
            var = (resid**2).sum() / max(int((n - 1).sum()), 1)
            std = np.full(phi.shape[1], np.sqrt(var))
        else:
            std = np.sqrt((resid**2).sum(axis=0) / np.maximum(n - 1, 1))
        return mean, np.maximum(std, STD_FLOOR)

    mean_in, std_in = side(inc)
    mean_out, std_out = side(~inc)
    return ShadowFit(mean_in, std_in, mean_out, std_out)


def _log_normal_pdf(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2.0 * np.pi)


def lira_scores(phi_target: np.ndarray, fit: ShadowFit, *, online: bool) -> np.ndarray:
    """Membership scores (higher = member) of the target's φ under the shadow fits."""
    phi = np.asarray(phi_target, dtype=float)
    if not online:
        return (phi - fit.mean_out) / fit.std_out
    return _log_normal_pdf(phi, fit.mean_in, fit.std_in) - _log_normal_pdf(
        phi, fit.mean_out, fit.std_out
    )


def train_shadows(
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    train_fn: TrainFn,
    *,
    n_shadow: int,
    rng: np.random.Generator,
    groups: tuple[np.ndarray, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train the shadows; return (φ of every candidate under every shadow, inclusion matrix).

    ``groups = (row -> candidate, n_candidates)`` makes a candidate a patient: all its rows
    go in or out together and its φ is the mean over its rows.
    """
    inverse, n_cand = groups if groups is not None else patient_groups(None, X_pool.shape[0])
    inclusion = balanced_inclusion(n_cand, n_shadow, rng)
    seeds = rng.integers(0, 2**31 - 1, size=n_shadow)
    phi = np.empty((n_shadow, n_cand))
    for s in range(n_shadow):
        keep = inclusion[s][inverse]
        shadow = train_fn(X_pool[keep], y_pool[keep], int(seeds[s]))
        row_phi = logit_confidence(true_label_probability(shadow, X_pool, y_pool))
        phi[s] = group_mean(row_phi, inverse, n_cand)
    return phi, inclusion


def lira_attack(
    target: PredictProba,
    X_members: np.ndarray,
    y_members: np.ndarray,
    X_nonmembers: np.ndarray,
    y_nonmembers: np.ndarray,
    train_fn: TrainFn,
    *,
    n_shadow: int = MIN_SHADOWS,
    seed: int = 0,
    global_variance: bool = False,
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    ids_members: np.ndarray | None = None,
    ids_nonmembers: np.ndarray | None = None,
) -> dict[str, MembershipAttackResult]:
    """Run LiRA against ``target``; returns ``{"offline": result, "online": result}``.

    The candidate pool is members ∪ non-members; ``target`` must have been trained on the
    members only (that is what is being tested). With patient ids a candidate is a patient.
    """
    checks = Checks("lira_attack")
    Xm, Xn = as_matrix(checks, X_members, "X_members"), as_matrix(checks, X_nonmembers, "X_nonmembers")
    ym = as_labels(checks, y_members, "y_members", Xm.shape[0] if Xm.ndim == 2 else -1)
    yn = as_labels(checks, y_nonmembers, "y_nonmembers", Xn.shape[0] if Xn.ndim == 2 else -1)
    if checks.int_at_least(n_shadow, "n_shadow", MIN_SHADOWS,
                           f"use at least {MIN_SHADOWS} shadows (8 IN + 8 OUT per candidate)"):
        checks.require(n_shadow % 2 == 0, "n_shadow", n_shadow, "be even",
                       "use an even count so each candidate is IN for exactly half")
    im = as_ids(checks, ids_members, "ids_members", Xm.shape[0] if Xm.ndim == 2 else -1)
    inn = as_ids(checks, ids_nonmembers, "ids_nonmembers", Xn.shape[0] if Xn.ndim == 2 else -1)
    check_disjoint(checks, im, inn)
    checks.done()

    rng = np.random.default_rng(seed)
    X_pool, y_pool = np.concatenate([Xm, Xn]), np.concatenate([ym, yn])
    if im is None or inn is None:
        groups = patient_groups(None, X_pool.shape[0])
        is_member = np.arange(X_pool.shape[0]) < Xm.shape[0]
    else:
        groups = patient_groups(np.concatenate([im, inn]), X_pool.shape[0])
        is_member = np.zeros(groups[1], dtype=bool)
        is_member[groups[0][: Xm.shape[0]]] = True
    phi_shadow, inclusion = train_shadows(X_pool, y_pool, train_fn, n_shadow=n_shadow, rng=rng,
                                          groups=groups)
    fit = fit_shadow_gaussians(phi_shadow, inclusion, global_variance=global_variance)
    phi_rows = logit_confidence(true_label_probability(target, X_pool, y_pool))
    phi_target = group_mean(phi_rows, *groups)
    out: dict[str, MembershipAttackResult] = {}
    for name, online in (("offline", False), ("online", True)):
        scores = lira_scores(phi_target, fit, online=online)
        out[name] = summarise_scores(
            f"lira_{name}", scores[is_member], scores[~is_member], fprs=fprs,
            n_bootstrap=n_bootstrap,
            ci_level=ci_level, rng=rng, n_shadow=n_shadow,
        )
    return out
