"""Run a study grid and write the run directory (the only input the report and slides need).

RUN_DIR layout (documented in docs/metrics-schema.md):
  config.resolved.json   the validated configuration, with its hash
  metrics.json           one entry per configuration (see the schema doc)
  rounds.jsonl           per-round measurements, one line per (configuration, round)
  models/<name>.npy      final flat model parameters per configuration
  summary.md             a plain Markdown table of the headline metrics
  stores/                each site's de-identified store and its privacy ledger (demo only)
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from privehr.federation.config import StudyConfig
from privehr.federation.methods import run_centralised, run_federated, run_site_only
from privehr.federation.study import PreparedStudy, prepare, site_delta, write_json

METRICS_SCHEMA_VERSION = 1
TEST_PARTITION_KINDS = frozenset({"histogram"})  # releases computed on held-out test patients only


class LedgerBook:
    """Opens each site's ledger once and remembers which events this run charged, per config."""

    def __init__(self, prep: PreparedStudy, study_id: str):
        from privehr.privacy.ledger import PrivacyLedger, ledger_path_for_store

        budget = prep.config.privacy.budget_epsilon
        self.study_id = study_id
        self.ledgers = {
            s.name: PrivacyLedger(ledger_path_for_store(s.store), site=s.name, delta=site_delta(s.n_patients),
                                  epsilon_max=None if math.isinf(budget) else budget)
            for s in prep.sites
        }
        self.events: dict[tuple[str, str], list[Any]] = defaultdict(list)

    def charge_for(self, site: str, config: str) -> Callable:
        from dp_accounting.dp_event import NonPrivateDpEvent

        ledger = self.ledgers[site]

        def charge(msg, release) -> None:
            event = release.event if release.event is not None else NonPrivateDpEvent()
            ledger.charge(event, study=self.study_id, config=config, round=msg.round, kind=release.kind,
                          meta=release.meta)
            self.events[(site, config)].append((release.kind, event))

        return charge

    def precheck_for(self, site: str) -> Callable:
        ledger = self.ledgers[site]
        return lambda event: ledger.check(event)

    def config_privacy(self, config: str) -> dict[str, Any]:
        """(ε, δ) of this configuration's releases at each site, from the events it charged.

        Within one study the training and held-out test patients are disjoint, so releases
        that touch only test patients (evaluation histograms) compose in parallel with those
        that touch only training patients: a patient's ε is the larger of the two. The store's
        lifetime total (``ledger_totals``) composes everything sequentially and is never lower.
        """
        from privehr.privacy.accountant import Accountant

        acc = Accountant()
        per_site = {}
        for site, ledger in self.ledgers.items():
            events = self.events.get((site, config), [])
            if not events:
                continue
            parts = {"train": [e for k, e in events if k not in TEST_PARTITION_KINDS],
                     "test": [e for k, e in events if k in TEST_PARTITION_KINDS]}
            eps = {p: (_finite(acc.epsilon(ev, ledger.delta)) if ev else 0.0) for p, ev in parts.items()}
            eps_rdp = {p: (_finite(acc.epsilon_rdp(ev, ledger.delta)) if ev else 0.0) for p, ev in parts.items()}
            worst = None if None in eps.values() else max(eps.values())
            worst_rdp = None if None in eps_rdp.values() else max(eps_rdp.values())
            per_site[site] = {"epsilon": worst, "epsilon_rdp": worst_rdp, "epsilon_train": eps["train"],
                              "epsilon_test": eps["test"], "delta": ledger.delta, "releases": len(events)}
        eps_values = [v["epsilon"] for v in per_site.values()]
        worst = None if any(e is None for e in eps_values) or not eps_values else max(eps_values)
        return {"private": worst is not None, "epsilon": worst, "per_site": per_site}

    def store_totals(self) -> dict[str, Any]:
        return {site: {"epsilon": _finite(led.epsilon()), "delta": led.delta, "entries": len(led.entries())}
                for site, led in self.ledgers.items()}


def _finite(x: float | None) -> float | None:
    """JSON has no infinity: ``None`` means ε = ∞ (a non-private release happened)."""
    return None if x is None or math.isinf(x) else float(x)


def run_study(cfg: StudyConfig, run_dir: Path, base: Path, *, ui: Any = None,
              command: str | None = None) -> dict[str, Any]:
    """Prepare sites, run each configuration, write RUN_DIR. ``ui`` receives progress callbacks."""
    from privehr.federation.modes import make_protection

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "models").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    prep = prepare(cfg, run_dir, base, progress=(ui.progress if ui else None))
    timings = {"prepare": time.perf_counter() - t0, **prep.timings}
    study_id = f"{cfg.study.name}-{cfg.config_hash()[:12]}"
    book = LedgerBook(prep, study_id)
    entries, rounds_lines = [], []
    for entry in cfg.configs:
        if ui:
            ui.stage(f"config {entry.name}")
        t1 = time.perf_counter()
        if entry.method == "centralised":
            res = run_centralised(cfg, prep.sites, entry)
        elif entry.method == "site_only":
            res = run_site_only(cfg, prep.sites, entry)
        elif entry.method == "loso":
            from privehr.federation.loso import run_loso

            res = run_loso(cfg, prep.sites, entry, book=book, study_id=study_id)
        else:
            protection = make_protection(entry, cfg, prep)  # noise: OS entropy unless the test seed is set
            res = run_federated(cfg, prep.sites, entry, charge_for=book.charge_for, protection=protection,
                                study_id=study_id, precheck_for=book.precheck_for)
            res.entry["privacy"] = book.config_privacy(entry.name)
        timings[f"config:{entry.name}"] = time.perf_counter() - t1
        np.save(run_dir / "models" / f"{entry.name}.npy", res.params)
        entries.append(res.entry)
        rounds_lines += [{"config": entry.name, **r} for r in res.rounds]
        if ui:
            ui.config_done(res.entry)
    scoring = _encrypted_scoring(cfg, prep, entries, run_dir, ui)
    timings["encrypted_scoring"] = scoring.get("seconds", 0.0) if scoring else 0.0
    metrics = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "study": {"id": study_id, "name": cfg.study.name, "task": cfg.study.task, "model": cfg.study.model,
                  "seed": cfg.study.seed, "config_hash": cfg.config_hash(), "command": command,
                  "noise": "seeded (TEST MODE: not private)" if cfg.privacy.seeded_noise_for_tests is not None
                  else "OS entropy"},
        "feature_names": prep.feature_names,
        "task_definition": _task_text(cfg.study.task),
        "sites": [{"site": s.name, "patients": s.n_patients, "cohort_patients": s.cohort_patients,
                   "train_examples": int(len(s.data.y_train)),
                   "test_examples": int(len(s.data.y_test)), "prevalence": s.prevalence,
                   "delta": site_delta(s.n_patients)} for s in prep.sites],
        "excluded_sites": prep.excluded,
        "configs": entries,
        "encrypted_scoring": scoring,
        "ledger_totals": book.store_totals(),
        "timings": timings,
    }
    if cfg.attacks.enabled:
        metrics["attacks"] = run_attacks(cfg, prep, metrics, run_dir, book, ui)
        metrics["ledger_totals"] = book.store_totals()
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "config.resolved.json", {"config": cfg.model_dump(mode="json"), "hash": cfg.config_hash()})
    with (run_dir / "rounds.jsonl").open("w", encoding="utf-8") as fh:
        for line in rounds_lines:
            fh.write(json.dumps(line, sort_keys=True) + "\n")
    (run_dir / "summary.md").write_text(summary_markdown(metrics), encoding="utf-8")
    return metrics


def run_attacks(cfg: StudyConfig, prep: PreparedStudy, metrics: dict[str, Any], run_dir: Path,
                book: LedgerBook, ui: Any = None) -> dict[str, Any]:
    """Attacks and audits against this run's models; their results are releases (ledger)."""
    from dp_accounting.dp_event import NonPrivateDpEvent

    from privehr.federation.evidence import run_evidence

    budgeted = sorted(site for site, led in book.ledgers.items() if led.epsilon_max is not None)
    if budgeted:
        # Attack results are non-private releases; a budgeted site must refuse them up front.
        return {"skipped": f"sites {budgeted} have a finite privacy budget; attack results are non-private "
                           "releases and were not computed (run `privehr attack` on a simulation copy)"}
    if ui:
        ui.stage("attacks and audits")
    evidence = run_evidence(cfg, prep, metrics, run_dir)
    for charge in evidence.pop("ledger_charges", []):
        # Attack results are computed from patients' rows without noise: non-private releases.
        book.ledgers[charge["site"]].charge(NonPrivateDpEvent(), study=book.study_id, config=charge["config"],
                                           round=None, kind=charge["kind"])
    if ui:
        ui.stage_done(f"attacks and audits ({evidence['seconds']:.0f} s)")
    return evidence


def _encrypted_scoring(cfg: StudyConfig, prep: PreparedStudy, entries: list[dict[str, Any]], run_dir: Path,
                       ui: Any) -> dict[str, Any] | None:
    """Score a site outside the federation (or one site's test patients) under CKKS."""
    from privehr.federation.scoring import score_patients

    source = next((e for e in entries if e["method"] == "fedavg" and e["protection"] == "none"), None)
    if source is None or cfg.study.model != "logreg":
        return None
    if ui:
        ui.stage("encrypted scoring")
    params = np.load(run_dir / "models" / f"{source['name']}.npy")
    if prep.outside:
        site, td = next(iter(sorted(prep.outside.items())))
        X, pids, who = td.X, td.patient_id, "a site outside the federation (all its cohort patients)"
    else:
        s = prep.sites[0]
        site, X, pids, who = s.name, s.data.X_test, s.data.pid_test, "one member site's test patients"
    out = score_patients(X, pids, params, source["standardizer"], site_id=site,
                         out_csv=run_dir / "scores" / f"{site}.encrypted.csv")
    out.update({"model": source["name"], "who": who})
    if ui:
        ui.stage_done(f"encrypted scoring: {out['patients']} patients of {site}, max |Δ| vs plaintext "
                      f"{out['max_abs_deviation_from_plaintext']:.2e}")
    return out


def _task_text(name: str) -> str:
    from privehr.ehr.tasks import describe_task, get_task

    return describe_task(get_task(name))


def _fmt(x: Any, nd: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def summary_markdown(metrics: dict[str, Any]) -> str:
    lines = [
        f"# Study {metrics['study']['name']} — task `{metrics['study']['task']}`, model `{metrics['study']['model']}`",
        "",
        f"{len(metrics['sites'])} sites, {sum(s['patients'] for s in metrics['sites'])} patients. "
        "AUROC/AUPRC with 95% bootstrap CIs on the sites' held-out test patients, as released (private "
        "configurations release DP-noised histograms). 'exact AUROC (sim.)' is the simulation harness's "
        "exact view of the same final model, never released by any site.",
        "",
        "| configuration | method | protection | AUROC [95% CI] | AUPRC | Brier | ECE | exact AUROC (sim.) | ε (worst site) | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in metrics["configs"]:
        g = c.get("global") or {}
        ci = (g.get("ci") or {}).get("auroc") or [None, None]
        eps = (c.get("privacy") or {}).get("epsilon")
        eps_s = "∞ (non-private)" if eps is None else f"{eps:.2f}"
        lines.append(
            f"| {c['name']} | {c['method']} | {c['protection']} | {_fmt(g.get('auroc'))} "
            f"[{_fmt(ci[0])}, {_fmt(ci[1])}] | {_fmt(g.get('auprc'))} | {_fmt(g.get('brier'))} | "
            f"{_fmt(g.get('ece'))} | {_fmt((c.get('simulation_exact') or {}).get('auroc'))} | {eps_s} | "
            f"{c['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"
