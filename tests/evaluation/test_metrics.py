import math
import warnings

import numpy as np
import pytest

from privehr.evaluation.metrics import (
    UndefinedMetricWarning,
    accuracy,
    auprc,
    auroc,
    bootstrap_ci,
    brier,
    ece,
    evaluate,
)

Y = np.array([0, 0, 1, 1])
P = np.array([0.1, 0.4, 0.35, 0.8])


def test_hand_computed_small_example():
    # pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > both) -> 3 of 4
    assert auroc(Y, P) == pytest.approx(0.75)
    # thresholds 0.8: P=1, R=.5 ; 0.4: no recall step ; 0.35: P=2/3, R=1
    assert auprc(Y, P) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert brier(Y, P) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    # predictions [0, 0, 0, 1] -> 3 correct
    assert accuracy(Y, P) == pytest.approx(0.75)
    assert accuracy(Y, P, threshold=0.3) == pytest.approx(0.75)  # [0, 1, 1, 1]
    # one example per bin (1, 4, 3, 8): |y - p| = .1, .4, .65, .2
    assert ece(Y, P) == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)


def test_ties_count_half():
    y = np.array([0, 1, 0, 1])
    p = np.array([0.5, 0.5, 0.2, 0.9])
    # pos .5 vs neg .5 -> 1/2, pos .5 vs neg .2 -> 1, pos .9 -> 2 : 3.5 / 4
    assert auroc(y, p) == pytest.approx(0.875)
    # 0.9: P=1, R=.5 ; tied group 0.5 (1 pos, 1 neg): P=2/3, R=1
    assert auprc(y, p) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert auroc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == pytest.approx(0.5)


def test_ece_shared_bin_and_edge():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.71, 0.79, 1.0, 0.95])
    # bin 7: mean y = .5, mean p = .75 -> 2/4 * .25 ; bin 9 (1.0 goes to last bin):
    # mean y = 1, mean p = .975 -> 2/4 * .025
    assert ece(y, p) == pytest.approx(0.5 * 0.25 + 0.5 * 0.025)


def test_perfect_and_inverted_ranking():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.9])
    assert auroc(y, p) == 1.0 and auprc(y, p) == 1.0
    assert auroc(y, 1 - p) == 0.0


def test_auroc_matches_pairwise_definition_on_random_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) * 0.5 + 0.3 * y, 1)  # heavy ties
    pos, neg = p[y == 1], p[y == 0]
    diff = pos[:, None] - neg[None, :]
    expected = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert auroc(y, p) == pytest.approx(expected, abs=1e-12)


def test_single_class_is_nan_with_reason():
    y = np.zeros(5, dtype=int)
    p = np.linspace(0, 1, 5)
    with pytest.warns(UndefinedMetricWarning, match="5 negatives, 0 positives"):
        assert math.isnan(auroc(y, p))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(auprc(y, p))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = evaluate(y, p)  # no warning storm, no crash
    assert math.isnan(out["auroc"]) and out["brier"] == pytest.approx(brier(y, p))


def test_validation_messages():
    with pytest.raises(ValueError, match="len\\(y\\)=3 must equal len\\(p\\)=2"):
        auroc([0, 1, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="not logits"):
        brier([0, 1], [-2.0, 3.0])
    with pytest.raises(ValueError, match="outside \\{0, 1\\}"):
        accuracy([0, 2], [0.1, 0.2])
    assert auroc([0, 1], [-2.0, 3.0]) == 1.0  # ranking metrics accept any real score


def test_evaluate_keys():
    out = evaluate(Y, P)
    assert out["n"] == 4 and out["n_pos"] == 2 and out["prevalence"] == 0.5
    assert out["auroc"] == pytest.approx(0.75) and out["ece"] == pytest.approx(0.3375)


def _scores(n, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y - 1)))
    return y, p


def test_bootstrap_ci_brackets_estimate_and_is_seeded():
    y, p = _scores(400, 0)
    lo, hi = bootstrap_ci(y, p, auroc, n_boot=200, seed=3)
    assert lo < auroc(y, p) < hi and hi - lo < 0.2
    assert (lo, hi) == bootstrap_ci(y, p, "auroc", n_boot=200, seed=3)
    assert (lo, hi) != bootstrap_ci(y, p, "auroc", n_boot=200, seed=4)
    lo90, hi90 = bootstrap_ci(y, p, auroc, n_boot=200, seed=3, alpha=0.10)
    assert lo <= lo90 and hi90 <= hi


def test_bootstrap_is_stratified():
    y, p = _scores(300, 1)
    # every replicate keeps the class counts, so the prevalence never varies
    lo, hi = bootstrap_ci(y, p, lambda yy, pp: float(yy.mean()), n_boot=50, seed=0)
    assert lo == hi == pytest.approx(y.mean())


def test_cluster_bootstrap_widens_interval_for_repeated_rows():
    y0, p0 = _scores(30, 2)
    reps = 40  # each patient contributes 40 identical rows
    y, p = np.repeat(y0, reps), np.repeat(p0, reps)
    pids = np.repeat(np.arange(30), reps)
    lo_r, hi_r = bootstrap_ci(y, p, "brier", n_boot=200, seed=0)
    lo_c, hi_c = bootstrap_ci(y, p, "brier", n_boot=200, seed=0, patient_ids=pids)
    assert (hi_c - lo_c) > 3 * (hi_r - lo_r)
    # and the cluster interval matches a bootstrap over the 30 distinct patients
    lo_p, hi_p = bootstrap_ci(y0, p0, "brier", n_boot=200, seed=0)
    assert (hi_c - lo_c) == pytest.approx(hi_p - lo_p, rel=0.35)


def test_cluster_bootstrap_keeps_patient_rows_together():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.2, 0.9, 0.8, 0.7, 0.3])
    pids = np.array([1, 1, 2, 2, 2, 3])
    seen = []

    def record(yy, pp):
        seen.append(len(yy))
        return 0.0

    bootstrap_ci(y, p, record, n_boot=30, seed=0, patient_ids=pids)
    # negatives: patients 1 (2 rows) and 3 (1 row) drawn twice; positive: patient 2 (3 rows)
    assert set(seen) <= {3 + 2, 3 + 3, 3 + 4} and len(set(seen)) > 1
