import numpy as np
import pytest
import torch
from dp_accounting import dp_event as de
from torch import nn

from privehr.privacy.dpsgd import dp_sgd_local, pad_by_patient, per_patient_grads
from privehr.privacy.errors import PrivacyConfigError
from privehr.privacy.noise import NoiseSource


def encounter_data(n_patients=40, d=5, seed=0, max_rows=4):
    """Encounter-level rows: 1..max_rows rows per patient, shuffled."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, max_rows + 1, size=n_patients)
    ids = np.repeat(np.arange(n_patients) * 7 + 3, rows)
    X = rng.normal(size=(ids.size, d))
    y = (X[:, 0] + 0.5 * rng.normal(size=ids.size) > 0).astype(float)
    perm = rng.permutation(ids.size)
    return X[perm], y[perm], ids[perm]


def logreg(d, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(d, 1).double()


def mlp(d, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 1)).double()


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_pad_by_patient_groups_rows_and_masks_padding():
    X, y, ids = encounter_data()
    pp = pad_by_patient(X, y, ids)
    P, R, D = pp.Xp.shape
    assert np.unique(ids).size == P and X.shape[1] == D
    assert pp.mask.sum().item() == X.shape[0] and pp.rows_dropped == 0
    for slot, pid in enumerate(pp.patient_index):
        rows = X[ids == pid]
        n = rows.shape[0]
        assert np.allclose(pp.Xp[slot, :n].numpy(), rows, atol=1e-6)
        assert pp.mask[slot, :n].all() and not pp.mask[slot, n:].any()
        assert not pp.Xp[slot, n:].any()
    capped = pad_by_patient(X, y, ids, max_rows=2)
    assert capped.Xp.shape[1] == 2
    assert capped.rows_dropped == X.shape[0] - int(capped.mask.sum())


def test_pad_by_patient_validates_shapes():
    with pytest.raises(PrivacyConfigError, match="patient_ids"):
        pad_by_patient(np.zeros((3, 2)), np.zeros(3), np.zeros(2))


def test_opacus_per_patient_grads_equal_per_patient_autograd_for_mlp():
    X, y, ids = encounter_data(n_patients=12)
    pp = pad_by_patient(X, y, ids, dtype=torch.float64)
    model = mlp(X.shape[1])
    G = per_patient_grads(model, pp.Xp, pp.mask, pp.y, "opacus")
    for slot, pid in enumerate(pp.patient_index):
        model.zero_grad()
        xr = torch.as_tensor(X[ids == pid])
        loss = nn.functional.binary_cross_entropy_with_logits(
            model(xr).squeeze(-1), torch.as_tensor(y[ids == pid]), reduction="sum")
        loss.backward()
        ref = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        assert torch.allclose(G[slot], ref, atol=1e-10)
    assert not hasattr(model[0].weight, "grad_sample") or model[0].weight.grad_sample is None


def test_closed_form_logreg_agrees_with_opacus_on_same_batch():
    X, y, ids = encounter_data()
    pp = pad_by_patient(X, y, ids, dtype=torch.float64)
    model = logreg(X.shape[1])
    a = per_patient_grads(model, pp.Xp, pp.mask, pp.y, "logreg")
    b = per_patient_grads(model, pp.Xp, pp.mask, pp.y, "opacus")
    assert torch.allclose(a, b, atol=1e-6)


def run(model, pp, method, **kw):
    args = dict(sampling_prob=0.5, noise_multiplier=0.0, clip_norm=0.5, steps=5, lr=0.3,
                noise=NoiseSource.seeded_for_tests(1), method=method)
    args.update(kw)
    return dp_sgd_local(model, pp.Xp, pp.mask, pp.y, **args)


def test_logreg_and_opacus_paths_give_same_update_with_noise_off():
    X, y, ids = encounter_data()
    pp = pad_by_patient(X, y, ids, dtype=torch.float64)
    m1, m2 = logreg(X.shape[1]), logreg(X.shape[1])
    r1, r2 = run(m1, pp, "logreg"), run(m2, pp, "opacus")
    assert r1.batch_sizes == r2.batch_sizes
    assert r1.method == "logreg" and r2.method == "opacus"
    assert torch.allclose(flat(m1), flat(m2), atol=1e-6)
    assert r1.clipped_fraction == pytest.approx(r2.clipped_fraction)
    assert r1.clipped_fraction > 0


def test_auto_picks_closed_forms_only_for_logreg_and_relu_mlp():
    X, y, ids = encounter_data(n_patients=10)
    pp = pad_by_patient(X, y, ids, dtype=torch.float64)
    assert run(logreg(X.shape[1]), pp, "auto", steps=1).method == "logreg"
    assert run(mlp(X.shape[1]), pp, "auto", steps=1).method == "mlp"
    torch.manual_seed(0)
    tanh = nn.Sequential(nn.Linear(X.shape[1], 8), nn.Tanh(), nn.Linear(8, 1)).double()
    assert run(tanh, pp, "auto", steps=1).method == "opacus"
    with pytest.raises(PrivacyConfigError, match="logistic"):
        run(mlp(X.shape[1]), pp, "logreg", steps=1)
    with pytest.raises(PrivacyConfigError, match="MLP"):
        run(tanh, pp, "mlp", steps=1)


@pytest.mark.parametrize("method", ["logreg", "opacus", "mlp"])
def test_patient_with_many_rows_is_clipped_as_one_unit(method):
    # One patient, five identical large rows: row-level clipping would allow 5 C.
    X = np.tile(np.array([[30.0, -20.0, 10.0]]), (5, 1))
    pp = pad_by_patient(X, np.zeros(5), np.zeros(5), dtype=torch.float64)
    model = logreg(3) if method == "logreg" else mlp(3)
    with torch.no_grad():  # residual 0.5 on every row: the patient's gradient is large
        for p in model.parameters():
            p.zero_() if method == "logreg" else None
    before = flat(model).clone()
    run(model, pp, method, sampling_prob=1.0, steps=1, lr=1.0, clip_norm=0.7)
    step = (flat(model) - before).norm().item()
    assert step <= 0.7 + 1e-9
    assert step == pytest.approx(0.7, rel=1e-6)  # it was clipped, not tiny


@pytest.mark.parametrize("method", ["logreg", "opacus", "mlp"])
def test_clipped_sum_is_bounded_per_patient(method):
    X, y, ids = encounter_data(n_patients=30)
    pp = pad_by_patient(X * 10, y, ids, dtype=torch.float64)
    model = logreg(X.shape[1]) if method == "logreg" else mlp(X.shape[1])
    G = per_patient_grads(model, pp.Xp, pp.mask, pp.y, method)
    assert (G.norm(dim=1) > 0.5).sum() > 10  # most need clipping
    before = flat(model).clone()
    res = run(model, pp, method, sampling_prob=1.0, steps=1, lr=1.0, clip_norm=0.5)
    P = pp.Xp.shape[0]
    factors = torch.clamp(0.5 / G.norm(dim=1), max=1.0)
    expected = -(G * factors[:, None]).sum(0) / P
    assert torch.allclose(flat(model) - before, expected, atol=1e-9)
    assert res.clipped_fraction == pytest.approx((G.norm(dim=1) > 0.5).float().mean().item())


def test_poisson_batch_sizes_vary_around_q_times_patients():
    X, y, ids = encounter_data(n_patients=200, d=3)
    pp = pad_by_patient(X, y, ids)
    res = dp_sgd_local(nn.Linear(3, 1), pp.Xp, pp.mask, pp.y, sampling_prob=0.1,
                       noise_multiplier=1.0, clip_norm=1.0, steps=60, lr=0.1,
                       noise=NoiseSource.secure())
    sizes = np.array(res.batch_sizes)
    assert len(set(sizes.tolist())) > 5
    assert abs(sizes.mean() - 20) < 5 * np.sqrt(200 * 0.1 * 0.9 / 60)
    assert res.mean_batch == pytest.approx(sizes.mean())
    assert res.private
    assert res.event == de.SelfComposedDpEvent(
        de.PoissonSampledDpEvent(0.1, de.GaussianDpEvent(1.0)), 60)


def test_seeded_noise_or_zero_multiplier_is_reported_non_private():
    X, y, ids = encounter_data(n_patients=10)
    pp = pad_by_patient(X, y, ids, dtype=torch.float64)
    r = run(logreg(X.shape[1]), pp, "logreg", noise_multiplier=1.0)
    assert isinstance(r.event, de.NonPrivateDpEvent) and not r.private
    assert isinstance(r.nominal_event, de.SelfComposedDpEvent)
    r = dp_sgd_local(logreg(X.shape[1]), pp.Xp, pp.mask, pp.y, sampling_prob=0.5,
                     noise_multiplier=0.0, clip_norm=1.0, steps=1, lr=0.1,
                     noise=NoiseSource.secure())
    assert isinstance(r.event, de.NonPrivateDpEvent)


def test_noise_changes_the_update_with_the_calibrated_scale():
    X, y, ids = encounter_data(n_patients=50)
    pp = pad_by_patient(X, y, ids, dtype=torch.float64)
    base = logreg(X.shape[1])
    run(base, pp, "logreg", steps=1, lr=1.0, sampling_prob=1.0)
    diffs = []
    for seed in range(60):
        m = logreg(X.shape[1])
        run(m, pp, "logreg", steps=1, lr=1.0, sampling_prob=1.0, noise_multiplier=2.0,
            noise=NoiseSource.seeded_for_tests(seed))
        diffs.append((flat(m) - flat(base)).numpy())
    diffs = np.stack(diffs)  # noise / expected batch: std = sigma * C / (q P)
    expected_std = 2.0 * 0.5 / 50
    assert diffs.std() == pytest.approx(expected_std, rel=0.15)


@pytest.mark.parametrize("method", ["logreg", "opacus", "mlp"])
def test_fedprox_gradient_is_added_after_noise_and_changes_update(method):
    X, y, ids = encounter_data(n_patients=20)
    pp = pad_by_patient(X, y, ids, dtype=torch.float64)
    make = logreg if method == "logreg" else mlp
    anchor = [p.detach() + 0.3 for p in make(X.shape[1]).parameters()]
    m0, m1 = make(X.shape[1]), make(X.shape[1])
    start = flat(m0).clone()
    kw = dict(steps=1, lr=0.5, noise_multiplier=3.0, global_params=anchor)
    run(m0, pp, method, prox_mu=0.0, **kw)
    run(m1, pp, method, prox_mu=0.4, **kw)  # same seed: same batch and same noise
    anchor_flat = torch.cat([a.reshape(-1) for a in anchor])
    assert not torch.allclose(flat(m0), flat(m1))
    assert torch.allclose(flat(m1) - flat(m0), -0.5 * 0.4 * (start - anchor_flat), atol=1e-9)


def test_dp_sgd_learns_something_at_moderate_noise():
    X, y, ids = encounter_data(n_patients=400, d=4, seed=3)
    pp = pad_by_patient(X, y, ids)
    model = nn.Linear(4, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    dp_sgd_local(model, pp.Xp, pp.mask, pp.y, sampling_prob=0.2, noise_multiplier=1.0,
                 clip_norm=1.0, steps=60, lr=0.5, noise=NoiseSource.seeded_for_tests(0))
    assert model.weight[0, 0].item() > 0.3  # the informative feature
    assert model.weight[0, 0].item() > abs(model.weight[0, 1:]).max().item()


@pytest.mark.parametrize("kwargs, field", [
    (dict(sampling_prob=0.0), "sampling_prob"), (dict(clip_norm=0.0), "clip_norm"),
    (dict(steps=0), "steps"), (dict(noise_multiplier=-1.0), "noise_multiplier"),
    (dict(prox_mu=-0.1), "prox_mu"), (dict(noise=None), "noise"),
])
def test_invalid_settings_name_the_field(kwargs, field):
    X, y, ids = encounter_data(n_patients=5)
    pp = pad_by_patient(X, y, ids, dtype=torch.float64)
    with pytest.raises(PrivacyConfigError) as err:
        run(logreg(X.shape[1]), pp, "logreg", **kwargs)
    assert err.value.field == field
