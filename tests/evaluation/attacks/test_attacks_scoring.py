import json

import numpy as np
import pytest

from privehr.evaluation.attacks.mia import summarise_scores
from privehr.evaluation.attacks.scoring import (
    bootstrap_auroc_ci,
    rank_auroc,
    resolvable_fprs,
    tpr_at_fpr,
)


def brute_force_auc(labels, scores):
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_rank_auroc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200)
    scores = rng.integers(0, 10, size=200).astype(float) + labels * 0.7  # many ties
    assert rank_auroc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))


def test_rank_auroc_extremes_and_single_class_error():
    labels = np.array([0, 0, 1, 1])
    assert rank_auroc(labels, np.array([0.0, 1.0, 2.0, 3.0])) == 1.0
    assert rank_auroc(labels, np.array([3.0, 2.0, 1.0, 0.0])) == 0.0
    with pytest.raises(ValueError, match="both classes"):
        rank_auroc(np.ones(3), np.arange(3.0))


def test_bootstrap_ci_brackets_estimate_and_shrinks_with_more_data():
    rng = np.random.default_rng(1)

    def width(n):
        pos, neg = rng.normal(0.5, 1, n), rng.normal(0, 1, n)
        lo, hi = bootstrap_auroc_ci(pos, neg, n_bootstrap=400, rng=rng)
        est = brute_force_auc(np.r_[np.ones(n), np.zeros(n)], np.r_[pos, neg])
        assert lo <= est <= hi
        return hi - lo

    assert width(400) < 0.6 * width(50)


def test_tpr_at_fpr_counts_only_allowed_false_positives():
    neg = np.arange(10.0)  # 0..9
    pos = np.array([9.5, 8.5, 7.5, 3.0])
    assert tpr_at_fpr(pos, neg, 0.1) == 0.5  # 1 FP allowed: score > 8 -> 9.5, 8.5
    assert tpr_at_fpr(pos, neg, 0.2) == 0.75  # threshold 7 -> 9.5, 8.5, 7.5
    assert tpr_at_fpr(pos, neg, 0.05) == 0.25  # 0 FP: threshold 9 -> 9.5


def test_tpr_at_fpr_ties_with_threshold_count_as_negative():
    # no FP allowed: threshold is the top non-member score; tied members are not counted
    assert tpr_at_fpr(np.array([1.0, 1.0]), np.array([1.0, 0.0]), 0.4) == 0.0
    assert tpr_at_fpr(np.array([1.0, 1.0]), np.array([1.0, 0.0]), 0.5) == 1.0


def test_unresolvable_fprs_are_reported_not_computed():
    ok, bad = resolvable_fprs((0.1, 0.01, 0.001), 60)
    assert ok == (0.1,) and bad == (0.01, 0.001)
    rng = np.random.default_rng(2)
    res = summarise_scores("x", rng.normal(1, 1, 200), rng.normal(0, 1, 150), rng=rng,
                           n_bootstrap=200)
    assert [f for f, _ in res.tpr_at_fpr] == [0.1, 0.01]
    assert res.fprs_unresolved == (0.001,)
    assert res.n_members == 200 and res.n_nonmembers == 150
    d = json.loads(json.dumps(res.to_dict()))
    assert d["release_kind"] == "attack" and d["tpr_at_fpr"][0]["fpr"] == 0.1
