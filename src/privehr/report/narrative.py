"""Plain-language sentences generated from the numbers: what an attacker could learn, limits.

Why generated: a summary typed by hand goes stale the first time a study is re-run. Every
figure in these sentences is a traceable cell; every judgement ("no better than guessing",
"consistent with the ledger") is computed from the same figures.
"""

from __future__ import annotations

import math
from typing import Any

from privehr.report.html import ident
from privehr.report.load import RunData
from privehr.report.sections_privacy import ceiling_paths
from privehr.report.values import MIN_CELL, cell, const, lookup, text_cell

MIA_PREFERENCE = ("lira_online", "lira_offline", "threshold")


def _eps(c: dict[str, Any]) -> float | None:
    e = (c.get("privacy") or {}).get("epsilon")
    return None if e is None or not math.isfinite(float(e)) else float(e)


def _mia_kind(entry: dict[str, Any]) -> str | None:
    for kind in MIA_PREFERENCE:
        if isinstance(entry.get(kind), dict) and entry[kind].get("auc") is not None:
            return kind
    for kind, res in entry.items():
        if isinstance(res, dict) and res.get("auc") is not None:
            return kind
    return None


def _mia_phrase(run: RunData, base: str, name: str, kind: str) -> str:
    m = run.metrics
    p = f"{base}/{name}/{kind}"
    res = lookup(m, p) or {}
    ci = res.get("auc_ci") or [None, None]
    verdict = ("no better than a coin flip" if ci[0] is not None and ci[0] <= 0.5 <= ci[1]
               else "better than a coin flip")
    names = [c.get("name") for c in run.configs]
    eps = ""
    if base.endswith("membership") and name in names:
        i = names.index(name)
        eps = f" (ε = {cell(m, f'configs/{i}/privacy/epsilon', 2)}"
        bound = ceiling_paths(run, name, (m.get("attacks") or {}).get("attacked_site"))
        if bound is not None:
            eps += (", the most any attack can reach is AUC "
                    + cell(m, bound[0], 2, auc_ceiling_delta=bound[1], none="–"))
        eps += ")"
    ci_txt = (f" [{cell(m, f'{p}/auc_ci/0')}, {cell(m, f'{p}/auc_ci/1')}]"
              if ci[0] is not None else "")
    return f"AUC {cell(m, f'{p}/auc')}{ci_txt} against {ident(name)}{eps}, {verdict}"


def attacker_summary(run: RunData, *, brief: bool = False) -> list[str]:
    """HTML sentences; an explicit 'not run' sentence when the run has no attack results.

    ``brief`` (slides) keeps one non-private target (federated if any) and the two most
    private ones.
    """
    m = run.metrics
    attacks = m.get("attacks")
    if not isinstance(attacks, dict) or not attacks:
        return ["Attacks were <strong>not run</strong> for this study: this report cannot say "
                "what an attacker could learn. Enable the attack stage of the study to get "
                "membership-inference, update-inversion and audit evidence."]
    if attacks.get("skipped"):
        return ["Attacks were <strong>not run</strong> (skipped): "
                + text_cell(m, "attacks/skipped")]
    out: list[str] = []
    mia = attacks.get("membership") or {}
    by_cfg = {c["name"]: c for c in run.configs}
    plain = [n for n in mia if n in by_cfg and _eps(by_cfg[n]) is None and _mia_kind(mia[n])]
    private = sorted((n for n in mia if n in by_cfg and _eps(by_cfg[n]) is not None
                      and _mia_kind(mia[n])), key=lambda n: _eps(by_cfg[n]) or 0.0)
    if brief:
        fed = [n for n in plain if by_cfg[n].get("method") not in ("centralised", "site_only")]
        plain, private = (fed or plain)[:1], private[:2]
    if plain or private:
        phrases = [_mia_phrase(run, "attacks/membership", n, _mia_kind(mia[n]) or "")
                   for n in plain + private]
        kinds = sorted({_mia_kind(mia[n]) or "" for n in plain + private})
        out.append(f"Membership inference ({', '.join(kinds)}) — can an attacker holding the "
                   "final model tell whether a patient was in training? " + "; ".join(phrases)
                   + ".")
    else:
        out.append("Membership inference was <strong>not run</strong> in this study.")
    pc = attacks.get("positive_controls") or {}
    controls = [n for n, e in pc.items() if isinstance(e, dict) and _mia_kind(e)]
    if controls:
        works = any(pc[n].get("clearly_above_chance") for n in controls)
        out.append("Positive controls (the same attacks on models built to memorise their "
                   "patients): " + "; ".join(_mia_phrase(run, "attacks/positive_controls", n,
                                                         _mia_kind(pc[n]) or "")
                                             for n in controls)
                   + (". The attacks do find members when a model leaks, so low AUCs above "
                      "are evidence of protection." if works else
                      '. <span class="warn">No control is clearly above chance: low AUCs above '
                      "may only mean the attack is weak.</span>"))
    inv = attacks.get("inversion") or {}
    if isinstance(inv, dict) and inv.get("plain_update"):
        out.append(_inversion_sentence(run, inv))
    else:
        out.append("Update inversion was <strong>not run</strong> in this study.")
    aud = attacks.get("audit") or {}
    rows = [(n, r) for n, r in aud.items() if isinstance(r, dict) and "eps_lower_bound" in r]
    if rows:
        parts = []
        for n, r in rows:
            p = f"attacks/audit/{n}"
            le = r.get("ledger_epsilon")
            finite = isinstance(le, int | float) and math.isfinite(le)
            ok = (not finite) or r["eps_lower_bound"] <= le
            verdict = ("consistent with the ledger" if ok
                       else '<span class="warn">ABOVE the ledger ε: accounting is broken</span>')
            parts.append(f"{ident(n)}: lower bound {cell(m, f'{p}/eps_lower_bound', 2)} vs ledger "
                         f"ε {cell(m, f'{p}/ledger_epsilon', 2)} ({verdict})")
        out.append("One-run audit (empirical ε lower bound; it must never exceed the ledger): "
                   + "; ".join(parts) + ".")
    else:
        out.append("The one-run privacy audit was <strong>not run</strong> in this study.")
    return out


def _first(rows: list[dict[str, Any]], **want: Any) -> int | None:
    for i, r in enumerate(rows):
        if all(r.get(k) == v for k, v in want.items()):
            return i
    return None


def _inversion_sentence(run: RunData, inv: dict[str, Any]) -> str:
    m = run.metrics
    base = "attacks/inversion"
    plain = inv["plain_update"]
    i = _first(plain, batch_size=1)
    i = 0 if i is None else i
    p = f"{base}/plain_update/{i}"
    parts = [f"from one site's plain update of {cell(m, f'{p}/batch_size', 0)} patient(s) the "
             f"coordinator reconstructs the record with cosine {cell(m, f'{p}/cosine', 2)} "
             f"(random direction: {cell(m, f'{p}/cosine_chance', 2, none='–')}) and re-identifies "
             f"it by linkage in {cell(m, f'{p}/reidentification_rate', 0, scale=100.0, none='–')} "
             "% of trials"]
    masked = inv.get("masked_words") or []
    j = _first(masked, batch_size=plain[i].get("batch_size"))
    if j is not None:
        q = f"{base}/masked_words/{j}"
        parts.append(f"behind SecAgg masks the same update gives cosine "
                     f"{cell(m, f'{q}/cosine', 2)}")
    dp = inv.get("dp_aggregate") or []
    noisy = [(r.get("noise_multiplier") or 0.0, k) for k, r in enumerate(dp)
             if r.get("batch_size") == plain[i].get("batch_size") and r.get("noise_multiplier")]
    if noisy:
        k = max(noisy)[1]
        q = f"{base}/dp_aggregate/{k}"
        parts.append(f"with DP noise σ = {cell(m, f'{q}/noise_multiplier', 2)} the cosine drops "
                     f"to {cell(m, f'{q}/cosine', 2)}")
    return "Update inversion: " + "; ".join(parts) + "."


def limits(run: RunData, ledger_view: dict[str, dict[str, Any]]) -> list[str]:
    """Limits and assumptions, each generated from the run's files."""
    m = run.metrics
    out: list[str] = []
    if ledger_view:
        site = next(iter(ledger_view))
        out.append("Each patient is assumed to be treated at one site only: the ledgers' "
                   f"shared-patient factor is {cell(ledger_view, f'{site}/shared_patient_factor', 0, src='ledger')}"
                   " (a patient seen at two hospitals spends ε at both, and no ledger notices).")
    else:
        out.append("No site ledger was found in this run directory, so the per-site ε cannot be "
                   "re-checked from the ledgers.")
    he = [i for i, c in enumerate(run.configs) if c.get("protection") == "he"]
    if he:
        i = he[0]
        holder = ("" if not lookup(m, f"configs/{i}/protection_details/key_holder") else
                  " (here the site " + text_cell(m, f"configs/{i}/protection_details/key_holder",
                                                 cls="t id") + ")")
        out.append("CKKS encryption uses a single key pair: the key holder" + holder
                   + " can decrypt any single site's update, so it must not collude with the "
                   "coordinator; HE protects updates in transit, not the released model (ε = ∞).")
    if m.get("sites"):
        out.append(f"Sites are small: the smallest has {cell(m, 'sites/*/patients', 0, agg='min', count=True)}"
                   f" patients and the largest {cell(m, 'sites/*/patients', 0, agg='max', count=True)}"
                   "; per-site metrics have wide intervals and DP noise weighs more at small sites.")
    if m.get("excluded_sites"):
        out.append(f"{cell(m, 'excluded_sites/*', 0, agg='count')} sites were excluded (too few "
                   "patients or a single outcome class); their patients are not represented.")
    nonpriv = [c["name"] for c in run.configs if _eps(c) is None]
    if nonpriv:
        out.append("Configurations without differential privacy (ε = ∞): "
                   + ", ".join(ident(n) for n in nonpriv)
                   + ". Secure aggregation alone hides a site's update from the coordinator but "
                     "bounds nothing about what the released model reveals.")
    if any(c.get("simulation_exact") for c in run.configs):
        out.append("The simulation-exact metrics are computed by the test harness on pooled "
                   "predictions; no site released them.")
    exports = lookup(run.resolved_config or {}, "config/data/exports") or []
    if any("synthea" in str(x).lower() for x in exports):
        out.append("The records are Synthea synthetic patients: trajectories are regular, so "
                   "absolute AUROCs are not clinical evidence; compare configurations instead.")
    out.append(f"Counts below {const(MIN_CELL, 'MIN_CELL')} patients are suppressed in this "
               "report; metrics.json itself is not suppressed and must not be shared as is.")
    return out
