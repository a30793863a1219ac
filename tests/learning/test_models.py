import numpy as np
import pytest
import torch

from privehr.learning._checks import InvalidParameterError
from privehr.learning.models import (
    Estimator,
    NotFittedError,
    get_flat,
    make_model,
    n_params,
    set_flat,
)


@pytest.mark.parametrize("kind,expected", [("logreg", 7), ("mlp", 6 * 4 + 4 + 4 + 1)])
def test_shapes_and_param_count(kind, expected):
    m = make_model(kind, 6, hidden=4, seed=0)
    assert n_params(m) == expected
    assert get_flat(m).shape == (expected,)
    assert get_flat(m).dtype == np.float32
    assert m(torch.zeros(5, 6)).shape == (5, 1)


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = make_model("mlp", 8, seed=7)
    b = make_model("mlp", 8, seed=7)
    c = make_model("mlp", 8, seed=8)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert np.array_equal(get_flat(a), get_flat(b))
    assert not np.array_equal(get_flat(a), get_flat(c))


def test_flat_roundtrip_and_copy_semantics():
    m = make_model("mlp", 3, hidden=5, seed=1)
    v = get_flat(m)
    v2 = np.arange(v.size, dtype=np.float32)
    set_flat(m, v2)
    assert np.array_equal(get_flat(m), v2)
    v2[0] = 99.0  # the model must not alias the caller's array
    assert get_flat(m)[0] == 0.0
    out = get_flat(m)
    out[1] = -5.0  # nor the returned copy
    assert get_flat(m)[1] == 1.0


def test_set_flat_rejects_wrong_length_and_nan():
    m = make_model("logreg", 3, seed=0)
    with pytest.raises(InvalidParameterError, match="len\\(vec\\)=5"):
        set_flat(m, np.zeros(5))
    with pytest.raises(InvalidParameterError, match="NaN"):
        set_flat(m, np.array([0, 0, np.nan, 0]))


def test_make_model_reports_all_problems_at_once():
    with pytest.raises(InvalidParameterError) as err:
        make_model("tree", 0, hidden=-1, seed=0)  # type: ignore[arg-type]
    assert len(err.value.problems) == 3
    assert "kind='tree'" in str(err.value) and "n_features=0" in str(err.value)


def test_estimator_sklearn_habits(data_small):
    X, y = data_small
    est = Estimator("logreg", epochs=5, lr=0.1, seed=0)
    assert not any(k.endswith("_") for k in vars(est))  # __init__ only stores params
    with pytest.raises(NotFittedError, match="call fit\\(X, y\\)"):
        est.predict_proba(X)
    assert est.fit(X.numpy(), y.numpy()) is est
    assert est.n_features_in_ == 6 and est.history_["steps"] > 0
    p = est.predict_proba(X.numpy())
    assert p.shape == (400,) and ((p > 0) & (p < 1)).all()
    # fitting twice from the same seed is reproducible
    again = Estimator("logreg", epochs=5, lr=0.1, seed=0).fit(X, y)
    assert np.array_equal(est.parameters(), again.parameters())


def test_estimator_set_parameters_then_warm_start(data_small):
    X, y = data_small
    src = Estimator("logreg", epochs=3, seed=1).fit(X, y)
    est = Estimator("logreg", n_features=6, epochs=1, seed=5, warm_start=True)
    est.set_parameters(src.parameters())
    np.testing.assert_array_equal(est.predict_proba(X), src.predict_proba(X))
    est.fit(X, y)  # continues from src's weights, so stays close to them
    cold = Estimator("logreg", epochs=1, seed=5).fit(X, y)
    d_warm = np.linalg.norm(est.parameters() - src.parameters())
    d_cold = np.linalg.norm(cold.parameters() - src.parameters())
    assert d_warm < d_cold


def test_estimator_set_parameters_without_n_features_names_fix():
    with pytest.raises(NotFittedError, match="n_features"):
        Estimator("logreg").set_parameters(np.zeros(3))


def test_estimator_rejects_wrong_feature_count(data_small):
    X, y = data_small
    est = Estimator("logreg", epochs=1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="X.shape\\[1\\]=3"):
        est.predict_proba(np.zeros((2, 3)))


def test_estimator_predict_thresholds(data_small):
    X, y = data_small
    est = Estimator("logreg", epochs=3).fit(X, y)
    p = est.predict_proba(X)
    assert np.array_equal(est.predict(X), (p >= 0.5).astype(int))
    assert est.predict(X, threshold=0.0).all()
