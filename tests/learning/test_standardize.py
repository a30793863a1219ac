import numpy as np
import pytest

from privehr.learning._checks import InvalidParameterError
from privehr.learning.standardize import Standardizer, SufficientStats


def _sites(seed=0):
    rng = np.random.default_rng(seed)
    sizes = (13, 250, 1, 77)
    return [rng.normal(loc=[5.0, -3.0, 100.0, 0.0], scale=[1.0, 0.1, 20.0, 3.0],
                       size=(n, 4)) for n in sizes]


def test_summed_stats_equal_pooled_mean_std():
    sites = _sites()
    total = sum(SufficientStats.from_matrix(X) for X in sites)
    pooled = np.vstack(sites)
    st = Standardizer.from_stats(total)
    assert total.count == pooled.shape[0]
    np.testing.assert_allclose(st.mean, pooled.mean(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(st.scale, pooled.std(axis=0), rtol=1e-6)
    Z = st.transform(pooled)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, atol=1e-6)


def test_addition_is_order_free_and_serialisable():
    a, b, c, _ = (SufficientStats.from_matrix(X) for X in _sites(1))
    s1, s2 = (a + b) + c, c + (b + a)
    np.testing.assert_allclose(s1.sum, s2.sum)
    back = SufficientStats.from_dict(s1.to_dict())
    assert back == s1 and back != a


def test_constant_column_is_safe():
    X = np.column_stack([np.full(10, 3.7), np.arange(10.0)])
    st = Standardizer.from_stats(SufficientStats.from_matrix(X))
    Z = st.transform(X)
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(Z[:, 0], 0.0, atol=1e-12)
    assert st.scale[0] == 1.0


def test_mismatched_and_invalid_inputs():
    a = SufficientStats.from_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="same features"):
        a + SufficientStats.from_matrix(np.zeros((2, 4)))
    with pytest.raises(InvalidParameterError, match="impute"):
        SufficientStats.from_matrix(np.array([[np.nan, 1.0]]))
    with pytest.raises(InvalidParameterError, match="stats.count=0"):
        Standardizer.from_stats(SufficientStats.from_matrix(np.zeros((0, 3))))
    st = Standardizer.from_stats(a)
    with pytest.raises(ValueError, match="fitted on 3"):
        st.transform(np.zeros((1, 2)))
    assert not a.sum.flags.writeable
