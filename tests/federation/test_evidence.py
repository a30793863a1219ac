"""Attack/audit evidence wired into a study run, on synthetic sites (no stores needed)."""

import json

import numpy as np
import pytest
from fedkit import synthetic_sites

from privehr.federation.config import ConfigEntry, parse_config
from privehr.federation.evidence import (
    ShadowTrainers,
    _memoised,
    _target,
    attacked_site,
    audit_evidence,
    positive_control,
    run_evidence,
)
from privehr.federation.methods import run_centralised, run_federated
from privehr.federation.modes import PlainProtection
from privehr.federation.study import PreparedStudy


def _cfg(**attacks):
    return parse_config({
        "study": {"seed": 3, "bootstrap": 10},
        "federation": {"rounds": 2, "local_epochs": 1, "lr": 0.1, "batch_size": 16},
        "attacks": {"n_shadow": 16, "audit_canaries": 60, **attacks},
        "configs": [{"name": "c", "method": "centralised"}],
    })


def _study(k=3, n=120, d=6):
    cfg = _cfg()
    sites = synthetic_sites(k=k, n=n, d=d)
    sites[1].data.X_train = np.concatenate([sites[1].data.X_train, sites[1].data.X_train[:10] + 0.1])
    sites[1].data.y_train = np.concatenate([sites[1].data.y_train, sites[1].data.y_train[:10]])
    sites[1].data.pid_train = np.concatenate([sites[1].data.pid_train,
                                              [f"extra{j}" for j in range(10)]])
    return cfg, PreparedStudy(cfg, sites, [f"f{i}" for i in range(d)])


def test_attacked_site_has_the_most_training_patients():
    _, prep = _study()
    assert attacked_site(prep).name == "site1"


@pytest.mark.slow
def test_run_evidence_on_a_small_run(tmp_path):
    cfg, prep = _study()
    (tmp_path / "models").mkdir()
    cen = run_centralised(cfg, prep.sites, ConfigEntry(name="centralised", method="centralised"))
    np.save(tmp_path / "models" / "centralised.npy", cen.params)
    fed = run_federated(cfg, prep.sites, ConfigEntry(name="fedavg", method="fedavg"),
                        charge_for=lambda s, c: (lambda msg, rel: None),
                        protection=PlainProtection(cfg, prep), study_id="t")
    np.save(tmp_path / "models" / "fedavg.npy", fed.params)
    np.save(tmp_path / "models" / "fedavg_dp.npy", fed.params)
    pooled = np.concatenate([s.data.X_train for s in prep.sites])
    stdz = {"mean": pooled.mean(0).tolist(), "std": pooled.std(0).tolist()}
    metrics = {"configs": [
        {"name": "centralised", "method": "centralised", "protection": "none"},
        {"name": "site_only", "method": "site_only", "protection": "none"},
        {"name": "fedavg", "method": "fedavg", "protection": "none"},
        {"name": "fedavg_dp", "method": "fedavg", "protection": "dp_local", "standardizer": stdz,
         "privacy": {"epsilon": 3.0}},
        {"name": "fedavg_secagg", "method": "fedavg", "protection": "secagg"},
        {"name": "fedavg_he", "method": "fedavg", "protection": "he"},
        {"name": "missing", "method": "fedavg", "protection": "none"},
    ]}
    ev = run_evidence(cfg, prep, metrics, tmp_path)

    mem = ev["membership"]
    assert set(mem) == {c["name"] for c in metrics["configs"]}
    for name in ("fedavg_secagg", "fedavg_he", "missing"):
        assert mem[name]["skipped"] and mem[name]["note"]
    attacked = ["centralised", "site_only", "fedavg", "fedavg_dp"]
    n_train_all = sum(len(np.unique(s.data.pid_train)) for s in prep.sites)
    for name in attacked:
        r = mem[name]
        # a site-only model is attacked on its own site; models trained on every site on the
        # pooled candidates of all sites (members = every training patient)
        pooled = name != "site_only"
        assert r["attacked_site"] == ("all-sites" if pooled else "site1") and r["unit"] == "patient"
        for key in ("threshold", "lira_offline", "lira_online"):
            assert 0.0 <= r[key]["auc"] <= 1.0
            assert r[key]["n_members"] == (n_train_all if pooled else 94)
    assert "recorded standardizer" in mem["fedavg_dp"]["note"]
    assert "recomputed" in mem["fedavg"]["note"] and mem["fedavg_dp"]["epsilon"] == 3.0
    # same parameters, same (exact pooled) standardisation: identical attack outcome
    assert mem["fedavg_dp"]["threshold"]["auc"] == pytest.approx(mem["fedavg"]["threshold"]["auc"],
                                                                  abs=1e-6)

    inv = ev["inversion"]
    assert inv["site"] == "site1"
    one = next(r for r in inv["plain_update"] if r["batch_size"] == 1)
    assert one["cosine"] > 0.99  # a single patient's plain update gives the record back
    assert inv["masked_words"] and inv["aggregate"] and inv["dp_aggregate"]

    assert ev["audit"]["dp_sgd"]["eps_lower_bound"] <= ev["audit"]["dp_sgd"]["ledger_epsilon"]
    assert ev["audit"]["non_private"]["eps_lower_bound"] > 0.5
    assert ev["positive_controls"]["memorising_kernel"]["clearly_above_chance"]
    assert "clearly_above_chance" in ev["positive_controls"]["overfit_logreg"]

    charges = ev["ledger_charges"]
    assert all(c["kind"] in ("attack", "audit") for c in charges)
    for name in attacked:
        assert {"site": "site1", "kind": "attack", "config": name} in charges
    for name in ("centralised", "fedavg", "fedavg_dp"):  # pooled candidates: every site charged
        assert {"site": "site0", "kind": "attack", "config": name} in charges
    assert not any(c["config"] in ("fedavg_secagg", "fedavg_he", "missing") for c in charges)
    assert {c["site"] for c in charges} == {"site0", "site1", "site2"}  # pooled shadows
    assert ev["seconds"] > 0 and set(ev["timings"]) == {"membership", "inversion", "audit",
                                                         "positive_controls"}
    json.loads(json.dumps(ev, allow_nan=False))  # storable in metrics.json as is


@pytest.mark.slow
def test_audit_bound_respects_the_ledger_and_the_non_private_run_is_caught():
    cfg, prep = _study()
    audit = audit_evidence(cfg, attacked_site(prep), seed=0, steps=60)
    dp, plain = audit["dp_sgd"], audit["non_private"]
    assert dp["ledger_epsilon"] <= 3.0 + 1e-9 and dp["charged_epsilon"] == dp["ledger_epsilon"]
    assert dp["eps_lower_bound"] <= dp["ledger_epsilon"] and dp["consistent_with_claim"]
    assert plain["ledger_epsilon"] is None and plain["eps_claimed"] == "inf"
    assert plain["eps_lower_bound"] > 1.0 and plain["correct"] == plain["guesses"]


def test_positive_controls_catch_memorised_patients():
    cfg, prep = _study(d=80)  # more features than control members: memorisable
    out = positive_control(cfg, attacked_site(prep), seed=1, n_patients=30)
    kernel, lr = out["memorising_kernel"], out["overfit_logreg"]
    assert kernel["clearly_above_chance"] and kernel["lira_online"]["auc"] > 0.8
    assert kernel["n_members"] == kernel["n_nonmembers"] == 30
    assert lr["threshold"]["auc"] > 0.6  # 30 patients, 80 features: the model memorises


def test_memoised_training_reuses_a_shadow_only_for_the_same_data_and_seed():
    calls = []

    def train(X, y, seed):
        calls.append(seed)
        return lambda Z: np.full(len(Z), 0.5)

    cached, cache = _memoised(train)
    X, y = np.ones((4, 2)), np.array([0, 1, 0, 1])
    cached(X, y, 1), cached(X, y, 1), cached(X, y, 2), cached(X + 1, y, 1)
    assert calls == [1, 2, 1] and len(cache) == 3


def test_targets_skip_what_does_not_change_the_model_and_use_the_recorded_standardizer(tmp_path):
    from privehr.learning.models import get_flat, make_model

    cfg, prep = _study()
    site = attacked_site(prep)
    shadows = ShadowTrainers(cfg, prep, site)
    (tmp_path / "models").mkdir()
    np.save(tmp_path / "models" / "f.npy", get_flat(make_model("logreg", 6, seed=11)))
    for entry in ({"name": "s", "method": "fedavg", "protection": "secagg"},
                  {"name": "h", "method": "fedavg", "protection": "he"},
                  {"name": "l", "method": "loso", "protection": "none"},
                  {"name": "gone", "method": "fedavg", "protection": "none"}):
        assert _target(cfg, prep, entry, tmp_path, site, shadows).startswith("skipped")
    plain = _target(cfg, prep, {"name": "f", "method": "fedavg"}, tmp_path, site, shadows)
    shifted = {"mean": [5.0] * 6, "std": [2.0] * 6}
    rec = _target(cfg, prep, {"name": "f", "method": "fedavg", "standardizer": shifted}, tmp_path,
                  site, shadows)
    assert "recomputed" in plain[2] and "recorded standardizer" in rec[2]
    X = site.data.X_test
    assert not np.allclose(plain[0](X), rec[0](X))
    mean, std = np.asarray(shifted["mean"]), np.asarray(shifted["std"])
    ref = _target(cfg, prep, {"name": "f", "method": "fedavg", "standardizer": {
        "mean": [0.0] * 6, "std": [1.0] * 6}}, tmp_path, site, shadows)
    np.testing.assert_allclose(rec[0](X), ref[0]((X - mean) / std), rtol=1e-5)
    assert rec[1] is shadows.pooled
    site_only = _target(cfg, prep, {"name": "so", "method": "site_only"}, tmp_path, site, shadows)
    assert site_only[1] is shadows.site_alone and site_only[0](X).shape == (len(X),)


def test_disabled_attacks_do_nothing_and_bad_candidates_are_skipped_with_the_reason(tmp_path):
    from privehr.federation.evidence import membership_evidence
    from privehr.learning.models import get_flat, make_model

    cfg, prep = _study()
    off = parse_config({**cfg.model_dump(mode="json"), "attacks": {"enabled": False}})
    assert run_evidence(off, prep, {"configs": []}, tmp_path)["ledger_charges"] == []
    site = attacked_site(prep)
    site.data.pid_test = site.data.pid_train[: len(site.data.pid_test)]  # split by row: invalid
    (tmp_path / "models").mkdir()
    np.save(tmp_path / "models" / "f.npy", get_flat(make_model("logreg", 6, seed=1)))
    out = membership_evidence(cfg, prep, {"configs": [{"name": "f", "method": "fedavg"}]},
                              tmp_path, site, ShadowTrainers(cfg, prep, site), seed=0)
    assert out["f"]["skipped"] and "share no patient" in out["f"]["note"]
