"""Report sections about the cohort, utility, subgroups, sites and cost.

Each function takes the loaded run and returns an HTML fragment whose numbers all come from
:func:`privehr.report.values.cell` (traceable to a file path).
"""

from __future__ import annotations

from typing import Any

from privehr.report.html import ident, table
from privehr.report.load import RunData
from privehr.report.values import (
    MIN_CELL,
    MISSING,
    cell,
    ci_cell,
    const,
    esc,
    is_number,
    lookup,
    text_cell,
)

FEDERATED_METHODS = ("fedavg", "fedprox", "loso")
NOISY_N_TOLERANCE = 0.5  # released vs exact test n: beyond this the DP histograms are suspect
SUBGROUP_ATTRS = (("sex", "Sex"), ("race_ethnicity", "Race / ethnicity"), ("age_band", "Age band"))


def is_federated(c: dict[str, Any]) -> bool:
    return c.get("method") not in ("centralised", "site_only")


def eps_cell(m: dict[str, Any], i: int) -> str:
    return cell(m, f"configs/{i}/privacy/epsilon", 2)


def cohort(run: RunData) -> str:
    m = run.metrics
    parts = [
        "<p>Study ", text_cell(m, "study/name"), " (id ", text_cell(m, "study/id", cls="t id"),
        "), task ", text_cell(m, "study/task", cls="t id"), ", model ",
        text_cell(m, "study/model", cls="t id"), ". ",
        cell(m, "sites/*/patients", 0, agg="sum"), " patients at ",
        cell(m, "sites/*", 0, agg="count"),
        " sites took part. Counts below ", const(MIN_CELL, "MIN_CELL"),
        " patients are shown as “&lt;", const(MIN_CELL, "MIN_CELL"),
        "”; a prevalence (share of positive examples) is hidden when it implies fewer than ",
        const(MIN_CELL, "MIN_CELL"), " positive or negative examples. “patients” counts the "
        "site's store, “cohort patients” those with at least one example in the task.</p>",
    ]
    if m.get("task_definition"):
        parts.append("<h3>Task definition</h3>" + text_cell(m, "task_definition", tag="pre"))
    rows = []
    for i, s in enumerate(m.get("sites", [])):
        p = f"sites/{i}"
        row = [text_cell(m, f"{p}/site", cls="t id"), cell(m, f"{p}/patients", 0, count=True)]
        row.append(cell(m, f"{p}/cohort_patients", 0, count=True) if "cohort_patients" in s
                   else MISSING)
        row += [cell(m, f"{p}/train_examples", 0, count=True),
                cell(m, f"{p}/test_examples", 0, count=True),
                cell(m, f"{p}/prevalence", 1, scale=100.0, unit=" %",
                     cases_of=f"{p}/train_examples+{p}/test_examples"),
                cell(m, f"{p}/delta", "g", none=MISSING) if s.get("delta") else MISSING]
        rows.append(row)
    parts.append("<h3>Sites</h3>" + table(
        ["site", "patients", "cohort patients", "train examples", "test examples",
         "prevalence", "δ"], rows))
    excl = m.get("excluded_sites") or []
    if excl:
        erows = []
        for i, e in enumerate(excl):
            p = f"excluded_sites/{i}"
            small = isinstance(e.get("patients"), int) and e["patients"] < MIN_CELL
            reason = ("below the study's minimum size (count suppressed)" if small
                      else text_cell(m, f"{p}/reason"))
            erows.append([text_cell(m, f"{p}/site", cls="t id"),
                          cell(m, f"{p}/patients", 0, count=True), reason])
        parts.append("<h3>Excluded sites</h3>" + table(["site", "patients", "reason"], erows))
    return "".join(parts)


def utility(run: RunData) -> str:
    m = run.metrics
    head = ["configuration", "method", "protection", "AUROC [CI]", "AUPRC [CI]",
            "Brier", "ECE", "test n", "positives", "ε (worst site)", "seconds"]
    rows, exact = [], []
    for i, c in enumerate(run.configs):
        p = f"configs/{i}"
        if not c.get("global"):
            continue
        rows.append([text_cell(m, f"{p}/name", cls="t id"), text_cell(m, f"{p}/method"),
                     text_cell(m, f"{p}/protection"), ci_cell(m, f"{p}/global", "auroc"),
                     ci_cell(m, f"{p}/global", "auprc"), cell(m, f"{p}/global/brier"),
                     cell(m, f"{p}/global/ece"), cell(m, f"{p}/global/n", 0, count=True),
                     cell(m, f"{p}/global/n_pos", 0, count=True), eps_cell(m, i),
                     cell(m, f"{p}/seconds", 1, none=MISSING)])
        if c.get("simulation_exact"):
            q = f"{p}/simulation_exact"
            exact.append([text_cell(m, f"{p}/name", cls="t id"), ci_cell(m, q, "auroc"),
                          ci_cell(m, q, "auprc"), cell(m, f"{q}/brier"), cell(m, f"{q}/ece"),
                          cell(m, f"{q}/n", 0, count=True), cell(m, f"{q}/n_pos", 0, count=True)])
    warn = []
    for i, c in enumerate(run.configs):
        g, x = c.get("global") or {}, c.get("simulation_exact") or {}
        if is_number(g.get("n")) and is_number(x.get("n")) and x["n"] > 0 and \
                abs(g["n"] - x["n"]) > NOISY_N_TOLERANCE * x["n"]:
            warn.append(f"{ident(c['name'])}: released n {cell(m, f'configs/{i}/global/n', 0)} vs "
                        f"exact n {cell(m, f'configs/{i}/simulation_exact/n', 0)}")
    out = ["<p>Released metrics: what the sites actually released (for configurations with DP "
           "evaluation these come from noisy histograms, so n and positives are noisy counts).</p>",
           table(head, rows)]
    if warn:
        out.append('<p class="warn">The noisy evaluation histograms of these configurations '
                   "are far from the truth (released test n differs from the exact n by more "
                   "than half): " + "; ".join(warn) + ". Read their released metrics with "
                   "caution and compare with the simulation-exact view.</p>")
    if exact:
        note = next((c["simulation_exact"].get("note") for c in run.configs
                     if c.get("simulation_exact", {}).get("note")), "")
        out += ["<h3>Simulation-exact view (federated configurations; not released)</h3>",
                f'<p class="note">{esc(note)}. Shown only to measure what DP evaluation costs; '
                "no site released these numbers.</p>",
                table(["configuration", "AUROC [CI]", "AUPRC [CI]", "Brier", "ECE",
                       "test n", "positives"], exact)]
    return "".join(out)


def subgroups(run: RunData) -> str:
    m = run.metrics
    out = ["<p>AUROC and calibration (ECE, Brier) per subgroup of the test patients. Groups with "
           "fewer than ", const(MIN_CELL, "MIN_CELL"), " patients are suppressed.</p>"]
    for i, c in enumerate(run.configs):
        sg = c.get("subgroups") or {}
        if not sg:
            continue
        rows = []
        for attr, label in SUBGROUP_ATTRS:
            for value, stats in (sg.get(attr) or {}).items():
                p = f"configs/{i}/subgroups/{attr}/{value}"
                n = stats.get("n")
                if isinstance(n, int | float) and n < MIN_CELL:
                    rows.append([esc(label), ident(value), cell(m, f"{p}/n", 0, count=True),
                                 "suppressed", "", "", ""])
                    continue
                rows.append([esc(label), ident(value), cell(m, f"{p}/n", 0, count=True),
                             cell(m, f"{p}/n_pos", 0, count=True), ci_cell(m, p, "auroc"),
                             cell(m, f"{p}/ece"), cell(m, f"{p}/brier")])
        out.append(f"<details{' open' if i == 0 else ''}><summary>{ident(c['name'])}</summary>"
                   + table(["attribute", "group", "n", "positives", "AUROC [CI]", "ECE",
                            "Brier"], rows) + "</details>")
    return "".join(out)


def per_site(run: RunData) -> str:
    m = run.metrics
    cfgs = [(i, c) for i, c in enumerate(run.configs) if c.get("per_site")]
    if not cfgs:
        return '<p class="note">No per-site metrics in this run.</p>'
    sites = list(dict.fromkeys(s for _, c in cfgs for s in c["per_site"]))
    out = []
    for metric, label in (("auroc", "AUROC"), ("ece", "ECE (calibration)")):
        rows = []
        for site in sites:
            row = [ident(site)]
            for i, c in cfgs:
                row.append(cell(m, f"configs/{i}/per_site/{site}/{metric}", none=MISSING)
                           if site in c["per_site"] else MISSING)
            rows.append(row)
        out.append(f"<h3>{label} per site (each site's own test patients)</h3>"
                   + table(["site"] + [ident(c["name"]) for _, c in cfgs], rows))
    return "".join(out)


def rounds_view(run: RunData) -> dict[str, list[dict[str, Any]]]:
    """rounds.jsonl grouped by configuration (resolution view for ``src="rounds"`` cells)."""
    view: dict[str, list[dict[str, Any]]] = {}
    for row in run.rounds:
        view.setdefault(str(row.get("config")), []).append(row)
    return view


def cost(run: RunData) -> str:
    m = run.metrics
    rv = rounds_view(run)
    rows = []
    for i, c in enumerate(run.configs):
        p = f"configs/{i}"
        r_key = f"{p}/rounds_completed" if "rounds_completed" in c else f"{p}/rounds"
        has_bytes = bool(c.get("bytes")) and bool(lookup(m, r_key))
        name = c["name"]
        per_round = (cell(run.rounds, f"{name}/*/seconds", 2, src="rounds", agg="mean",
                          resolve_data=rv, none=MISSING) if rv.get(name) else MISSING)
        rows.append([
            text_cell(m, f"{p}/name", cls="t id"), text_cell(m, f"{p}/protection"),
            cell(m, r_key, 0, none=MISSING) if lookup(m, r_key) is not None else MISSING,
            cell(m, f"{p}/seconds", 1, none=MISSING), per_round,
            cell(m, f"{p}/bytes/*/up", 0, agg="mean", div=r_key) if has_bytes else MISSING,
            cell(m, f"{p}/bytes/*/down", 0, agg="mean", div=r_key) if has_bytes else MISSING,
        ])
    out = [table(["configuration", "protection", "rounds", "seconds (total)",
                  "seconds per round (rounds.jsonl)", "bytes up per site per round",
                  "bytes down per site per round"], rows),
           '<p class="note">Bytes are the serialised messages each site sent and received, '
           "averaged over sites and divided by the rounds completed; “–” marks simulation "
           "baselines that exchange nothing.</p>"]
    scoring = m.get("encrypted_scoring")
    if isinstance(scoring, dict) and scoring:
        from privehr.report.sections_privacy import generic

        out.append("<h3>Encrypted inference (CKKS scoring by a site outside the federation)</h3>"
                   + generic(m, "encrypted_scoring", scoring))
    stages = [k for k in (m.get("timings") or {}) if not k.startswith("config:")]
    if stages:
        out.append("<h3>Study stages</h3>" + table(
            ["stage", "seconds"], [[ident(k), cell(m, f"timings/{k}", 1)] for k in stages]))
    return "".join(out)
