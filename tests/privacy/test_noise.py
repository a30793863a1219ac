import numpy as np
import pytest
from scipy import stats

from privehr.privacy.errors import PrivacyConfigError
from privehr.privacy.noise import (
    NoiseSource,
    gaussian_mechanism,
    lattice_step,
    noise_std,
)


def test_noise_has_calibrated_scale():
    n, sens, mult = 200_000, 2.0, 1.5
    rng = NoiseSource.seeded_for_tests(3).generator()
    out = gaussian_mechanism(np.zeros(n), l2_sensitivity=sens, noise_multiplier=mult, rng=rng)
    std = noise_std(sens, mult, n)
    assert std == pytest.approx(3.0, rel=1e-4)  # lattice slack is tiny
    ratio = out.var() / std**2
    assert abs(ratio - 1) < 5 * np.sqrt(2 / n)
    assert abs(out.mean()) < 5 * std / np.sqrt(n)
    assert stats.kstest(out / std, "norm").pvalue > 1e-4


def test_output_lies_on_the_lattice_and_noise_is_centred_on_input():
    rng = NoiseSource.seeded_for_tests(4).generator()
    x = np.full(50_000, 0.123456789)
    out = gaussian_mechanism(x, l2_sensitivity=1.0, noise_multiplier=0.5, rng=rng)
    k = out / lattice_step(1.0)
    assert np.array_equal(k, np.round(k))
    assert abs(out.mean() - 0.123456789) < 5 * 0.5 / np.sqrt(x.size)


def test_shape_is_kept_and_zero_multiplier_returns_input():
    rng = np.random.default_rng(0)
    x = np.arange(6.0).reshape(2, 3)
    assert gaussian_mechanism(x, l2_sensitivity=1, noise_multiplier=2.0, rng=rng).shape == (2, 3)
    assert np.array_equal(gaussian_mechanism(x, l2_sensitivity=1, noise_multiplier=0, rng=rng), x)


def test_seeded_source_is_reproducible_and_not_private():
    a, b = NoiseSource.seeded_for_tests(9), NoiseSource.seeded_for_tests(9)
    assert not a.is_private
    assert np.array_equal(a.generator().random(4), b.generator().random(4))
    g1, g2 = a.generator(), a.generator()
    assert not np.array_equal(g1.random(4), g2.random(4))


def test_secure_source_gives_fresh_generators():
    src = NoiseSource.secure()
    assert src.is_private
    draws = {tuple(src.generator().integers(0, 2**62, size=2)) for _ in range(20)}
    assert len(draws) == 20


def test_non_finite_values_and_bad_parameters_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(PrivacyConfigError, match="values"):
        gaussian_mechanism(np.array([np.nan]), l2_sensitivity=1, noise_multiplier=1, rng=rng)
    with pytest.raises(PrivacyConfigError, match="l2_sensitivity"):
        gaussian_mechanism(np.zeros(2), l2_sensitivity=0, noise_multiplier=1, rng=rng)
    with pytest.raises(PrivacyConfigError, match="noise_multiplier"):
        gaussian_mechanism(np.zeros(2), l2_sensitivity=1, noise_multiplier=-1, rng=rng)
