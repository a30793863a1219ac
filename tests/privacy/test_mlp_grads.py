"""The closed-form MLP path against the Opacus reference (per-patient, clipped, whole runs)."""

import numpy as np
import pytest
import torch
from torch import nn

from privehr.learning.models import make_model
from privehr.privacy import mlp_grads
from privehr.privacy.calibration import dpsgd_event
from privehr.privacy.dpsgd import dp_sgd_local, pad_by_patient, per_patient_grads
from privehr.privacy.noise import NoiseSource


def padded(n_patients=30, d=12, max_rows=4, seed=0, dtype=torch.float64, scale=3.0):
    """Variable rows per patient (1..max_rows) and per-patient mean row weights (1/rows)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, max_rows + 1, size=n_patients)
    ids = np.repeat(np.arange(n_patients), rows)
    X = scale * rng.normal(size=(ids.size, d))
    y = (X[:, 0] + rng.normal(size=ids.size) > 0).astype(float)
    pp = pad_by_patient(X, y, ids, dtype=dtype)
    weights = pp.mask / pp.mask.sum(1, keepdim=True).clamp(min=1)
    return pp, weights


def relu_mlp(d, hidden=(16,), seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    mods, n_in = [], d
    for h in hidden:
        mods += [nn.Linear(n_in, h), nn.ReLU()]
        n_in = h
    return nn.Sequential(*mods, nn.Linear(n_in, 1)).to(dtype)


def clip(G, C):
    return G * torch.clamp(C / G.norm(dim=1), max=1.0)[:, None]


@pytest.mark.parametrize("max_rows, hidden", [(4, (16,)), (1, (16,)), (6, (8, 5)), (3, (40,))])
def test_per_patient_clipped_grads_equal_opacus(max_rows, hidden):
    pp, w = padded(max_rows=max_rows)
    model = relu_mlp(pp.Xp.shape[-1], hidden)
    ref = per_patient_grads(model, pp.Xp, w, pp.y, "opacus")
    new = per_patient_grads(model, pp.Xp, w, pp.y, "mlp")
    assert new.shape == ref.shape
    assert torch.allclose(new, ref, atol=1e-5, rtol=0)
    C = ref.norm(dim=1).median().item()  # about half the patients get clipped
    assert torch.allclose(clip(new, C), clip(ref, C), atol=1e-5, rtol=0)
    layers = mlp_grads.mlp_layers(model, pp.Xp)
    # Each patient alone: the clipped sum of a batch of one is that patient's clipped gradient.
    for b in range(pp.Xp.shape[0]):
        one, norm = mlp_grads.clipped_sum(layers, pp.Xp[b:b + 1], w[b:b + 1], pp.y[b:b + 1], C)
        assert torch.allclose(one, clip(ref, C)[b], atol=1e-5, rtol=0)
        assert norm.item() == pytest.approx(ref[b].norm().item(), abs=1e-5)
    summed, norms = mlp_grads.clipped_sum(layers, pp.Xp, w, pp.y, C)
    assert torch.allclose(summed, clip(ref, C).sum(0), atol=1e-5, rtol=0)
    assert torch.allclose(norms, ref.norm(dim=1), atol=1e-5, rtol=0)
    assert 0 < (norms > C).sum() < norms.numel()


def test_ghost_and_materialised_norms_agree():
    pp, w = padded(max_rows=5)
    model = relu_mlp(pp.Xp.shape[-1], (16,))
    inputs, grads = mlp_grads._backprops(mlp_grads.mlp_layers(model, pp.Xp), pp.Xp, w, pp.y)
    for a, g in zip(inputs, grads, strict=True):
        ghost = mlp_grads._sq_norm(a, g, ghost=True)
        full = mlp_grads._sq_norm(a, g, ghost=False)
        assert torch.allclose(ghost, full, atol=1e-9, rtol=1e-9)


def test_float32_make_model_agrees_with_opacus():
    pp, w = padded(n_patients=50, d=30, dtype=torch.float32, scale=1.0)
    model = make_model("mlp", 30, hidden=32, seed=1)
    ref = per_patient_grads(model, pp.Xp, w, pp.y, "opacus")
    new = per_patient_grads(model, pp.Xp, w, pp.y, "mlp")
    assert torch.allclose(new, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_whole_run_matches_opacus_path_and_charges_the_same_event(sigma):
    pp, w = padded(n_patients=60)
    models = {m: relu_mlp(pp.Xp.shape[-1]) for m in ("opacus", "mlp")}
    res = {m: dp_sgd_local(model, pp.Xp, w, pp.y, sampling_prob=0.3, noise_multiplier=sigma,
                           clip_norm=2.0, steps=8, lr=0.5, noise=NoiseSource.seeded_for_tests(3),
                           prox_mu=0.1, method=m)
           for m, model in models.items()}
    a, b = (torch.cat([p.detach().reshape(-1) for p in models[m].parameters()])
            for m in ("opacus", "mlp"))
    assert torch.allclose(a, b, atol=1e-6, rtol=0)
    assert res["mlp"].batch_sizes == res["opacus"].batch_sizes
    assert res["mlp"].clipped_fraction == pytest.approx(res["opacus"].clipped_fraction)
    assert 0 < res["mlp"].clipped_fraction < 1
    assert res["mlp"].nominal_event == res["opacus"].nominal_event == dpsgd_event(0.3, sigma, 8)
    assert res["mlp"].event == res["opacus"].event


def test_secure_run_reports_the_dpsgd_event():
    pp, w = padded(n_patients=20)
    r = dp_sgd_local(relu_mlp(pp.Xp.shape[-1]), pp.Xp, w, pp.y, sampling_prob=0.02,
                     noise_multiplier=1.3, clip_norm=1.0, steps=5, lr=0.1,
                     noise=NoiseSource.secure())
    assert r.method == "mlp" and r.private
    assert r.event == dpsgd_event(0.02, 1.3, 5)
    assert 0 in r.batch_sizes  # empty Poisson batches take the zero-gradient branch


class MyLinear(nn.Linear):
    pass


@pytest.mark.parametrize("build", [
    lambda d: nn.Sequential(nn.Linear(d, 4), nn.Tanh(), nn.Linear(4, 1)),
    lambda d: nn.Sequential(nn.Linear(d, 4), nn.ReLU(), nn.Linear(4, 2)),
    lambda d: nn.Sequential(nn.Linear(d, 4, bias=False), nn.ReLU(), nn.Linear(4, 1)),
    lambda d: nn.Sequential(MyLinear(d, 4), nn.ReLU(), nn.Linear(4, 1)),
    lambda d: nn.Sequential(nn.Linear(d, 4), nn.ReLU()),
    lambda d: nn.Linear(d, 1),
])
def test_only_plain_relu_mlps_take_the_closed_form(build):
    pp, _ = padded(n_patients=5, d=3)
    assert mlp_grads.mlp_layers(build(3).double(), pp.Xp) is None


def test_hooked_or_frozen_mlp_falls_back_to_opacus():
    pp, _ = padded(n_patients=5, d=3)
    hooked = relu_mlp(3, (4,))
    hooked[1].register_forward_hook(lambda m, i, o: o * 2)
    assert mlp_grads.mlp_layers(hooked, pp.Xp) is None
    frozen = relu_mlp(3, (4,))
    frozen[0].bias.requires_grad_(False)
    assert mlp_grads.mlp_layers(frozen, pp.Xp) is None
    assert mlp_grads.mlp_layers(relu_mlp(3, (4,)), pp.Xp) is not None
