import math

import numpy as np
import pytest
from dp_accounting import dp_event as de

from privehr.privacy.errors import PrivacyConfigError
from privehr.privacy.noise import NoiseSource
from privehr.privacy.stats import (
    clip_rows,
    release_count,
    release_histogram,
    release_standardisation_stats,
    release_sum,
    suppress_small_cells,
)

TEST = NoiseSource.seeded_for_tests(0)


def rows_per_patient(seed=0, n=60, d=3):
    rng = np.random.default_rng(seed)
    k = rng.integers(1, 5, size=n)
    ids = np.repeat(np.arange(n), k)
    X = rng.normal(loc=[1.0, -2.0, 0.5][:d], scale=1.0, size=(ids.size, d))
    return X, ids


def test_count_event_and_noise_scale():
    r = release_count(120, noise_multiplier=4.0, noise=NoiseSource.secure())
    assert r.private and r.event == de.GaussianDpEvent(4.0)
    vals = [release_count(120, noise_multiplier=4.0, noise=NoiseSource.seeded_for_tests(s)).value
            for s in range(400)]
    assert np.mean(vals) == pytest.approx(120, abs=5 * 4 / 20)
    assert np.std(vals) == pytest.approx(4.0, rel=0.15)


def test_seeded_release_is_non_private():
    r = release_count(5, noise_multiplier=4.0, noise=TEST)
    assert not r.private and isinstance(r.event, de.NonPrivateDpEvent)
    assert r.nominal_event == de.GaussianDpEvent(4.0)


def test_release_sum_clips_each_patient():
    c = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    assert np.allclose(np.linalg.norm(clip_rows(c, 1.0), axis=1), [1.0, 0.5, 0.0])
    r = release_sum(c, clip_norm=1.0, noise_multiplier=0.0, noise=TEST)
    assert np.allclose(r.value, [0.6 + 0.3, 0.8 + 0.4])


def test_standardisation_stats_count_each_patient_once():
    X, ids = rows_per_patient()
    r = release_standardisation_stats(X, ids, bound=10.0, noise_multiplier=0.0, noise=TEST)
    means = np.stack([X[ids == i].mean(axis=0) for i in np.unique(ids)])
    s = r.value
    assert s.count == pytest.approx(60)
    assert np.allclose(s.mean, means.mean(axis=0))
    assert np.allclose(s.std, means.std(axis=0), rtol=1e-6)


def test_standardisation_stats_with_noise_are_close_and_private():
    X, ids = rows_per_patient(n=3000)
    r = release_standardisation_stats(X, ids, bound=5.0, noise_multiplier=2.0,
                                      noise=NoiseSource.secure())
    assert r.event == de.GaussianDpEvent(2.0)
    means = np.stack([X[ids == i].mean(axis=0) for i in np.unique(ids)])
    # noise std on the sum is 2 * sqrt(7) * bound ~ 26 over 3000 patients
    assert np.allclose(r.value.mean, means.mean(axis=0), atol=0.1)
    assert abs(r.value.count - 3000) < 5 * 2 * math.sqrt(7)


def test_histogram_counts_patients_not_rows_and_clips():
    codes = np.array(["a", "a", "b", "a", "c", "zzz", "b"])
    ids = np.array([1, 1, 1, 2, 2, 3, 4])
    r = release_histogram(codes, ids, ["a", "b", "c"], noise_multiplier=0.0, noise=TEST,
                          clip_norm=10.0)
    assert r.value == {"a": 2.0, "b": 2.0, "c": 1.0}
    r1 = release_histogram(codes, ids, ["a", "b", "c"], noise_multiplier=0.0, noise=TEST)
    # patients 1 and 2 have two codes each: scaled to norm 1 (1/sqrt 2 per code)
    assert r1.value["a"] == pytest.approx(2 / math.sqrt(2))
    assert r1.value["b"] == pytest.approx(1 / math.sqrt(2) + 1)


def test_histogram_validation():
    with pytest.raises(PrivacyConfigError, match="categories"):
        release_histogram(["a"], [1], ["a", "a"], noise_multiplier=1.0, noise=TEST)
    with pytest.raises(PrivacyConfigError, match="values/patient_ids"):
        release_histogram(["a", "b"], [1], ["a"], noise_multiplier=1.0, noise=TEST)


def test_count_validation():
    with pytest.raises(PrivacyConfigError, match="n_patients"):
        release_count(-1, noise_multiplier=1.0, noise=TEST)
    with pytest.raises(PrivacyConfigError, match="noise"):
        release_count(3, noise_multiplier=1.0, noise=None)


def test_small_cells_are_suppressed():
    out = suppress_small_cells([0, 10, 11, 50.5])
    assert np.isnan(out[:2]).all() and out[2] == 11 and out[3] == 50.5
