"""The study report: one self-contained ``RUN_DIR/report.html`` rendered from the run alone.

Sections: summary (what an attacker could learn), task and cohort, utility with CIs,
subgroups, model card (TRIPOD+AI headings), privacy–utility, per-site metrics, privacy
ledger, attacks and audit, cost, data-flow diagram, limits. Every number is a traceable cell
(see :mod:`privehr.report.values`); figures are drawn once (:class:`Figures`) and shared with
the slides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privehr.report import plots
from privehr.report.diagram import diagram_html
from privehr.report.html import ident, page, section, table
from privehr.report.ledger_curves import EpsilonCurve, epsilon_curves
from privehr.report.load import RunData, load_run
from privehr.report.narrative import attacker_summary, limits
from privehr.report.sections_privacy import attacks, ledger, ledger_view, privacy
from privehr.report.sections_utility import (
    cohort,
    cost,
    is_federated,
    per_site,
    subgroups,
    utility,
)
from privehr.report.values import MISSING, cell, ci_cell, esc, text_cell

REPORT_FILE = "report.html"

#: (section id, title): the report's sections in order (tests check each is present).
SECTIONS = (
    ("summary", "Summary: what an attacker could learn"),
    ("cohort", "Task and cohort"),
    ("utility", "Utility (released metrics with bootstrap CIs)"),
    ("subgroups", "Subgroups: AUROC and calibration"),
    ("model-card", "Model card (TRIPOD+AI)"),
    ("privacy-utility", "Privacy–utility"),
    ("per-site", "Per-site metrics"),
    ("ledger", "Privacy ledger"),
    ("attacks", "Attacks and audit"),
    ("cost", "Cost"),
    ("data-flow", "Data flow and trust boundaries"),
    ("limits", "Limits and assumptions"),
)


@dataclass(frozen=True)
class Figures:
    """Every figure of a run, drawn once and shared by the report and the slides."""

    privacy_utility: str | None
    ledger: str | None
    membership: str | None
    audit: str | None
    cost: str | None
    diagram: str
    curves: tuple[EpsilonCurve, ...]


def build_figures(run: RunData) -> Figures:
    curves = tuple(epsilon_curves(run))
    return Figures(privacy_utility=plots.privacy_utility(run), ledger=plots.ledger_curves(
        list(curves)), membership=plots.membership(run), audit=plots.audit(run),
        cost=plots.cost(run), diagram=diagram_html(run), curves=curves)


def _eps(c: dict[str, Any]) -> float | None:
    e = (c.get("privacy") or {}).get("epsilon")
    return None if e is None or not math.isfinite(float(e)) else float(e)


def best_private(run: RunData) -> int | None:
    """Index of the private configuration with the highest released AUROC (None if none)."""
    cands = [(c["global"]["auroc"], i) for i, c in enumerate(run.configs)
             if _eps(c) is not None and (c.get("global") or {}).get("auroc") is not None]
    return max(cands)[1] if cands else None


def reference(run: RunData, method: str) -> int | None:
    for i, c in enumerate(run.configs):
        if c.get("method") == method and c.get("global") and c.get("protection") == "none":
            return i
    return None


def model_card(run: RunData) -> str:
    m = run.metrics
    rows = []
    picks = [("best private", best_private(run)), ("centralised (upper bound)",
             reference(run, "centralised")), ("site-only", reference(run, "site_only"))]
    fed = next((i for i, c in enumerate(run.configs) if is_federated(c) and _eps(c) is None), None)
    picks.append(("federated, non-private", fed))
    for label, i in picks:
        if i is None:
            continue
        p = f"configs/{i}"
        rows.append([esc(label), text_cell(m, f"{p}/name", cls="t id"),
                     ci_cell(m, f"{p}/global", "auroc"), cell(m, f"{p}/global/ece"),
                     cell(m, f"{p}/privacy/epsilon", 2)])
    fed_names = ", ".join(ident(c["name"]) for c in run.configs if is_federated(c)) or MISSING
    outcome = ("the outcome and eligibility rules of the task definition in “Task and cohort”"
               if m.get("task_definition") else "the task named above")
    items = [
        ("Intended use", "Research evaluation of " + text_cell(m, "study/task", cls="t id")
         + " prediction with a " + text_cell(m, "study/model", cls="t id") + " model trained "
         "across hospitals without pooling records. Not validated for clinical decisions."),
        ("Source of data", "Each site's own EHR export, de-identified into a local store; "
         "records never leave the site (see “Data flow and trust boundaries”)."),
        ("Participants and outcome", f"Defined by {outcome}; "
         + cell(m, "sites/*", 0, agg="count") + " sites took part and "
         + cell(m, "excluded_sites/*", 0, agg="count") + " were excluded."),
        ("Sample size", cell(m, "sites/*/patients", 0, agg="sum") + " patients in the sites' "
         "stores; " + cell(m, "sites/*/train_examples", 0, agg="sum") + " training and "
         + cell(m, "sites/*/test_examples", 0, agg="sum") + " test examples, split by patient "
         "within each site."),
        ("Predictors", cell(m, "feature_names/*", 0, agg="count") + " features, all from "
         "before the index date."),
        ("Model development", "Federated configurations: " + fed_names + ". Baselines: "
         "centralised (pooled, simulation only) and site-only."),
        ("Performance", table(["role", "configuration", "AUROC [CI]", "ECE", "ε"], rows)),
        ("Fairness", "AUROC and calibration per sex, race/ethnicity and age band are in "
         "“Subgroups”; small groups are suppressed, not pooled."),
        ("Privacy", "Patient-level (ε, δ) per configuration from each site's ledger; attack "
         "evidence in “Attacks and audit”."),
        ("Limits", "See “Limits and assumptions”."),
        ("Reproducibility", "Configuration hash " + text_cell(m, "study/config_hash", cls="t id")
         + "; the resolved configuration is saved beside the metrics."),
    ]
    cards = "".join(f'<div class="card{" span" if h == "Performance" else ""}"><h3>{esc(h)}</h3>'
                    f"<div>{body}</div></div>" for h, body in items)
    return f'<div class="cards">{cards}</div>'



def noise_banner(m: dict[str, Any]) -> str:
    noise = str((m.get("study") or {}).get("noise", ""))
    if not noise:
        return ""
    cls = "notrun warn" if "test" in noise.lower() else "note"
    return f'<p class="{cls}">DP noise source: {text_cell(m, "study/noise")}</p>'


def report_html(run: RunData, figs: Figures | None = None) -> str:
    figs = figs or build_figures(run)
    view = ledger_view(run)
    m = run.metrics
    bodies = {
        "summary": "<ul>" + "".join(f"<li>{s}</li>" for s in attacker_summary(run)) + "</ul>",
        "cohort": cohort(run),
        "utility": utility(run),
        "subgroups": subgroups(run),
        "model-card": model_card(run),
        "privacy-utility": privacy(run, figs.privacy_utility),
        "per-site": per_site(run),
        "ledger": ledger(run, figs.ledger, view),
        "attacks": attacks(run, figs.membership, figs.audit),
        "cost": (f'<img class="plot" alt="cost per protection" src="{figs.cost}">'
                 if figs.cost else "") + cost(run),
        "data-flow": figs.diagram + "<p class=note>Generated from this run's configurations: "
                     "raw records and local training stay inside each site's boundary; only "
                     "the updates listed in the note cross it.</p>",
        "limits": "<ul>" + "".join(f"<li>{s}</li>" for s in limits(run, view)) + "</ul>",
    }
    toc = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title in SECTIONS)
    head = ("<header><h1>Study report: " + text_cell(m, "study/name") + "</h1>"
            "<p class=note>Study " + text_cell(m, "study/id", cls="t id") + ", config hash "
            + text_cell(m, "study/config_hash", cls="t id") + ", metrics schema version "
            + cell(m, "schema_version", 0) + ". Every number below is read from this run's "
            "files; hover over a number to see its source path.</p>" + noise_banner(m) + "</header>")
    body = "".join(section(sid, title, bodies[sid]) for sid, title in SECTIONS)
    return page(f"privehr report — {m.get('study', {}).get('name', '')}",
                f'<main>{head}<nav class="toc">{toc}</nav>{body}</main>')


def render_report(run_dir: Path) -> Path:
    """Write ``RUN_DIR/report.html`` from the run directory's files; return its path."""
    run = load_run(run_dir)
    out = Path(run_dir) / REPORT_FILE
    out.write_text(report_html(run), encoding="utf-8")
    return out
