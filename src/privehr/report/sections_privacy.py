"""Report sections about privacy: ε per configuration, the ledgers, attacks and audits."""

from __future__ import annotations

import math
from typing import Any

from privehr.report.html import ident, img, not_run, table
from privehr.report.load import RunData
from privehr.report.values import (
    MISSING,
    cell,
    dp_auc_ceiling,
    esc,
    is_number,
    lookup,
    text_cell,
)

MAX_GENERIC_ROWS = 80


def privacy(run: RunData, figure: str | None) -> str:
    m = run.metrics
    rows = []
    for i, c in enumerate(run.configs):
        if not (c.get("privacy") or {}).get("private"):
            continue
        p = f"configs/{i}"
        has_sites = bool(c["privacy"].get("per_site"))
        pd = c.get("protection_details") or {}

        def site_max(key: str, p: str = p, has_sites: bool = has_sites) -> str:
            return (cell(m, f"{p}/privacy/per_site/*/{key}", 2, agg="max")
                    if has_sites else MISSING)

        rows.append([text_cell(m, f"{p}/name", cls="t id"), text_cell(m, f"{p}/protection"),
                     cell(m, f"{p}/protection_details/epsilon_target", 2)
                     if "epsilon_target" in pd else MISSING,
                     cell(m, f"{p}/privacy/epsilon", 2), site_max("epsilon_train"),
                     site_max("epsilon_test"), site_max("epsilon_rdp"),
                     cell(m, f"{p}/protection_details/noise_multiplier", 3)
                     if "noise_multiplier" in pd else MISSING,
                     cell(m, f"{p}/protection_details/delta", "g") if "delta" in pd else MISSING])
    body = [img(figure, "AUROC against epsilon",
                "No private configuration ran, so there is no privacy–utility curve."),
            "<p class=note>Horizontal lines: non-private references (ε = ∞). ε is the worst "
            "site's (ε, δ) for the configuration (privacy.epsilon), PLD accountant.</p>"]
    if rows:
        body.append(table(["configuration", "protection", "ε target", "ε (worst site)",
                           "ε training (max site)", "ε evaluation (max site)",
                           "ε RDP cross-check (max site)", "noise multiplier", "δ"], rows))
    return "".join(body)


def ledger_view(run: RunData) -> dict[str, dict[str, Any]]:
    """Per-site counts from the ledgers (resolution view for ``src="ledger"`` cells)."""
    out: dict[str, dict[str, Any]] = {}
    for site, led in run.ledgers.items():
        mine = [e for e in led.entries if e.study == run.study_id]
        out[site] = {
            "releases_all": len(led.entries),
            "studies": len({e.study for e in led.entries}),
            "releases_study": len(mine),
            "non_private_study": sum(math.isinf(e.epsilon) and e.mechanism.get("mechanism")
                                     == "non_private" for e in mine),
            "shared_patient_factor": led.shared_patient_factor,
        }
    return out


def ledger(run: RunData, figure: str | None, view: dict[str, dict[str, Any]]) -> str:
    m = run.metrics
    out = [img(figure, "cumulative epsilon per round",
               "No private configuration has ledger entries in this run, so there is no ε curve."),
           "<p class=note>Curves: each private configuration's training releases in this study "
           "folded round by round (worst site). The ledger files span every study run on a "
           "store, so a site's total ε is ∞ as soon as any non-private release was made.</p>"]
    out.append(_site_epsilons(run))
    for site, err in run.ledger_errors.items():
        out.append(f'<p class="warn">Ledger of {ident(site)} could not be read '
                   f"({esc(err.split(':')[0])}); its releases are not re-checked here.</p>")
    totals = m.get("ledger_totals") or {}
    sites = list(dict.fromkeys(list(totals) + list(view)))
    if not sites:
        return "".join(out) + not_run("no ledger totals or ledger files in this run directory")
    rows = []
    for site in sites:
        t = f"ledger_totals/{site}"
        lv = site in view
        rows.append([
            ident(site),
            cell(m, f"{t}/epsilon", 2) if site in totals else MISSING,
            cell(m, f"{t}/delta", "g", none=MISSING) if site in totals else MISSING,
            cell(m, f"{t}/entries", 0, none=MISSING) if site in totals else MISSING,
            cell(view, f"{site}/studies", 0, src="ledger") if lv else MISSING,
            cell(view, f"{site}/releases_study", 0, src="ledger") if lv else MISSING,
            cell(view, f"{site}/non_private_study", 0, src="ledger") if lv else MISSING,
        ])
    out.append(table(["site", "ledger ε (all studies)", "δ", "ledger entries",
                      "studies on this store", "releases in this study",
                      "non-private releases in this study"], rows))
    return "".join(out)


def _site_epsilons(run: RunData) -> str:
    """ε of each private configuration at each site (this study's releases; metrics.json)."""
    m = run.metrics
    cfgs = [(i, c) for i, c in enumerate(run.configs)
            if (c.get("privacy") or {}).get("private") and (c["privacy"].get("per_site"))]
    if not cfgs:
        return ""
    sites = list(dict.fromkeys(s for _, c in cfgs for s in c["privacy"]["per_site"]))
    rows = [[ident(site)] + [cell(m, f"configs/{i}/privacy/per_site/{site}/epsilon", 2)
                             if site in c["privacy"]["per_site"] else MISSING for i, c in cfgs]
            for site in sites]
    return ("<h3>ε per site and configuration (this study's releases)</h3>"
            + table(["site"] + [ident(c["name"]) for _, c in cfgs], rows))


def _tpr_text(m: dict[str, Any], p: str, res: dict[str, Any]) -> str:
    pairs = res.get("tpr_at_fpr") or []
    if not pairs:
        return MISSING
    return (f"{cell(m, f'{p}/tpr_at_fpr/0/tpr')} @ FPR {cell(m, f'{p}/tpr_at_fpr/0/fpr')}")


def attacks(run: RunData, mia_fig: str | None, audit_fig: str | None) -> str:
    m = run.metrics
    att = m.get("attacks")
    if not isinstance(att, dict) or not att:
        return not_run("this study has no attack results (metrics.json has no 'attacks'); "
                       "membership inference, update inversion and the audit were not run.")
    if att.get("skipped"):
        return not_run("the attack stage was skipped: ") + text_cell(m, "attacks/skipped", tag="p")
    out = ["<h3>Membership inference</h3>"]
    mia = att.get("membership") or {}
    if att.get("attacked_site"):
        out.append("<p>Attacked site: " + text_cell(m, "attacks/attacked_site", cls="t id")
                   + " (its training patients are the members, its test patients the "
                   "non-members).</p>")
    table_html = mia_table(run, "attacks/membership", mia)
    out.append(img(mia_fig, "membership inference AUC", "") if table_html else "")
    out.append(table_html or not_run("membership inference"))
    out.append("<h3>Update inversion (coordinator reconstructing a record from an update)</h3>")
    out.append(_inversion(m, att.get("inversion")))
    out.append("<h3>One-run audit: empirical ε lower bound vs ledger ε</h3>")
    out.append(_audit(m, att.get("audit") or {}, audit_fig))
    out.append("<h3>Positive controls (attacks that must succeed on leaky models)</h3>")
    pc = att.get("positive_controls")
    pc_table = mia_table(run, "attacks/positive_controls", pc) if isinstance(pc, dict) else ""
    out.append(pc_table or (generic(m, "attacks/positive_controls", pc) if pc
                            else not_run("positive controls")))
    return "".join(out)


def ceiling_paths(run: RunData, name: str, attacked: str | None) -> tuple[str, str] | None:
    """(ε path, δ path) bounding attacks on configuration ``name``; None if it is not private."""
    names = [c.get("name") for c in run.configs]
    if name not in names:
        return None
    i = names.index(name)
    c = run.configs[i]
    if not (c.get("privacy") or {}).get("private"):
        return None
    per_site = (c.get("privacy") or {}).get("per_site") or {}
    if attacked in per_site and "delta" in per_site[attacked]:
        return f"configs/{i}/privacy/epsilon", f"configs/{i}/privacy/per_site/{attacked}/delta"
    if "delta" in (c.get("protection_details") or {}):
        return f"configs/{i}/privacy/epsilon", f"configs/{i}/protection_details/delta"
    return None


def mia_table(run: RunData, base: str, entries: Any) -> str:
    """One row per (target, attack): AUC, CI and, for DP targets, the AUC (ε, δ) allows."""
    m = run.metrics
    if not isinstance(entries, dict):
        return ""
    rows = []
    for name, kinds in entries.items():
        if not isinstance(kinds, dict):
            continue
        if kinds.get("skipped"):
            rows.append([ident(name), "skipped", text_cell(m, f"{base}/{name}/note"), "", "", "",
                         ""])
            continue
        bound = ceiling_paths(run, name, kinds.get("attacked_site") or
                              (m.get("attacks") or {}).get("attacked_site"))
        for kind, res in kinds.items():
            if not isinstance(res, dict) or "auc" not in res:
                continue
            p = f"{base}/{name}/{kind}"
            flag = kinds.get("clearly_above_chance")
            ceiling, verdict = MISSING, ""
            if bound is not None:
                ceiling = cell(m, bound[0], 3, auc_ceiling_delta=bound[1], none=MISSING)
                eps, delta = lookup(m, bound[0]), lookup(m, bound[1])
                if is_number(eps) and is_number(delta):
                    top = dp_auc_ceiling(float(eps), float(delta))
                    lo = (res.get("auc_ci") or [None])[0]
                    if is_number(lo) and lo > top:
                        verdict = '<span class="warn">CI above the ceiling: contradicts ε</span>'
                    elif is_number(res.get("auc")) and res["auc"] > top:
                        verdict = "point estimate above the ceiling (within CI)"
            hi = (res.get("auc_ci") or [None, None])[-1]
            if is_number(hi) and hi < 0.5:
                verdict = ('<span class="warn">CI below chance: members and non-members differ '
                           "systematically (check the split), not a privacy signal</span>")
            rows.append([ident(name) + ({True: " (clearly above chance)",
                                         False: ' <span class="warn">(not above chance)</span>'}
                                        .get(flag, "") if isinstance(flag, bool) else ""),
                         ident(kind),
                         f"{cell(m, f'{p}/auc')} <span class=ci>[{cell(m, f'{p}/auc_ci/0')}, "
                         f"{cell(m, f'{p}/auc_ci/1')}]</span>",
                         ceiling + (f" {verdict}" if verdict else ""),
                         _tpr_text(m, p, res), cell(m, f"{p}/n_members", 0, count=True),
                         cell(m, f"{p}/n_nonmembers", 0, count=True)])
    if not rows:
        return ""
    return table(["target", "attack", "AUC [CI]", "largest AUC (ε, δ) allows", "TPR at lowest FPR",
                  "members", "non-members"], rows)


def _inversion(m: dict[str, Any], inv: Any) -> str:
    if not isinstance(inv, dict) or not inv:
        return not_run("update inversion")
    rows = []
    for setting in ("plain_update", "masked_words", "aggregate", "dp_aggregate"):
        for i, _r in enumerate(inv.get(setting) or []):
            p = f"attacks/inversion/{setting}/{i}"
            rows.append([ident(setting), cell(m, f"{p}/batch_size", 0),
                         cell(m, f"{p}/noise_multiplier", 2, none=MISSING),
                         cell(m, f"{p}/cosine", 3, none=MISSING),
                         cell(m, f"{p}/cosine_chance", 3, none=MISSING),
                         cell(m, f"{p}/cosine_ceiling", 3, none=MISSING),
                         cell(m, f"{p}/binary_exact_fraction", 3, none=MISSING),
                         cell(m, f"{p}/binary_baseline_fraction", 3, none=MISSING),
                         cell(m, f"{p}/reidentification_rate", 3, none=MISSING),
                         cell(m, f"{p}/reidentification_chance", 3, none=MISSING)])
    return table(["setting", "batch", "σ", "cosine", "cosine (chance)", "cosine ceiling",
                  "binary exact", "binary baseline", "re-identified", "chance"], rows)


def _audit(m: dict[str, Any], aud: dict[str, Any], fig: str | None) -> str:
    rows = []
    for cfg, r in aud.items():
        if not isinstance(r, dict) or "eps_lower_bound" not in r:
            continue
        p = f"attacks/audit/{cfg}"
        le = r.get("ledger_epsilon")
        ok = not (is_number(le) and math.isfinite(le)) or r["eps_lower_bound"] <= le
        rows.append([ident(cfg), cell(m, f"{p}/eps_lower_bound", 3),
                     cell(m, f"{p}/ledger_epsilon", 3),
                     "yes" if ok else '<span class="warn">NO: bound above ledger ε</span>',
                     cell(m, f"{p}/m", 0, none=MISSING), cell(m, f"{p}/guesses", 0, none=MISSING),
                     cell(m, f"{p}/correct", 0, none=MISSING),
                     cell(m, f"{p}/confidence", 2, none=MISSING)])
    if not rows:
        return not_run("the one-run privacy audit")
    return img(fig, "audit lower bound vs ledger epsilon", "") + table(
        ["configuration", "ε lower bound", "ledger ε", "consistent", "canaries", "guesses",
         "correct", "confidence"], rows)


def generic(m: dict[str, Any], path: str, node: Any) -> str:
    """Any JSON subtree as (path, value) rows: for result shapes this report does not know."""
    rows: list[list[str]] = []

    def walk(p: str, x: Any) -> None:
        if len(rows) >= MAX_GENERIC_ROWS:
            return
        if isinstance(x, dict):
            for k, v in x.items():
                walk(f"{p}/{k}", v)
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(f"{p}/{i}", v)
        elif is_number(x):
            digits: int | str = 0 if not isinstance(x, float) else (
                "g" if 0 < abs(x) < 0.01 else 3)
            rows.append([ident(p[len(path) + 1:]), cell(m, p, digits)])
        elif isinstance(x, bool) or x is None:
            rows.append([ident(p[len(path) + 1:]), esc({True: "yes", False: "no", None: "–"}[x])])
        else:
            rows.append([ident(p[len(path) + 1:]), text_cell(m, p)])

    walk(path, node)
    return table(["field", "value"], rows)
