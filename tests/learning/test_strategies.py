import numpy as np
import pytest
import torch

from privehr.evaluation.metrics import auroc
from privehr.learning._checks import InvalidParameterError
from privehr.learning.models import get_flat, make_model, set_flat
from privehr.learning.strategies import (
    FedAdam,
    FedAvgM,
    NoServerOpt,
    ServerOptimizer,
    fedadam_strategy,
    fedavg,
    fedavg_from_sum,
    fedavgm_strategy,
    fedprox_strategy,
)
from privehr.learning.train import LocalTrainConfig, local_train, predict_proba


def test_fedavg_weighted_by_counts():
    d1, d2 = np.array([1.0, 0.0]), np.array([0.0, 4.0])
    np.testing.assert_allclose(fedavg([d1, d2], [3, 1]), [0.75, 1.0])
    np.testing.assert_allclose(fedavg_from_sum(3 * d1 + 1 * d2, 4), [0.75, 1.0])


def test_fedavg_validation():
    with pytest.raises(InvalidParameterError, match="len\\(weights\\)"):
        fedavg([np.zeros(2)], [1, 2])
    with pytest.raises(ValueError, match="different shapes"):
        fedavg([np.zeros(2), np.zeros(3)], [1, 1])
    with pytest.raises(InvalidParameterError, match="total_weight"):
        fedavg([np.zeros(2)], [0])
    with pytest.raises(ValueError, match="NaN"):
        fedavg([np.array([np.nan, 0.0])], [1])


def _federated_round(global_vec, sites, cfg, seeds, kind="logreg", d=6):
    deltas, weights = [], []
    for (X, y), s in zip(sites, seeds, strict=True):
        m = make_model(kind, d, seed=0)
        set_flat(m, global_vec)
        local_train(m, X, y, generator=torch.Generator().manual_seed(s),
                    global_params=global_vec, **cfg.kwargs())
        deltas.append(get_flat(m) - global_vec)
        weights.append(X.shape[0])
    return fedavg(deltas, weights)


def test_fedavg_one_site_equals_local_training(data_small):
    X, y = data_small
    cfg = LocalTrainConfig(epochs=1, lr=0.1, batch_size=32)
    opt = NoServerOpt()
    state = opt.initialize()
    global_vec = get_flat(make_model("mlp", 6, seed=0))
    local = make_model("mlp", 6, seed=0)
    g_local = torch.Generator().manual_seed(42)
    g_fed = torch.Generator().manual_seed(42)
    for _ in range(3):  # the same generator continues across rounds in both runs
        local_train(local, X, y, generator=g_local, **cfg.kwargs())
        m = make_model("mlp", 6, seed=0)
        set_flat(m, global_vec)
        local_train(m, X, y, generator=g_fed, **cfg.kwargs())
        delta = fedavg([get_flat(m) - global_vec], [X.shape[0]])
        state, global_vec = opt.next(state, global_vec, delta)
    assert state.round == 3
    np.testing.assert_allclose(global_vec, get_flat(local), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def central_reference():
    """Train/test split of one logistic draw and the centralised model's test AUROC."""
    from privehr.learning.train import torch_threads

    rng = np.random.default_rng(7)
    w = rng.normal(size=10)
    X_all = rng.normal(size=(6000, 10)).astype(np.float32)
    p_true = 1.0 / (1.0 + np.exp(-(X_all @ w * 0.8 - 0.5)))
    y_all = (rng.random(6000) < p_true).astype(np.float32)
    X, y = torch.from_numpy(X_all[:4000]), torch.from_numpy(y_all[:4000])
    Xte, yte = torch.from_numpy(X_all[4000:]), y_all[4000:]
    with torch_threads(1):
        central = make_model("logreg", 10, seed=0)
        g = torch.Generator().manual_seed(0)
        for _ in range(10):
            local_train(central, X, y, generator=g, epochs=1, lr=0.05, batch_size=32)
        auc_central = auroc(yte, predict_proba(central, Xte))
        untrained = auroc(yte, predict_proba(make_model("logreg", 10, seed=0), Xte))
    assert auc_central > 0.75 and auc_central - untrained > 0.1  # the task is learnable
    return X, y, Xte, yte, auc_central


def _run_federation(sites, opt, cfg, rounds=10):
    state = opt.initialize()
    global_vec = get_flat(make_model("logreg", 10, seed=0))
    for r in range(rounds):
        delta = _federated_round(global_vec, sites, cfg, seeds=[100 * r + k for k in range(4)],
                                 d=10)
        state, global_vec = opt.next(state, global_vec, delta)
    fed = make_model("logreg", 10, seed=0)
    set_flat(fed, global_vec)
    assert state.round == rounds
    return fed


def test_fedavg_iid_reaches_centralised_auroc(central_reference):
    X, y, Xte, yte, auc_central = central_reference
    sites = [(X[i::4], y[i::4]) for i in range(4)]
    fed = _run_federation(sites, NoServerOpt(), LocalTrainConfig(epochs=1, lr=0.05, batch_size=32))
    assert abs(auroc(yte, predict_proba(fed, Xte)) - auc_central) < 0.02


@pytest.mark.parametrize(
    "opt,mu",
    [(NoServerOpt(), 0.1), (FedAvgM(momentum=0.9, lr=1.0), 0.0), (FedAdam(lr=0.1), 0.0)],
    ids=["fedprox", "fedavgm", "fedadam"],
)
def test_non_iid_sites_reach_centralised_auroc(central_reference, opt, mu):
    X, y, Xte, yte, auc_central = central_reference
    # feature-skewed sites: each holds one quarter of the range of feature 0
    order = np.argsort(X[:, 0].numpy())
    sites = [(X[idx], y[idx]) for idx in np.array_split(order, 4)]
    cfg = LocalTrainConfig(epochs=1, lr=0.05, batch_size=32, prox_mu=mu)
    fed = _run_federation(sites, opt, cfg)
    assert abs(auroc(yte, predict_proba(fed, Xte)) - auc_central) < 0.02


def _quadratic_run(opt: ServerOptimizer, rounds: int, target: np.ndarray):
    """Toy problem: each 'site' returns delta = 0.5 * (target - w) (one local GD step)."""
    state = opt.initialize()
    w = np.zeros_like(target, dtype=np.float32)
    history = []
    for _ in range(rounds):
        delta = 0.5 * (target - w)
        state, w = opt.next(state, w, delta)
        history.append(np.linalg.norm(w - target))
    return state, w, history


@pytest.mark.parametrize("opt", [NoServerOpt(), FedAvgM(momentum=0.5, lr=1.0),
                                 FedAdam(lr=0.1, tau=1e-3)])
def test_server_optimizers_converge_on_toy(opt):
    target = np.array([1.0, -2.0, 0.5, 3.0])
    state, w, hist = _quadratic_run(opt, 200, target)
    assert state.round == 200
    assert hist[-1] < 1e-2 * np.linalg.norm(target)
    assert isinstance(opt, ServerOptimizer)


def test_fedavgm_state_evolves_and_zero_momentum_is_fedavg():
    g = np.array([0.0, 0.0])
    d = np.array([1.0, -1.0])
    opt = FedAvgM(momentum=0.9, lr=1.0)
    s1, w1 = opt.next(opt.initialize(), g, d)
    s2, w2 = opt.next(s1, w1, d)
    np.testing.assert_allclose(s1.m, d)
    np.testing.assert_allclose(s2.m, 1.9 * d)
    np.testing.assert_allclose(w2, w1 + 1.9 * d)
    assert not s2.m.flags.writeable
    plain = NoServerOpt(lr=0.7)
    zero = FedAvgM(momentum=0.0, lr=0.7)
    np.testing.assert_array_equal(plain.next(plain.initialize(), g, d)[1],
                                  zero.next(zero.initialize(), g, d)[1])


def test_fedadam_first_step_by_hand():
    opt = FedAdam(lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    g = np.array([1.0, 2.0])
    d = np.array([0.2, -0.4])
    state, new = opt.next(opt.initialize(), g, d)
    # m = 0.1 d, v = 0.01 d^2, step = 0.1 * 0.1 d / (0.1 |d| + 1e-3)
    expected = g + 0.1 * 0.1 * d / (0.1 * np.abs(d) + 1e-3)
    np.testing.assert_allclose(new, expected, rtol=1e-6)
    np.testing.assert_allclose(state.v, 0.01 * d * d)
    state2, _ = opt.next(state, new, d)
    np.testing.assert_allclose(state2.m, 0.9 * 0.1 * d + 0.1 * d)
    assert state2.round == 2


def test_server_opt_rejects_shape_mismatch():
    opt = FedAdam()
    state, _ = opt.next(opt.initialize(), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="initialize\\(\\)"):
        opt.next(state, np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match="same model"):
        NoServerOpt().next(NoServerOpt().initialize(), np.zeros(3), np.ones(2))
    with pytest.raises(InvalidParameterError, match="momentum"):
        FedAvgM(momentum=1.0)


def test_presets():
    base = LocalTrainConfig(epochs=2, lr=0.01)
    prox = fedprox_strategy(0.1, base)
    assert prox.client.prox_mu == 0.1 and prox.client.epochs == 2 and base.prox_mu == 0.0
    assert isinstance(prox.server, NoServerOpt)
    assert isinstance(fedavgm_strategy(momentum=0.5).server, FedAvgM)
    assert fedadam_strategy(server_lr=0.3).server.lr == 0.3
