import json

import numpy as np
import pytest
from attacks_testkit import (
    balanced_split,
    dp_epsilon,
    dp_logreg_fit,
    logreg_train_fn,
    make_task,
    predictor,
)

from privehr.evaluation.attacks._checks import AttackInputError
from privehr.evaluation.attacks._model_io import logit_confidence, true_label_probability
from privehr.evaluation.attacks.lira import (
    balanced_inclusion,
    fit_shadow_gaussians,
    lira_scores,
)
from privehr.evaluation.attacks.mia import run_membership_attacks, threshold_attack
from privehr.evaluation.attacks.scoring import rank_auroc

ATTACKS = ("loss_threshold", "lira_offline", "lira_online")


@pytest.fixture(scope="module")
def small_task():
    """60 members / 60 non-members, 50 features, identical class balance."""
    X, y = make_task(400, 50, seed=1, signal=0.5)
    return balanced_split(X, y, 60, seed=1)


def test_true_label_probability_binary_and_multiclass():
    y = np.array([1, 0, 1])
    p1 = lambda X: np.array([0.9, 0.2, 0.4])  # noqa: E731
    assert np.allclose(true_label_probability(p1, np.zeros((3, 1)), y), [0.9, 0.8, 0.4])
    pm = lambda X: np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25], [0.3, 0.3, 0.4]])  # noqa: E731
    got = true_label_probability(pm, np.zeros((3, 1)), np.array([1, 0, 2]))
    assert np.allclose(got, [0.7, 0.5, 0.4])
    with pytest.raises(ValueError, match="labels exceed 1"):
        true_label_probability(p1, np.zeros((3, 1)), np.array([0, 2, 1]))


def test_logit_confidence_is_finite_for_saturated_models():
    phi = logit_confidence(np.array([0.0, 0.5, 1.0]))
    assert np.all(np.isfinite(phi)) and phi[1] == 0.0 and phi[2] > 20


def test_balanced_inclusion_each_candidate_in_exactly_half():
    inc = balanced_inclusion(500, 16, np.random.default_rng(0))
    assert inc.shape == (16, 500)
    assert np.all(inc.sum(axis=0) == 8)
    # assignments differ across candidates (not one fixed split)
    assert len({tuple(col) for col in inc.T}) > 400
    with pytest.raises(ValueError, match="even"):
        balanced_inclusion(10, 15, np.random.default_rng(0))


def test_shadow_gaussian_fit_recovers_parameters_and_separates():
    rng = np.random.default_rng(3)
    n_shadow, n = 64, 300
    inc = balanced_inclusion(n, n_shadow, rng)
    mu_out = rng.normal(0, 2, n)  # per-candidate difficulty
    phi = np.where(inc, mu_out + 1.5, mu_out) + rng.normal(0, 0.5, (n_shadow, n))
    fit = fit_shadow_gaussians(phi, inc)
    assert np.abs(fit.mean_out - mu_out).mean() < 0.15
    assert np.abs(fit.std_in - 0.5).mean() < 0.1
    member = rng.random(n) < 0.5
    target = mu_out + 1.5 * member + rng.normal(0, 0.5, n)
    for online in (False, True):
        assert rank_auroc(member, lira_scores(target, fit, online=online)) > 0.9
    # ignoring per-candidate difficulty (a global threshold) does much worse
    assert rank_auroc(member, target) < 0.75


def test_overfit_model_is_attackable(small_task):
    """Positive control: a non-private, nearly unregularised model on 60 records leaks."""
    Xm, ym, Xn, yn = small_task
    out = run_membership_attacks(Xm, ym, Xn, yn, logreg_train_fn(l2=1e-4), seed=7)
    thr, online = out["loss_threshold"], out["lira_online"]
    assert thr["auc"] > 0.6 and thr["auc_ci"][0] > 0.5
    assert online["auc"] > 0.7 and online["auc_ci"][0] > 0.6
    assert out["lira_offline"]["auc"] > 0.6
    assert online["n_shadow"] == 16 and online["n_members"] == 60
    json.dumps(out)  # JSON-able as a whole


def test_dp_model_attack_auc_near_chance(small_task):
    """Same data, DP-SGD at ε = 1 (δ = 1e-5): attacks drop to near 0.5."""
    Xm, ym, Xn, yn = small_task
    sigma = 10.4
    assert dp_epsilon(sigma, 0.5, 30, 1e-5) <= 1.0  # the setting really is ε <= 1 (PLD)

    def dp_train(X, y, seed):
        w, b = dp_logreg_fit(X, y, noise_multiplier=sigma, clip=1.0, sample_rate=0.5,
                             steps=30, lr=0.5, rng=np.random.default_rng(seed))
        return predictor(w, b)

    dp = run_membership_attacks(Xm, ym, Xn, yn, dp_train, seed=7)
    plain = run_membership_attacks(Xm, ym, Xn, yn, logreg_train_fn(l2=1e-4), seed=7)
    for name in ATTACKS:
        assert abs(dp[name]["auc"] - 0.5) < 0.16
        assert dp[name]["auc_ci"][0] < 0.55
    assert max(plain[n]["auc"] for n in ATTACKS) - max(dp[n]["auc"] for n in ATTACKS) > 0.15


def test_threshold_attack_uses_given_model_only():
    X, y = make_task(200, 5, seed=4)
    constant = lambda X: np.full(X.shape[0], 0.5)  # noqa: E731
    res = threshold_attack(constant, X[:100], y[:100], X[100:], y[100:], n_bootstrap=200)
    assert res.auc == 0.5  # every score tied


def test_inputs_are_validated_all_at_once():
    X, y = make_task(20, 3, seed=0)
    with pytest.raises(AttackInputError) as err:
        run_membership_attacks(X, y[:5], X[:, :2], y, logreg_train_fn(l2=1.0), n_bootstrap=5,
                               fprs=(1.5,))
    msg = str(err.value)
    for field in ("'y_train'", "'X_out'", "'n_bootstrap'", "'fprs'"):
        assert field in msg
    assert len(err.value.problems) == 4


def test_lira_requires_enough_shadows():
    X, y = make_task(20, 3, seed=0)
    with pytest.raises(AttackInputError, match="n_shadow"):
        run_membership_attacks(X[:10], y[:10], X[10:], y[10:], logreg_train_fn(l2=1.0),
                               n_shadow=8)


def test_estimator_factory_adapter_trains_fresh_models():
    from privehr.evaluation.attacks import estimator_train_fn

    seeds = []

    class Mean:  # duck-typed estimator: predicts the training positive rate
        def __init__(self, seed):
            seeds.append(seed)

        def fit(self, X, y):
            self.rate_ = float(np.mean(y))
            return self

        def predict_proba(self, X):
            return np.full(len(X), self.rate_)

    fn = estimator_train_fn(Mean)
    p = fn(np.zeros((4, 2)), np.array([1, 1, 1, 0]), 5)
    q = fn(np.zeros((4, 2)), np.array([0, 0, 0, 1]), 6)
    assert p(np.zeros((2, 2))).tolist() == [0.75, 0.75] and q(np.zeros((1, 2)))[0] == 0.25
    assert seeds == [5, 6]


def test_group_mean_per_patient():
    from privehr.evaluation.attacks._model_io import group_mean, patient_groups

    inverse, n = patient_groups(np.array(["b", "a", "b", "c"]), 4)
    assert n == 3
    assert group_mean(np.array([1.0, 2.0, 3.0, 4.0]), inverse, n).tolist() == [2.0, 2.0, 4.0]
    two = group_mean(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 2.0, 1.0]]), inverse, n)
    assert two.tolist() == [[2.0, 2.0, 4.0], [0.0, 1.0, 1.0]]


def test_patient_level_attacks_treat_each_patient_as_one_candidate(small_task):
    """Every patient has 3 identical rows: patient-level results equal the row-level ones on
    one row per patient, and shadows include or exclude whole patients."""
    Xm, ym, Xn, yn = small_task
    rep = lambda a: np.repeat(a, 3, axis=0)  # noqa: E731
    ids_m, ids_n = np.repeat(np.arange(60), 3), np.repeat(np.arange(100, 160), 3)
    seen = []
    base_fn = logreg_train_fn(l2=1e-4)

    def spy(X, y, seed):
        seen.append(X.copy())
        return base_fn(X, y, seed)

    target = base_fn(Xm, ym, 0)
    rows = run_membership_attacks(rep(Xm), rep(ym), rep(Xn), rep(yn), spy, seed=7,
                                  target=target, ids_train=ids_m, ids_out=ids_n)
    single = run_membership_attacks(Xm, ym, Xn, yn, base_fn, seed=7, target=target)
    assert rows["unit"] == "patient" and single["unit"] == "row"
    assert rows["loss_threshold"]["n_members"] == 60
    assert rows["loss_threshold"]["auc"] == pytest.approx(single["loss_threshold"]["auc"])
    assert rows["lira_online"]["n_nonmembers"] == 60
    assert rows["lira_online"]["auc"] > 0.7
    # each shadow's training set holds whole patients (rows come in triples)
    pool = np.concatenate([Xm, Xn])
    counts = np.zeros(120, dtype=int)
    for X in seen:
        match = (X[:, None, :] == pool[None, :, :]).all(axis=2)
        per_patient = match.sum(axis=0)
        assert set(per_patient.tolist()) <= {0, 3}
        counts += per_patient > 0
    assert np.all(counts == 8)  # IN for exactly half of the 16 shadows


def test_member_and_nonmember_patients_must_differ(small_task):
    Xm, ym, Xn, yn = small_task
    with pytest.raises(AttackInputError, match="share no patient"):
        run_membership_attacks(Xm, ym, Xn, yn, logreg_train_fn(l2=1.0),
                               ids_train=np.arange(60), ids_out=np.arange(59, 119))
    with pytest.raises(AttackInputError, match="together"):
        run_membership_attacks(Xm, ym, Xn, yn, logreg_train_fn(l2=1.0), ids_train=np.arange(60))
