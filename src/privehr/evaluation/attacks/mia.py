"""Membership inference against a final model: loss-threshold attack and the study entry point.

Threat model: the attacker holds the released final model (black-box probabilities) and a
candidate patient record with its label, and asks "was this patient in the training data?".
The privacy unit is the record given to ``train_fn``; with one row per patient that is the
patient. Shadow-model attacks additionally assume the attacker can draw records from the
same population (the site's own non-members here), which is the strong-attacker setting a
privacy claim must survive.

The loss-threshold attack (Yeom et al. 2018) scores a record by −loss of its true label,
i.e. log p(y | x); members of an overfit model have markedly smaller loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from privehr.evaluation.attacks._checks import Checks, as_ids, as_labels, as_matrix
from privehr.evaluation.attacks._model_io import (
    PredictProba,
    TrainFn,
    group_mean,
    patient_groups,
    true_label_probability,
)
from privehr.evaluation.attacks.results import (
    ATTACK_RELEASE_KIND,
    SCHEMA_VERSION,
    MembershipAttackResult,
)
from privehr.evaluation.attacks.scoring import (
    DEFAULT_FPRS,
    auroc,
    bootstrap_auroc_ci,
    resolvable_fprs,
    tpr_at_fpr,
)


def summarise_scores(
    attack: str,
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    rng: np.random.Generator,
    n_shadow: int = 0,
) -> MembershipAttackResult:
    """Attack scores (higher = member) → AUC, bootstrap CI and TPR at resolvable FPRs."""
    pos = np.asarray(member_scores, dtype=float)
    neg = np.asarray(nonmember_scores, dtype=float)
    labels = np.concatenate([np.ones(pos.size, dtype=bool), np.zeros(neg.size, dtype=bool)])
    auc = auroc(labels, np.concatenate([pos, neg]))
    lo, hi = bootstrap_auroc_ci(pos, neg, n_bootstrap=n_bootstrap, level=ci_level, rng=rng)
    ok, bad = resolvable_fprs(fprs, neg.size)
    return MembershipAttackResult(
        attack=attack,
        auc=auc,
        auc_ci=(lo, hi),
        ci_level=ci_level,
        n_bootstrap=n_bootstrap,
        tpr_at_fpr=tuple((f, tpr_at_fpr(pos, neg, f)) for f in ok),
        fprs_unresolved=bad,
        n_members=int(pos.size),
        n_nonmembers=int(neg.size),
        n_shadow=n_shadow,
    )


def loss_scores(predict_proba: PredictProba, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Score = −cross-entropy loss of the true label = log p(y | x). Higher = more member-like."""
    return np.log(true_label_probability(predict_proba, X, y))


def threshold_attack(
    predict_proba: PredictProba,
    X_members: np.ndarray,
    y_members: np.ndarray,
    X_nonmembers: np.ndarray,
    y_nonmembers: np.ndarray,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    ids_members: np.ndarray | None = None,
    ids_nonmembers: np.ndarray | None = None,
) -> MembershipAttackResult:
    """Loss-threshold membership attack on a trained model (no shadow models).

    With patient ids, each patient is one candidate scored by the mean over its rows.
    """
    checks = Checks("threshold_attack")
    Xm, Xn = as_matrix(checks, X_members, "X_members"), as_matrix(checks, X_nonmembers, "X_nonmembers")
    ym = as_labels(checks, y_members, "y_members", Xm.shape[0] if Xm.ndim == 2 else -1)
    yn = as_labels(checks, y_nonmembers, "y_nonmembers", Xn.shape[0] if Xn.ndim == 2 else -1)
    im = as_ids(checks, ids_members, "ids_members", Xm.shape[0] if Xm.ndim == 2 else -1)
    inn = as_ids(checks, ids_nonmembers, "ids_nonmembers", Xn.shape[0] if Xn.ndim == 2 else -1)
    check_disjoint(checks, im, inn)
    _check_common(checks, fprs, n_bootstrap, ci_level)
    checks.done()
    pos = group_mean(loss_scores(predict_proba, Xm, ym), *patient_groups(im, Xm.shape[0]))
    neg = group_mean(loss_scores(predict_proba, Xn, yn), *patient_groups(inn, Xn.shape[0]))
    return summarise_scores("loss_threshold", pos, neg, fprs=fprs, n_bootstrap=n_bootstrap,
                            ci_level=ci_level, rng=np.random.default_rng(seed))


def check_disjoint(checks: Checks, ids_members: np.ndarray | None,
                   ids_nonmembers: np.ndarray | None) -> None:
    """Members and non-members must be different patients (both given or neither)."""
    if (ids_members is None) != (ids_nonmembers is None):
        checks.require(False, "ids_nonmembers" if ids_nonmembers is None else "ids_members",
                       None, "be given together with the other side's patient ids",
                       "pass patient ids for both members and non-members, or for neither")
    elif ids_members is not None and ids_nonmembers is not None:
        shared = np.intersect1d(ids_members, ids_nonmembers)
        checks.require(shared.size == 0, "ids_nonmembers", shared[:5].tolist(),
                       "share no patient with ids_members",
                       "split by patient (learning.split.patient_split), not by row")


def _check_common(checks: Checks, fprs: Sequence[float], n_bootstrap: int, ci_level: float) -> None:
    checks.require(len(fprs) > 0 and all(0.0 < float(f) < 1.0 for f in fprs), "fprs", fprs,
                   "be a non-empty list of rates in (0, 1)", "e.g. fprs=(0.1, 0.01, 0.001)")
    checks.int_at_least(n_bootstrap, "n_bootstrap", 100, "use n_bootstrap >= 100 (1000 default)")
    checks.prob_open(ci_level, "ci_level", "e.g. ci_level=0.95")


def run_membership_attacks(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_out: np.ndarray,
    y_out: np.ndarray,
    train_fn: TrainFn,
    *,
    n_shadow: int = 16,
    seed: int = 0,
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    target: PredictProba | None = None,
    global_variance: bool = False,
    ids_train: np.ndarray | None = None,
    ids_out: np.ndarray | None = None,
) -> dict[str, Any]:
    """Study entry point: loss-threshold, LiRA-offline and LiRA-online attacks, as one dict.

    ``X_train``/``y_train`` are the members (exactly the target model's training set),
    ``X_out``/``y_out`` held-out records of the same population (non-members). The target
    is ``train_fn(X_train, y_train, seed)`` unless an already trained ``target`` is given.
    Shadows are trained on balanced halves of members ∪ non-members (see ``lira``); choose
    ``len(X_out) ≈ len(X_train)`` so shadow training sets match the target's size.
    ``global_variance`` pools LiRA's σ over candidates (steadier with few shadows).
    ``ids_train``/``ids_out`` (patient id per row) make each *patient* one candidate: scores
    are averaged over a patient's rows and LiRA includes or excludes all of them together.
    Cost: ``n_shadow + 1`` trainings.
    """
    from privehr.evaluation.attacks.lira import lira_attack  # lira imports this module

    checks = Checks("run_membership_attacks")
    Xm, Xn = as_matrix(checks, X_train, "X_train"), as_matrix(checks, X_out, "X_out")
    ym = as_labels(checks, y_train, "y_train", Xm.shape[0] if Xm.ndim == 2 else -1)
    yn = as_labels(checks, y_out, "y_out", Xn.shape[0] if Xn.ndim == 2 else -1)
    if Xm.ndim == 2 and Xn.ndim == 2:
        checks.require(Xm.shape[1] == Xn.shape[1], "X_out", Xn,
                       f"have the same {Xm.shape[1]} feature columns as X_train",
                       "build both from the same feature pipeline")
    im = as_ids(checks, ids_train, "ids_train", Xm.shape[0] if Xm.ndim == 2 else -1)
    inn = as_ids(checks, ids_out, "ids_out", Xn.shape[0] if Xn.ndim == 2 else -1)
    check_disjoint(checks, im, inn)
    _check_common(checks, fprs, n_bootstrap, ci_level)
    checks.done()

    seeds = np.random.SeedSequence(seed).generate_state(3)
    model = target if target is not None else train_fn(Xm, ym, int(seeds[0]))
    threshold = threshold_attack(model, Xm, ym, Xn, yn, fprs=fprs, n_bootstrap=n_bootstrap,
                                 ci_level=ci_level, seed=int(seeds[1]), ids_members=im,
                                 ids_nonmembers=inn)
    lira = lira_attack(model, Xm, ym, Xn, yn, train_fn, n_shadow=n_shadow, seed=int(seeds[2]),
                       fprs=fprs, n_bootstrap=n_bootstrap, ci_level=ci_level,
                       global_variance=global_variance, ids_members=im, ids_nonmembers=inn)
    return {
        "schema_version": SCHEMA_VERSION,
        "release_kind": ATTACK_RELEASE_KIND,
        "attack": "membership_inference",
        "n_members": threshold.n_members,
        "n_nonmembers": threshold.n_nonmembers,
        "unit": "row" if im is None else "patient",
        "loss_threshold": threshold.to_dict(),
        "lira_offline": lira["offline"].to_dict(),
        "lira_online": lira["online"].to_dict(),
    }
