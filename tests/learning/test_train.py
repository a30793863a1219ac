import numpy as np
import pytest
import torch

from privehr.learning._checks import InvalidParameterError
from privehr.learning.models import get_flat, make_model, set_flat
from privehr.learning.train import LocalTrainConfig, local_train, predict_proba


def _run(X, y, seed, **kw):
    m = make_model("mlp", X.shape[1], hidden=8, seed=0)
    kw = {"epochs": 2, "lr": 0.1, "batch_size": 32, **kw}
    info = local_train(m, X, y, generator=torch.Generator().manual_seed(seed), **kw)
    return m, info


def test_deterministic_for_generator_seed(data_small):
    X, y = data_small
    a, ia = _run(X, y, 11)
    b, ib = _run(X, y, 11)
    c, _ = _run(X, y, 12)
    assert np.array_equal(get_flat(a), get_flat(b)) and ia == ib
    assert not np.array_equal(get_flat(a), get_flat(c))


def test_independent_of_global_torch_rng(data_small):
    X, y = data_small
    torch.manual_seed(0)
    a, _ = _run(X, y, 11)
    torch.manual_seed(999)
    torch.rand(10)
    b, _ = _run(X, y, 11)
    assert np.array_equal(get_flat(a), get_flat(b))


def test_info_and_loss_decreases(data_small):
    X, y = data_small
    m = make_model("logreg", 6, seed=0)
    g = torch.Generator().manual_seed(0)
    first = local_train(m, X, y, epochs=1, lr=0.05, batch_size=50, generator=g)
    later = local_train(m, X, y, epochs=5, lr=0.05, batch_size=50, generator=g)
    assert first["steps"] == 8 and later["steps"] == 40 and first["n_examples"] == 400
    assert later["loss"] < first["loss"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_learns_signal(data_small, optimizer):
    X, y = data_small
    m = make_model("logreg", 6, seed=0)
    local_train(m, X, y, epochs=10, lr=0.05, batch_size=32, optimizer=optimizer,
                generator=torch.Generator().manual_seed(0))
    p = predict_proba(m, X)
    acc = float(((p >= 0.5) == y.numpy().astype(bool)).mean())
    assert acc > 0.75


def test_weight_decay_shrinks_weights(data_small):
    X, y = data_small
    plain, _ = _run(X, y, 0, epochs=5)
    decayed, _ = _run(X, y, 0, epochs=5, weight_decay=0.5)
    assert np.linalg.norm(get_flat(decayed)) < np.linalg.norm(get_flat(plain))


def test_fedprox_pulls_toward_global(data_small):
    X, y = data_small
    start = make_model("logreg", 6, seed=4)
    g0 = get_flat(start)
    dists = []
    for mu in (0.0, 1.0, 10.0):
        m = make_model("logreg", 6, seed=4)
        local_train(m, X, y, epochs=3, lr=0.05, batch_size=32, prox_mu=mu, global_params=g0,
                    generator=torch.Generator().manual_seed(0))
        dists.append(np.linalg.norm(get_flat(m) - g0))
    assert dists[0] > dists[1] > dists[2] > 0


def test_fedprox_default_anchor_is_start_weights(data_small):
    X, y = data_small
    a, _ = _run(X, y, 0, prox_mu=1.0)
    m = make_model("mlp", 6, hidden=8, seed=0)
    b, _ = _run(X, y, 0, prox_mu=1.0, global_params=get_flat(m))
    assert np.array_equal(get_flat(a), get_flat(b))


def test_fedprox_anchor_elsewhere_changes_update(data_small):
    X, y = data_small
    a, _ = _run(X, y, 0, prox_mu=1.0)
    m = make_model("mlp", 6, hidden=8, seed=0)
    far = get_flat(m) + 1.0
    b, _ = _run(X, y, 0, prox_mu=1.0, global_params=far)
    assert not np.allclose(get_flat(a), get_flat(b))
    # the anchor pulls the weights toward itself
    assert np.linalg.norm(get_flat(b) - far) < np.linalg.norm(get_flat(a) - far)


def test_validation_collects_problems(data_small):
    X, y = data_small
    m = make_model("logreg", 6, seed=0)
    with pytest.raises(InvalidParameterError) as err:
        local_train(m, X, y, epochs=0, lr=-1.0, batch_size=32, optimizer="rmsprop",
                    generator=torch.Generator())
    assert len(err.value.problems) == 3
    with pytest.raises(TypeError, match="torch.Generator"):
        local_train(m, X, y, epochs=1, lr=0.1, batch_size=32, generator=0)
    with pytest.raises(InvalidParameterError, match="binary"):
        local_train(m, X, y * 2, epochs=1, lr=0.1, batch_size=32, generator=torch.Generator())
    with pytest.raises(ValueError, match="global_params"):
        local_train(m, X, y, epochs=1, lr=0.1, batch_size=32, prox_mu=0.1,
                    global_params=np.zeros(3), generator=torch.Generator())


def test_config_roundtrip_and_kwargs(data_small):
    X, y = data_small
    cfg = LocalTrainConfig(epochs=2, lr=0.05, batch_size=16, prox_mu=0.1)
    assert LocalTrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown keys \\['lrr'\\]"):
        LocalTrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(InvalidParameterError, match="batch_size=0"):
        LocalTrainConfig(batch_size=0)
    m1 = make_model("logreg", 6, seed=0)
    m2 = make_model("logreg", 6, seed=0)
    local_train(m1, X, y, generator=torch.Generator().manual_seed(1), **cfg.kwargs())
    local_train(m2, X, y, epochs=2, lr=0.05, batch_size=16, prox_mu=0.1,
                generator=torch.Generator().manual_seed(1))
    assert np.array_equal(get_flat(m1), get_flat(m2))


def test_predict_proba_matches_sigmoid_and_restores_mode():
    m = make_model("logreg", 2, seed=0)
    set_flat(m, np.array([1.0, -2.0, 0.5], dtype=np.float32))
    m.train()
    X = np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    p = predict_proba(m, X)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-np.array([0.5, -0.5]))), rtol=1e-6)
    assert p.dtype == np.float64 and m.training


def test_torch_threads_restores_setting():
    from privehr.learning.train import torch_threads

    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"), torch_threads(0):
        pass
