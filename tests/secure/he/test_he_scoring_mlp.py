"""The optional quadratic-activation MLP scored on ciphertexts (N=16384, relinearisation keys)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from privehr.secure.he import (
    HeParameterError,
    LinearModel,
    PolyMlp,
    QueryBudget,
    ScoringClient,
    ScoringHost,
)

D, H = 6, 4


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(11)
    return PolyMlp(
        w1=rng.normal(0, 0.4, size=(H, D)),
        b1=rng.normal(0, 0.1, size=H),
        w2=rng.normal(0, 0.6, size=H),
        b2=-0.2,
        activation=(0.1, 0.5, 0.25),
    )


@pytest.fixture(scope="module")
def mlp_client(mlp):
    return ScoringClient.for_model("clinic-9", mlp)


def _host(mlp, client, limit=1000):
    host = ScoringHost(mlp, budget=QueryBudget(limit), rng=np.random.default_rng(2))
    host.register_site("clinic-9", client.public_context.data, client.public_context.sha256)
    return host


def test_mlp_scores_match_plaintext_and_other_slots_stay_empty(mlp, mlp_client):
    x = np.random.default_rng(3).normal(size=(50, D))
    response = _host(mlp, mlp_client).score(mlp_client.encrypt_features(x))
    slots = mlp_client.decrypt_all_slots(response)
    assert slots.shape == (1, 8192)
    assert np.max(np.abs(slots[0, :50] - mlp.logits(x))) < 1e-3
    assert np.max(np.abs(slots[0, 50:])) < 1e-4  # no hidden activation, no weight, no bias
    probs = mlp_client.decrypt_scores(response)
    assert np.max(np.abs(probs - expit(mlp.logits(x)))) < 1e-3


def test_mlp_host_refuses_a_client_without_depth_or_relin_keys(mlp):
    linear_client = ScoringClient("clinic-9")  # N=8192, one level, no relinearisation keys
    host = ScoringHost(mlp, budget=QueryBudget(10))
    with pytest.raises(HeParameterError) as info:
        host.register_site(
            "clinic-9", linear_client.public_context.data, linear_client.public_context.sha256
        )
    assert len(info.value.problems) == 2 and "for_model" in str(info.value)


def test_mlp_validation_and_plaintext_reference(mlp):
    with pytest.raises(HeParameterError, match="hidden width"):
        PolyMlp(w1=np.ones((3, D)), b1=np.ones(2), w2=np.ones(3), b2=0.0)
    x = np.ones((1, D))
    z = x @ mlp.w1.T + mlp.b1
    expected = (0.1 + 0.5 * z + 0.25 * z**2) @ mlp.w2 - 0.2
    np.testing.assert_allclose(mlp.logits(x), expected)
    assert ScoringClient.for_model("c", LinearModel(np.ones(2), 0.0)).slots == 4096
