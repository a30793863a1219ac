from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from privehr.secure.he.backend import default_backend
from privehr.secure.he.errors import (
    CiphertextError,
    HeError,
    HeParameterError,
    QueryBudgetExceededError,
)
from privehr.secure.he.inference import (
    LinearModel,
    QueryBudget,
    ScoringClient,
    ScoringHost,
    score_encrypted,
    scores_frame,
)
from privehr.secure.he.payloads import ScoringRequest, ScoringResponse

D = 12
SLOTS = 4096


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    return rng.normal(0.0, 0.8, size=D), 0.7


@pytest.fixture(scope="module")
def client():
    return ScoringClient("clinic-7")


def _host(model, client, limit=100_000, **kw):
    host = ScoringHost(
        LinearModel(*model), budget=QueryBudget(limit), rng=np.random.default_rng(0), **kw
    )
    host.register_site("clinic-7", client.public_context.data, client.public_context.sha256)
    return host


def _features(n, seed=0):
    return np.random.default_rng(seed).normal(0.0, 1.0, size=(n, D))


def test_scores_match_plaintext_within_1e_3_in_input_order(model, client):
    w, b = model
    x = _features(300)
    host = _host(model, client)
    response = host.score(client.encrypt_features(x).to_payload())
    probs = client.decrypt_scores(ScoringResponse.from_payload(response.to_payload()))
    expected = expit(x @ w + b)
    assert probs.shape == (300,)
    assert np.max(np.abs(probs - expected)) < 1e-3
    assert np.max(np.abs(client.decrypt_logits(response) - (x @ w + b))) < 1e-3


def test_every_slot_of_the_returned_ciphertext_holds_only_the_scores(model, client):
    w, b = model
    n = 37
    x = _features(n, seed=1)
    response = _host(model, client).score(client.encrypt_features(x))
    slots = client.decrypt_all_slots(response)
    assert slots.shape == (1, SLOTS)  # the whole ciphertext, not just the declared values
    np.testing.assert_allclose(slots[0, :n], x @ w + b, atol=1e-3)
    # every other slot is CKKS/flooding noise around 0: no partial sums, no bias, no weight
    assert np.max(np.abs(slots[0, n:])) < 1e-4
    assert np.max(np.abs(w)) > 0.1 and abs(b) > 0.1  # they would be visible if leaked


def test_the_slot_check_detects_an_unmasked_evaluation(model, client):
    """Canary: without the mask, the padding slots reveal the bias (the check above can fail)."""
    w, b = model
    be = default_backend()
    request = client.encrypt_features(_features(5, seed=2))
    ctx = be.load_context(client.public_context.data)
    cts = [be.ciphertext_from_bytes(ctx, c) for c in request.batches[0]]
    acc = be.multiply_plain(cts[0], np.full(SLOTS, w[0]))
    for j in range(1, D):
        acc = be.add(acc, be.multiply_plain(cts[j], np.full(SLOTS, w[j])))
    acc = be.add_plain(acc, np.full(SLOTS, b))
    leaky = ScoringResponse(5, (be.ciphertext_to_bytes(acc),))
    slots = client.decrypt_all_slots(leaky)
    assert np.max(np.abs(slots[0, 5:] - b)) < 1e-3  # the bias sits in every padding slot


def test_patients_beyond_one_ciphertext_are_batched(model, client):
    w, b = model
    n = SLOTS + 5
    x = _features(n, seed=4)
    host = _host(model, client)
    request = client.encrypt_features(x)
    assert len(request.batches) == 2 and all(len(batch) == D for batch in request.batches)
    response = host.score(request)
    assert len(response.chunks) == 2
    assert np.max(np.abs(client.decrypt_logits(response) - (x @ w + b))) < 1e-3
    assert np.max(np.abs(client.decrypt_all_slots(response)[1, 5:])) < 1e-4
    assert host.budget.used["clinic-7"] == n


def test_query_budget_is_charged_and_enforced(model, client):
    host = _host(model, client, limit=50)
    host.score(client.encrypt_features(_features(30)))
    assert host.budget.remaining("clinic-7") == 20
    with pytest.raises(QueryBudgetExceededError, match="20 of its 50 left"):
        host.score(client.encrypt_features(_features(21)))
    assert host.budget.used["clinic-7"] == 30  # a refused request charges nothing
    host.score(client.encrypt_features(_features(20)))
    with pytest.raises(QueryBudgetExceededError):
        host.score(client.encrypt_features(_features(1)))
    restored = QueryBudget.from_dict(host.budget.to_dict())
    assert restored.remaining("clinic-7") == 0


def test_responses_are_rerandomised(model, client):
    host = _host(model, client)
    request = client.encrypt_features(_features(3))
    first, second = host.score(request), host.score(request)
    assert first.chunks[0] != second.chunks[0]
    np.testing.assert_allclose(
        client.decrypt_logits(first), client.decrypt_logits(second), atol=1e-4
    )


def test_host_refuses_unknown_sites_wrong_shapes_and_foreign_contexts(model, client):
    host = _host(model, client)
    request = client.encrypt_features(_features(4))
    with pytest.raises(HeParameterError, match="not registered"):
        host.score(ScoringRequest(**{**request.__dict__, "site_id": "stranger"}))
    with pytest.raises(HeParameterError, match="n_features"):
        host.score(ScoringRequest(**{**request.__dict__, "n_features": D + 1}))
    other = ScoringClient("clinic-7")
    with pytest.raises(HeParameterError, match="another context"):
        host.score(other.encrypt_features(_features(4)))
    short = ScoringRequest(**{**request.__dict__, "batches": ((request.batches[0][0][:50],)
                                                            + request.batches[0][1:],)})
    with pytest.raises(CiphertextError):
        host.score(short)
    assert host.budget.used.get("clinic-7", 0) == 0


def test_register_refuses_a_context_with_a_secret_key(model, client):
    secret = client._backend.serialize_context(client._ctx, secret_key=True)
    from privehr.secure.he.ceremony import sha256_hex

    host = ScoringHost(LinearModel(*model), budget=QueryBudget(10))
    with pytest.raises(HeError, match="SECRET"):
        host.register_site("clinic-7", secret, sha256_hex(secret))


def test_host_and_model_settings_are_validated(model):
    with pytest.raises(HeParameterError) as info:
        LinearModel(np.array([np.nan]), float("inf"))
    assert len(info.value.problems) == 2
    with pytest.raises(HeParameterError) as info:
        ScoringHost((1.0, 2.0), budget=QueryBudget(1), flood_sigma=0.0)
    assert len(info.value.problems) == 2 and "LinearModel" in str(info.value)
    with pytest.raises(HeParameterError, match="limit_per_site"):
        QueryBudget(0)


def test_score_encrypted_end_to_end(model):
    w, b = model
    x = _features(64, seed=9)
    probs, stats = score_encrypted(x, LinearModel(w, b), rng=np.random.default_rng(1))
    assert np.max(np.abs(probs - expit(x @ w + b))) < 1e-3
    assert stats.n_patients == 64 and stats.request_bytes > stats.response_bytes > 0


def test_host_from_a_flat_logreg_vector_weights_then_bias(model, client):
    """Layout of privehr.learning.models.get_flat for Linear(d, 1): d weights, then bias."""
    w, b = model
    flat = np.concatenate([w, [b]]).astype(np.float32)
    lin = LinearModel.from_flat(flat, D)
    host = ScoringHost(lin, budget=QueryBudget(100), rng=np.random.default_rng(0))
    host.register_site("clinic-7", client.public_context.data, client.public_context.sha256)
    x = _features(20, seed=5)
    probs = client.decrypt_scores(host.score(client.encrypt_features(x)))
    expected = expit(x @ flat[:D].astype(np.float64) + float(flat[D]))
    assert np.max(np.abs(probs - expected)) < 1e-3
    with pytest.raises(HeParameterError, match="logistic regression"):
        LinearModel.from_flat(np.zeros(D + 5), D)


def test_scores_frame_keeps_input_order():
    frame = scores_frame(["p2", "p1"], np.array([0.9, 0.1]))
    assert list(frame["patient"]) == ["p2", "p1"] and list(frame["score"]) == [0.9, 0.1]
    with pytest.raises(HeParameterError, match="same order"):
        scores_frame(["p1"], np.array([0.1, 0.2]))
