import json
import math

import numpy as np
import pytest
from attacks_testkit import dp_epsilon, dp_logreg_fit, fit_logreg, make_task

from privehr.evaluation.attacks._checks import AttackInputError
from privehr.evaluation.attacks.audit import (
    audit_p_value,
    choose_guesses,
    coordinate_canaries,
    eps_lower_bound,
    input_canary_scorer,
    one_run_audit,
    pad_for_canaries,
)

M, D = 200, 10


def test_p_value_closed_form_when_all_guesses_correct():
    # δ = 0, v = r: p = q^r with q = e^ε/(1+e^ε)
    q = 1 / (1 + math.exp(-1.3))
    assert audit_p_value(100, 30, 30, 1.3, 0.0) == pytest.approx(q**30)
    # bound solves q^r = β  ->  ε = logit(β^(1/r))
    qb = 0.05 ** (1 / 80)
    assert eps_lower_bound(M, 80, 80, delta=0.0, beta=0.05) == pytest.approx(
        math.log(qb / (1 - qb)), abs=1e-9)


def test_p_value_monotone_in_eps_and_delta_only_weakens_the_bound():
    eps = np.linspace(0, 5, 30)
    p = [audit_p_value(500, 100, 80, e, 1e-5) for e in eps]
    assert np.all(np.diff(p) >= 0)
    assert audit_p_value(500, 100, 80, 1.0, 1e-3) > audit_p_value(500, 100, 80, 1.0, 0.0)
    assert eps_lower_bound(500, 100, 80, delta=1e-3, beta=0.05) < eps_lower_bound(
        500, 100, 80, delta=0.0, beta=0.05)
    assert eps_lower_bound(500, 100, 50, delta=0.0, beta=0.05) == 0.0  # chance level


def test_guesses_use_top_and_bottom_scores_and_break_ties_randomly():
    scores = np.array([5.0, 1.0, 3.0, 4.0, 2.0])
    g = choose_guesses(scores, 2, 1, np.random.default_rng(0))
    assert g.tolist() == [1, -1, 0, 1, 0]
    tied = np.zeros(100)
    picks = [np.flatnonzero(choose_guesses(tied, 1, 0, np.random.default_rng(s)) == 1)[0]
             for s in range(30)]
    assert len(set(picks)) > 10


def randomized_response(eps):
    """An exactly ε-DP mechanism per canary: report the coin, flipped w.p. 1/(1+e^ε)."""
    def run(canaries, include, seed):
        rng = np.random.default_rng(seed)
        flip = rng.random(include.size) < 1 / (1 + math.exp(eps))
        return (include ^ flip).astype(float)
    return run


def test_bound_is_valid_and_nearly_tight_for_randomized_response():
    eps, m = 2.0, 1000
    canaries = np.zeros((m, 1))
    bounds = np.array([
        one_run_audit(randomized_response(eps), canaries, m, m // 2, m // 2, 0.0, 0.05, s)
        .eps_lower_bound for s in range(60)])
    assert np.mean(bounds > eps) <= 0.1  # exceeds ε with prob <= β = 0.05
    assert np.median(bounds) > 1.6  # and is close to ε when the mechanism is exactly ε-DP


@pytest.fixture(scope="module")
def base_data():
    X, y = make_task(200, D, seed=0)
    Xc, yc = coordinate_canaries(M, D, value=10.0)
    return pad_for_canaries(X, M), y, Xc, yc


def test_coordinate_canaries_own_one_column_each(base_data):
    Xp, _, Xc, yc = base_data
    assert Xp.shape == (200, D + M) and Xc.shape == (M, D + M)
    assert np.all(Xp[:, D:] == 0)
    assert np.all((Xc[:, D:] != 0).sum(axis=0) == 1) and np.all(Xc[:, :D] == 0)
    assert set(yc.tolist()) == {1}


def test_non_private_training_gives_clearly_positive_bound(base_data):
    Xp, y, Xc, yc = base_data

    def train_and_score(canaries, include, seed):
        cx, cy = canaries
        w, b = fit_logreg(np.r_[Xp, cx[include]], np.r_[y, cy[include]], l2=0.0, steps=100)
        return cx @ w

    res = one_run_audit(train_and_score, (Xc, yc), M, 40, 40, 1e-5, 0.05, 0)
    assert res.guesses == 80 and res.m == M and res.confidence == 0.95
    assert res.correct >= 78
    assert res.eps_lower_bound > 1.0
    assert json.loads(json.dumps(res.to_dict()))["attack"] == "one_run_audit"


@pytest.mark.parametrize("sample_rate,steps,sigma", [(1.0, 10, 6.3), (0.5, 20, 4.8)])
def test_dp_training_bound_never_exceeds_accountant_epsilon(base_data, sample_rate, steps,
                                                             sigma):
    Xp, y, Xc, yc = base_data
    delta = 1e-5
    eps = dp_epsilon(sigma, sample_rate, steps, delta)  # DP-SGD, PLD accountant
    assert eps <= 2.01

    def train_and_score(canaries, include, seed):
        cx, cy = canaries
        w, _ = dp_logreg_fit(np.r_[Xp, cx[include]], np.r_[y, cy[include]],
                             noise_multiplier=sigma, clip=1.0, sample_rate=sample_rate,
                             steps=steps, lr=0.5, rng=np.random.default_rng(seed))
        return cx @ w

    results = [one_run_audit(train_and_score, (Xc, yc), M, 40, 40, delta, 0.05, s,
                             eps_claimed=eps) for s in range(5)]
    assert all(r.eps_lower_bound <= eps for r in results)
    assert all(r.consistent_with_claim for r in results)
    # the DP run still leaks *something* the audit can see (the score is not vacuous)
    assert np.mean([r.correct / r.guesses for r in results]) > 0.55


def test_a_broken_dp_claim_is_caught(base_data):
    """Training without noise but claiming ε = 1: the audit refutes the claim."""
    Xp, y, Xc, yc = base_data

    def train_and_score(canaries, include, seed):
        cx, cy = canaries
        w, _ = fit_logreg(np.r_[Xp, cx[include]], np.r_[y, cy[include]], l2=0.0, steps=100)
        return cx @ w

    res = one_run_audit(train_and_score, (Xc, yc), M, 40, 40, 1e-5, 0.05, 1, eps_claimed=1.0)
    assert res.consistent_with_claim is False


def test_audit_inputs_are_validated_all_at_once():
    with pytest.raises(AttackInputError) as err:
        one_run_audit(randomized_response(1.0), np.zeros((10, 1)), 20, 15, 10, 1.5, 0.0, 0)
    assert len(err.value.problems) >= 4
    for field in ("'m'", "'k_plus + k_minus'", "'delta'", "'beta'"):
        assert field in str(err.value)


def test_scores_of_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match="one per canary"):
        one_run_audit(lambda c, inc, s: np.zeros(3), np.zeros((10, 1)), 10, 2, 2, 0.0, 0.05, 0)


def test_input_canary_scorer_wraps_any_train_fn():
    X, y = make_task(200, D, seed=0)
    canaries = coordinate_canaries(M, D, value=3.0)

    def train_fn(Xt, yt, seed):
        w, b = fit_logreg(Xt, yt, l2=0.0, steps=100)
        return lambda Z: 1 / (1 + np.exp(-(Z @ w + b)))

    res = one_run_audit(input_canary_scorer(X, y, train_fn), canaries, M, 40, 40, 1e-5, 0.05, 2)
    assert res.eps_lower_bound > 1.0
    with pytest.raises(ValueError, match="fewer than"):
        input_canary_scorer(np.zeros((5, M + D + 1)), np.zeros(5), train_fn)(
            canaries, np.ones(M, bool), 0)
