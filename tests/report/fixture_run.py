"""A small, hand-built run directory with the shapes `privehr study` writes (no real study).

Site names carry digits on purpose ("north-1", ...) so the report's digit rule is exercised;
one subgroup and one excluded site are below the small-cell threshold so suppression is too.
Ledgers are written through the real PrivacyLedger, attack results through the real result
records, so shape drift in those modules shows up here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from dp_accounting import dp_event as de

from privehr.evaluation.attacks.inversion_suite import run_inversion_suite
from privehr.evaluation.attacks.results import AuditResult, MembershipAttackResult
from privehr.privacy.ledger import PrivacyLedger

SITES = ("north-1", "south-22", "east-303")
STUDY_ID = "tiny-0123456789ab"
METRICS = ("auroc", "auprc", "brier", "ece", "accuracy")


def _stats(rng: np.random.Generator, n: int, n_pos: int) -> dict[str, Any]:
    out: dict[str, Any] = {k: float(rng.uniform(0.05, 0.95)) for k in METRICS}
    out["ci"] = {k: [out[k] - float(rng.uniform(0.01, 0.1)), out[k] + float(rng.uniform(0.01, 0.1))]
                 for k in METRICS}
    out["n"], out["n_pos"] = n, n_pos
    return out


def _config(rng, name: str, method: str, protection: str, eps: float | None,
            rounds: int) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name, "method": method, "protection": protection,
        "global": _stats(rng, 60, 14),
        "per_site": {s: _stats(rng, 20, 5) for s in SITES},
        "subgroups": {
            "sex": {"F": _stats(rng, 31, 7), "M": _stats(rng, 29, 7)},
            "race_ethnicity": {"white": _stats(rng, 52, 12), "asian": _stats(rng, 8, 2)},
            "age_band": {"18-39": _stats(rng, 25, 4), "40-64": _stats(rng, 35, 10)},
        },
        "privacy": {"private": eps is not None, "epsilon": eps},
        "bytes": {}, "rounds": rounds, "seconds": float(rng.uniform(1, 30)),
    }
    if method not in ("centralised", "site_only"):
        c["rounds_completed"] = rounds
        c["bytes"] = {s: {"up": int(rng.integers(1000, 90000)),
                          "down": int(rng.integers(1000, 90000))} for s in SITES}
        c["simulation_exact"] = {**_stats(rng, 60, 14), "note": "simulation only: exact"}
        c["privacy"]["per_site"] = {
            s: {"epsilon": eps, "epsilon_rdp": None if eps is None else eps * 1.1,
                "epsilon_train": None if eps is None else eps * 0.9, "epsilon_test": eps,
                "delta": 1e-5, "releases": rounds + 2} for s in SITES}
        c["protection_details"] = ({"kind": protection, "epsilon_target": eps, "delta": 1e-5,
                                    "noise_multiplier": 2.5, "clip_norm": 1.0}
                                   if eps is not None else {"kind": "none"})
    return c


def make_run(root: Path, *, attacks: bool = True, seed: int = 3) -> Path:
    """Write metrics.json, rounds.jsonl, config.resolved.json and ledgers under ``root``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    configs = [
        _config(rng, "centralised", "centralised", "none", None, 0),
        _config(rng, "site_only", "site_only", "none", None, 0),
        _config(rng, "fedavg", "fedavg", "none", None, 3),
        _config(rng, "fedavg_secagg", "fedavg", "secagg", None, 3),
        _config(rng, "fedavg_dp_local_eps2", "fedavg", "dp_local", 2.0, 3),
        _config(rng, "fedavg_secagg_ddp_eps4", "fedavg", "ddp", 4.0, 4),
        _config(rng, "fedavg_he", "fedavg", "he", None, 2),
    ]
    # a one-class subgroup: the runner writes AUROC as NaN (json.dumps allows it)
    configs[0]["subgroups"]["age_band"]["18-39"]["auroc"] = float("nan")
    configs[0]["subgroups"]["age_band"]["18-39"]["ci"]["auroc"] = [float("nan"), float("nan")]
    metrics: dict[str, Any] = {
        "schema_version": 1,
        "study": {"id": STUDY_ID, "name": "tiny", "task": "toy_onset_30d", "model": "logreg",
                  "seed": 7, "config_hash": "ab12" * 16, "noise": "OS entropy"},
        "task_definition": "toy_onset_30d (patient-level)\n  index: 365 days before end",
        "feature_names": ["age", "sex_F", "code_123"],
        "sites": [{"site": s, "patients": 40 + 10 * i, "train_examples": 28 + 7 * i,
                   "test_examples": 12 + 3 * i, "prevalence": [0.1, 0.3, 0.25][i],
                   "delta": 1e-5} for i, s in enumerate(SITES)],
        "excluded_sites": [{"site": "west-4", "patients": 4, "reason": "4 patients < minimum 20"},
                           {"site": "up-5", "patients": 15, "reason": "15 patients < minimum 20"}],
        "configs": configs,
        "ledger_totals": {s: {"epsilon": None, "delta": 1e-5, "entries": 9} for s in SITES},
        "timings": {"ingest": 1.5, "task": 0.25, "config:fedavg": 2.0},
        "encrypted_scoring": {"site": SITES[2], "patients": 12, "seconds": 0.75,
                              "max_abs_deviation_from_plaintext": 3e-8,
                              "request_bytes": 120000, "response_bytes": 4000,
                              "scores_file": "scores/east-303.csv"},
    }
    if attacks:
        metrics["attacks"] = _attacks(rng)
    (root / "metrics.json").write_text(json.dumps(metrics, indent=1))
    rows = []
    for c in configs:
        for r in range(1, (c.get("rounds_completed") or 0) + 1):
            row = {"config": c["name"], "round": r, "seconds": float(rng.uniform(0.1, 2.0)),
                   "sites": list(SITES), "update_l2": float(rng.uniform(0, 1))}
            if c["protection"] in ("secagg", "ddp"):
                row.update(secagg_included=list(SITES), secagg_dropped=[])
            rows.append(row)
    (root / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "config.resolved.json").write_text(json.dumps(
        {"config": {"data": {"exports": ["data/synthea/pool/*"]}}, "hash": "ab12" * 16}))
    _ledgers(root / "stores", configs)
    return root


def _ledgers(stores: Path, configs: list[dict[str, Any]]) -> None:
    for s in SITES:
        led = PrivacyLedger(stores / f"{s}.duckdb.ledger.jsonl", site=s, delta=1e-5)
        led.record_non_private(study="older-study", config="fedavg", round=1, kind="model_update")
        for c in configs:
            if c["method"] in ("centralised", "site_only"):
                continue
            eps = c["privacy"]["epsilon"]
            for r in range(c["rounds_completed"] + 1):
                kind = "standardisation_stats" if r == 0 else "model_update"
                if eps is None:
                    led.record_non_private(study=STUDY_ID, config=c["name"], round=r, kind=kind)
                else:
                    ev = de.PoissonSampledDpEvent(0.1, de.GaussianDpEvent(1.5))
                    led.charge(ev, study=STUDY_ID, config=c["name"], round=r, kind=kind)
            if eps is not None:
                led.charge(de.GaussianDpEvent(5.0), study=STUDY_ID, config=c["name"],
                           round=c["rounds_completed"] + 1, kind="histogram")


def _attacks(rng: np.random.Generator) -> dict[str, Any]:
    def mia(name: str, auc: float) -> dict[str, Any]:
        return MembershipAttackResult(attack=name, auc=auc, auc_ci=(auc - 0.05, auc + 0.05),
                                      ci_level=0.95, n_bootstrap=50,
                                      tpr_at_fpr=((0.1, auc / 3),), fprs_unresolved=(0.001,),
                                      n_members=30, n_nonmembers=30, n_shadow=4).to_dict()

    X = rng.normal(size=(24, 4))
    X[:, 0] = rng.integers(0, 2, size=24)
    y = rng.integers(0, 2, size=24)
    inv = run_inversion_suite(X, y, batch_sizes=(1, 4), noise_multipliers=(0.0, 1.0),
                              dp_batch_sizes=(1,), n_sites=2, n_trials=1, seed=1)
    audit_plain = AuditResult(eps_lower_bound=0.8, correct=40, guesses=45, m=100,
                              confidence=0.95, eps_claimed=float("inf")).to_dict()
    audit_dp = AuditResult(eps_lower_bound=0.3, correct=12, guesses=20, m=100, confidence=0.95,
                           eps_claimed=2.0).to_dict()
    def entry(eps: float | None, t: float, lira: float, **extra: Any) -> dict[str, Any]:
        return {"threshold": mia("loss_threshold", t), "lira_offline": mia("lira_offline", lira),
                "lira_online": mia("lira_online", lira), "attacked_site": SITES[1],
                "unit": "patient", "n_members": 30, "n_nonmembers": 30, "epsilon": eps,
                "note": "final global model; 95% CI by bootstrap", **extra}

    return {
        "schema_version": 1,
        "attacked_site": SITES[1],
        "membership": {
            "fedavg": entry(None, 0.71, 0.77, protection="none"),
            "fedavg_dp_local_eps2": entry(2.0, 0.52, 0.5, protection="dp_local"),
            "site_only": {"skipped": True, "note": "site-only models: 3 models, not attacked"},
        },
        "inversion": inv,
        "audit": {"audit_non_private": {**audit_plain, "ledger_epsilon": None},
                  "audit_dp_sgd": {**audit_dp, "ledger_epsilon": 2.0}},
        "positive_controls": {
            "memorising_kernel": entry(None, 0.9, 0.97, clearly_above_chance=True),
            "overfit_logreg": entry(None, 0.6, 0.62, clearly_above_chance=False),
        },
        "ledger_charges": [{"site": SITES[1], "kind": "attack", "config": "fedavg"}],
        "timings": {"membership": 1.25},
        "seconds": 2.5,
    }


def text_only_report(run_dir: Path) -> str:
    """report.html without drawing figures (for tests about text and numbers only)."""
    from privehr.report.load import load_run
    from privehr.report.report import Figures, report_html

    figs = Figures(privacy_utility=None, ledger=None, membership=None, audit=None, cost=None,
                   diagram="", curves=())
    return report_html(load_run(run_dir), figs)
