import math

import numpy as np
import pytest

from privehr.evaluation.histograms import ScoreHistogram, metrics_from_histogram
from privehr.evaluation.metrics import (
    UndefinedMetricWarning,
    accuracy,
    auprc,
    auroc,
    brier,
    ece,
)


def _site(kind, n, seed):
    rng = np.random.default_rng(seed)
    if kind == "uniform":  # random scores, no signal
        return rng.integers(0, 2, n), rng.random(n)
    prevalence = 0.08 if kind == "rare" else 0.3
    y = (rng.random(n) < prevalence).astype(int)
    if kind == "saturated":  # well-separated, many scores piled near 0 and 1
        logit = rng.normal(size=n) * 2 + 6 * y - 3
    else:  # realistic: logistic model output, rare outcome
        logit = rng.normal(size=n) + 1.5 * y - 2.5
    return y, 1 / (1 + np.exp(-logit))


@pytest.mark.parametrize("kind", ["uniform", "rare", "saturated", "realistic"])
def test_summed_site_histograms_match_pooled_exact_metrics(kind):
    sites = [_site(kind, n, seed) for seed, n in enumerate((50, 400, 1200, 3000))]
    y = np.concatenate([s[0] for s in sites])
    p = np.concatenate([s[1] for s in sites])
    h = sum(ScoreHistogram.from_scores(yy, pp) for yy, pp in sites)
    assert h.n == y.size
    m = metrics_from_histogram(h)
    assert abs(m["auroc"] - auroc(y, p)) < 0.005
    assert abs(m["auprc"] - auprc(y, p)) < 0.01
    assert m["brier"] == pytest.approx(brier(y, p), rel=1e-12)
    assert m["accuracy"] == accuracy(y, p)
    assert m["ece"] == pytest.approx(ece(y, p), abs=1e-12)
    assert m["n_pos"] == y.sum()


def test_auroc_exact_when_scores_sit_in_distinct_bins():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = metrics_from_histogram(ScoreHistogram.from_scores(y, p))
    assert m["auroc"] == pytest.approx(0.75, abs=1e-15)
    assert m["auprc"] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)


def test_ties_within_a_bin_count_half():
    # a positive and a negative in the same bin (0.5001 and 0.5004 with 1000 bins)
    y = np.array([0, 1])
    p = np.array([0.5004, 0.5001])
    assert auroc(y, p) == 0.0
    assert metrics_from_histogram(ScoreHistogram.from_scores(y, p))["auroc"] == 0.5


def test_sum_equals_histogram_of_pooled_and_roundtrips():
    a, b = _site("realistic", 300, 1), _site("realistic", 500, 2)
    ha, hb = ScoreHistogram.from_scores(*a), ScoreHistogram.from_scores(*b)
    pooled = ScoreHistogram.from_scores(np.r_[a[0], b[0]], np.r_[a[1], b[1]])
    s = ha + hb
    assert np.array_equal(s.neg, pooled.neg) and np.array_equal(s.pos, pooled.pos)
    np.testing.assert_allclose(s.sum_p, pooled.sum_p, rtol=1e-12)
    back = ScoreHistogram.from_vector(s.to_vector())
    assert np.array_equal(back.pos, s.pos) and back.sum_sq_err == s.sum_sq_err
    again = ScoreHistogram.from_dict(s.to_dict())
    assert np.array_equal(again.neg, s.neg)
    assert ScoreHistogram.empty() + ha == ha and sum([ha, hb]) == s
    assert ha != hb


def test_errors_and_single_class():
    with pytest.raises(ValueError, match="same n_bins"):
        ScoreHistogram.from_scores([0, 1], [0.2, 0.7], n_bins=10) + ScoreHistogram.from_scores(
            [0, 1], [0.2, 0.7])
    with pytest.raises(ValueError, match="empty"):
        metrics_from_histogram(ScoreHistogram.empty())
    h = ScoreHistogram.from_scores([1, 1, 1], [0.2, 0.7, 0.9])
    with pytest.warns(UndefinedMetricWarning, match="single class"):
        m = metrics_from_histogram(h)
    assert math.isnan(m["auroc"]) and m["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="divide n_bins"):
        metrics_from_histogram(ScoreHistogram.from_scores([0, 1], [0.1, 0.9]), ece_bins=7)
    with pytest.raises(ValueError, match="bin edge"):
        metrics_from_histogram(ScoreHistogram.from_scores([0, 1], [0.1, 0.9]), threshold=0.12345)
    with pytest.raises(ValueError, match="counts must be >= 0"):
        ScoreHistogram(np.array([-1]), np.array([0]), np.array([0.0]))
