import numpy as np
import pytest
from scipy import stats

from privehr.privacy.discrete import sample_discrete_gaussian
from privehr.privacy.errors import PrivacyConfigError


def exact_pmf(sigma, support):
    w = np.exp(-(support.astype(float) ** 2) / (2 * sigma**2))
    return w / w.sum()


@pytest.mark.parametrize("sigma", [0.7, 3.0, 40.0])
def test_mean_variance_symmetry(sigma):
    z = sample_discrete_gaussian(sigma, 100_000, np.random.default_rng(11))
    assert z.dtype == np.int64 and z.shape == (100_000,)
    k = np.arange(-int(20 * sigma) - 5, int(20 * sigma) + 6)
    pmf = exact_pmf(sigma, k)
    var = float((pmf * k**2).sum())
    se_var = np.sqrt(float((pmf * k**4).sum()) - var**2) / np.sqrt(z.size)
    assert abs(z.var() - var) < 5 * se_var
    assert abs(z.mean()) < 5 * np.sqrt(var / z.size)
    pos, neg = (z > 0).sum(), (z < 0).sum()
    assert abs(pos - neg) < 5 * np.sqrt(pos + neg)


def test_pmf_goodness_of_fit_small_sigma():
    sigma = 1.5
    z = sample_discrete_gaussian(sigma, 100_000, np.random.default_rng(5))
    k = np.arange(-6, 7)
    pmf = exact_pmf(sigma, np.arange(-30, 31))[24:37]
    observed = np.array([(z == v).sum() for v in k])
    expected = pmf * z.size
    assert observed.sum() > z.size - 20  # mass beyond |6| is ~1e-4
    chi2 = (((observed - expected) ** 2) / expected).sum()
    assert stats.chi2.sf(chi2, df=len(k) - 1) > 1e-4


def test_zero_sigma_and_empty():
    rng = np.random.default_rng(0)
    assert not sample_discrete_gaussian(0.0, 5, rng).any()
    assert sample_discrete_gaussian(2.0, 0, rng).shape == (0,)


@pytest.mark.parametrize("kwargs", [dict(sigma=-1.0), dict(sigma=float("nan")),
                                    dict(size=-3), dict(rng=np.random.RandomState(0))])
def test_bad_arguments_are_named(kwargs):
    args = dict(sigma=1.0, size=3, rng=np.random.default_rng(0))
    args.update(kwargs)
    with pytest.raises(PrivacyConfigError) as err:
        sample_discrete_gaussian(**args)
    assert next(iter(kwargs)) in str(err.value)
