"""Read-only views of privacy ledgers, for ``privehr ledger STORE|RUN_DIR`` and reports.

Nothing here writes: :func:`find_ledgers` only globs, :func:`open_ledger` refuses to create a
missing ledger, and :func:`format_ledger` renders a site's epsilon release by release and study
by study. Epsilon is always the ledger's own (PLD at the ledger's delta, RDP beside it).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from privehr.privacy.errors import LedgerError
from privehr.privacy.ledger import PrivacyLedger, ledger_path_for_store

SUFFIX = ".ledger.jsonl"


def find_ledgers(path: str | os.PathLike[str]) -> list[Path]:
    """Ledger files for a ledger file, a store file, or every ledger under a directory."""
    p = Path(path)
    if p.is_dir():
        return sorted(q for q in p.rglob(f"*{SUFFIX}") if q.is_file())
    if p.name.endswith(SUFFIX) and p.is_file():
        return [p]
    candidate = ledger_path_for_store(p)
    if candidate.is_file():
        return [candidate]
    raise LedgerError(f"no privacy ledger found for {p} (looked for {candidate.name} and "
                      f"*{SUFFIX} below a directory)")


def open_ledger(path: str | os.PathLike[str]) -> PrivacyLedger:
    """Open an existing ledger without ever creating one."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        raise LedgerError(f"{p} is not an existing privacy ledger")
    return PrivacyLedger(p)


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.3f}"


def ledger_rows(ledger: PrivacyLedger) -> list[dict[str, Any]]:
    """One plain dict per release (JSON-friendly apart from inf epsilons)."""
    return [
        {
            "seq": e.seq, "time": e.time, "study": e.study, "config": e.config,
            "round": e.round, "kind": e.kind, **{f"mech_{k}": v for k, v in e.mechanism.items()},
            "epsilon": e.epsilon, "epsilon_rdp": e.epsilon_rdp, "delta": e.delta,
        }
        for e in ledger.entries()
    ]


def format_ledger(ledger: PrivacyLedger, *, max_rows: int | None = None) -> str:
    """Plain-text report: header, releases (cumulative epsilon), then per-study totals."""
    s = ledger.summary()
    lines = [
        f"site {s['site']}  ledger {ledger.path}",
        f"epsilon = {_fmt(s['epsilon'])} (PLD), {_fmt(s['epsilon_rdp'])} (RDP cross-check) at "
        f"delta = {s['delta']:.3g}; budget {_fmt(s['epsilon_max'])}, remaining "
        f"{_fmt(s['remaining'])}; {s['releases']} releases, {s['non_private_releases']} "
        f"non-private; shared_patient_factor {s['shared_patient_factor']}",
        "",
        f"{'#':>4} {'study':<16} {'config':<16} {'round':>5} {'kind':<22} {'mechanism':<26} "
        f"{'eps cum':>8} {'eps rdp':>8}",
    ]
    entries = ledger.entries()
    shown = entries if max_rows is None else entries[-max_rows:]
    if len(shown) < len(entries):
        lines.append(f"  ... {len(entries) - len(shown)} earlier releases not shown")
    for e in shown:
        m = e.mechanism
        mech = m.get("mechanism", "?")
        if "noise_multiplier" in m:
            mech = f"{mech[:12]} s={m['noise_multiplier']:.3g} q={m['sampling_prob']:.3g}"
        rnd = "-" if e.round is None else str(e.round)
        lines.append(
            f"{e.seq:>4} {e.study[:16]:<16} {e.config[:16]:<16} {rnd:>5} {e.kind[:22]:<22} "
            f"{mech[:26]:<26} {_fmt(e.epsilon):>8} {_fmt(e.epsilon_rdp):>8}"
        )
    lines += ["", f"{'study':<24} {'releases':>8} {'non-private':>11} {'eps alone':>10} "
                  f"{'eps cum after':>13}"]
    for study, row in ledger.by_study().items():
        lines.append(
            f"{study[:24]:<24} {row['releases']:>8} {row['non_private']:>11} "
            f"{_fmt(row['epsilon_alone']):>10} {_fmt(row['epsilon_cumulative_after']):>13}"
        )
    return "\n".join(lines)
