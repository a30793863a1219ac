"""Contract with privehr.privacy: our models must stay usable by Opacus DP-SGD unchanged."""

import pytest
import torch

from privehr.learning.models import make_model


@pytest.mark.slow  # importing opacus alone takes ~2-7 s on the shared machine
@pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning")
@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_opacus_validates_and_per_sample_grads_are_exact(kind):
    from opacus import GradSampleModule
    from opacus.validators import ModuleValidator

    model = make_model(kind, 5, hidden=7, seed=0)
    assert ModuleValidator.validate(model, strict=False) == []
    X = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0]).reshape(-1, 1)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")

    expected = []
    for i in range(6):
        model.zero_grad()
        loss_fn(model(X[i : i + 1]), y[i : i + 1]).backward()
        expected.append([p.grad.clone() for p in model.parameters()])

    gsm = GradSampleModule(make_model(kind, 5, hidden=7, seed=0), loss_reduction="sum")
    loss_fn(gsm(X), y).backward()
    for j, p in enumerate(gsm.parameters()):
        for i in range(6):
            torch.testing.assert_close(p.grad_sample[i], expected[i][j], rtol=1e-5, atol=1e-6)
