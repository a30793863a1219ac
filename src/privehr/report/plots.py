"""Figures of the report and the slides, drawn once with matplotlib (Agg) and inlined as PNG.

Figures are plain ``matplotlib.figure.Figure`` objects rendered by the Agg canvas: no pyplot,
so no global figure registry and no backend switch for the rest of the process.

Why inline PNG (``data:image/png;base64``): the report must be one self-contained file that a
hospital can archive or e-mail; no figure may be fetched from anywhere. Each function takes the
loaded run and returns a ``data:`` URI, or ``None`` when the run has nothing to draw (the
caller then prints a visible note). The slides call the very same functions.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

from matplotlib.figure import Figure

from privehr.report.ledger_curves import EpsilonCurve
from privehr.report.load import RunData

COLOURS = {"none": "#555555", "secagg": "#1f77b4", "dp_local": "#d62728", "ddp": "#2ca02c",
           "he": "#9467bd"}
DPI = 110


def _subplots(figsize: tuple[float, float], ncols: int = 1, sharey: bool = False) -> Any:
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols, sharey=sharey)


def to_data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _eps(c: dict[str, Any]) -> float | None:
    eps = c.get("privacy", {}).get("epsilon")
    return None if eps is None or not math.isfinite(float(eps)) else float(eps)


def _utility(c: dict[str, Any]) -> dict[str, Any]:
    """The exact view of a final model (simulation) when present: DP-noised released histograms
    at these site sizes are too noisy to compare configurations (shown in the tables instead)."""
    return c.get("simulation_exact") or c["global"]


def privacy_utility(run: RunData) -> str | None:
    """AUROC (95% CI) against ε for the private configurations, references as lines."""
    private = [c for c in run.configs if _eps(c) is not None and c.get("global")]
    if not private:
        return None
    fig, ax = _subplots((7.0, 4.2))
    for prot in sorted({c["protection"] for c in private}):
        pts = sorted((_eps(c), c) for c in private if c["protection"] == prot)
        xs = [p[0] for p in pts]
        ys = [_utility(p[1])["auroc"] for p in pts]
        lo = [y - _utility(p[1]).get("ci", {}).get("auroc", [y, y])[0] for y, p in zip(ys, pts, strict=True)]
        hi = [_utility(p[1]).get("ci", {}).get("auroc", [y, y])[1] - y for y, p in zip(ys, pts, strict=True)]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=f"{prot} (federated)",
                    color=COLOURS.get(prot))
    styles = ["--", ":", "-.", (0, (5, 1))]
    refs = [c for c in run.configs if _eps(c) is None and c.get("global")
            and (c["method"] in ("centralised", "site_only") or c["protection"] == "none")]
    seen: set[str] = set()
    for i, c in enumerate(refs):
        key = c["method"] if c["method"] in ("centralised", "site_only") else "federated"
        if key in seen:
            continue
        seen.add(key)
        ax.axhline(_utility(c)["auroc"], linestyle=styles[i % len(styles)], color="#777777",
                   linewidth=1.2, label=f"{c['name']} (ε = ∞)")
    ax.axhline(0.5, color="#bbbbbb", linewidth=0.8)
    ax.set_xscale("log")
    ticks = sorted({_eps(c) for c in private})
    ax.set_xticks(ticks, [f"{t:.2g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("ε (worst site, from privacy.epsilon)")
    ax.set_ylabel("AUROC, exact view of the final model\n(simulation; bootstrap CI)")
    ax.set_title("Privacy–utility")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def ledger_curves(curves: list[EpsilonCurve]) -> str | None:
    """Cumulative training ε per round (worst site) for each private configuration."""
    if not curves:
        return None
    fig, ax = _subplots((7.0, 3.8))
    for curve in curves:
        ax.plot(curve.rounds, curve.epsilon, marker=".", label=curve.config)
    ax.set_xlabel("round (0 = standardisation statistics)")
    ax.set_ylabel("cumulative ε (training releases)")
    ax.set_title("Privacy ledger over rounds (worst site; PLD, grid 0.01)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def membership(run: RunData) -> str | None:
    """Membership-inference AUC with CI per configuration and attack; 0.5 is chance."""
    mia = (run.metrics.get("attacks") or {}).get("membership") or {}
    rows = [(cfg, kind, res) for cfg, kinds in mia.items() if isinstance(kinds, dict)
            for kind, res in kinds.items() if isinstance(res, dict) and "auc" in res]
    if not rows:
        return None
    kinds = sorted({k for _, k, _ in rows})
    cfgs = list(dict.fromkeys(c for c, _, _ in rows))
    fig, ax = _subplots((7.0, 0.6 + 0.45 * len(cfgs) * max(1, len(kinds)) / 1.5))
    h = 0.8 / len(kinds)
    for j, kind in enumerate(kinds):
        for i, cfg in enumerate(cfgs):
            res = mia.get(cfg, {}).get(kind)
            if not isinstance(res, dict) or res.get("auc") is None:
                continue
            lo, hi = (res.get("auc_ci") or [res["auc"], res["auc"]])[:2]
            ax.errorbar(res["auc"], i + j * h, xerr=[[res["auc"] - lo], [hi - res["auc"]]],
                        fmt="o", capsize=3, color=f"C{j}", label=kind if i == 0 else None)
    ax.axvline(0.5, color="#999999", linestyle="--", linewidth=1)
    ax.set_yticks([i + 0.4 - h / 2 for i in range(len(cfgs))], cfgs, fontsize=8)
    ax.set_xlabel("membership-inference AUC (with CI); 0.5 = chance")
    ax.set_title("What a membership attacker learns")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    return to_data_uri(fig)


def audit(run: RunData) -> str | None:
    """Empirical ε lower bound (one-run audit) beside the ledger's ε per configuration."""
    aud = (run.metrics.get("attacks") or {}).get("audit") or {}
    rows = [(cfg, r) for cfg, r in aud.items() if isinstance(r, dict) and "eps_lower_bound" in r]
    if not rows:
        return None
    fig, ax = _subplots((7.0, 1.2 + 0.6 * len(rows)))
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], [r["eps_lower_bound"] for _, r in rows], height=0.4,
            color="#d62728", label="audit lower bound")
    labelled = False
    for y, (_, r) in zip(ys, rows, strict=True):
        le = r.get("ledger_epsilon")
        if isinstance(le, int | float) and math.isfinite(le):
            ax.barh(y - 0.2, le, height=0.4, color="#2ca02c",
                    label=None if labelled else "ledger ε")
            labelled = True
        else:
            ax.text(0.99, y - 0.2, "ledger ε = ∞ (non-private)", va="center", ha="right",
                    fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_yticks(list(ys), [c for c, _ in rows], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("ε")
    ax.set_title("Audit lower bound vs ledger ε (bound must stay below)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    return to_data_uri(fig)


def cost(run: RunData) -> str | None:
    """Seconds and upload bytes per site per round, per configuration."""
    rows = []
    for c in run.configs:
        r = c.get("rounds_completed") or c.get("rounds") or 0
        up = [v.get("up", 0) for v in (c.get("bytes") or {}).values()]
        if r and up:
            rows.append((c["name"], c.get("protection", "none"), c.get("seconds", 0.0) / r,
                         sum(up) / len(up) / r))
    if not rows:
        return None
    fig, (a1, a2) = _subplots((8.5, 0.9 + 0.35 * len(rows)), 2, sharey=True)
    ys = range(len(rows))
    colours = [COLOURS.get(p, "#888888") for _, p, _, _ in rows]
    a1.barh(list(ys), [s for _, _, s, _ in rows], color=colours)
    a1.set_yticks(list(ys), [n for n, _, _, _ in rows], fontsize=8)
    a1.set_xlabel("seconds per round")
    a2.barh(list(ys), [b / 1024 for _, _, _, b in rows], color=colours)
    a2.set_xlabel("KiB uploaded per site per round")
    fig.suptitle("Cost per protection")
    for ax in (a1, a2):
        ax.grid(alpha=0.3, axis="x")
    return to_data_uri(fig)
