"""Cumulative ε per round of each private configuration, recomputed from the sites' ledgers.

Why recompute: a ledger line carries the *whole ledger's* ε at that moment (every study on the
store), which is ∞ as soon as any non-private configuration ran. The report wants the
trajectory of one configuration's training releases in this study, so we fold that
configuration's events round by round with the project's accountant.

Speed: the curve uses a PLD grid of 0.01 (the accountant's discretisation is pessimistic, so
the curve can only sit slightly above the exact value); the exact end-point is the one in
``metrics.json`` and is what the tables print. Sites whose event sequences are identical are
computed once, and at most ``max_points`` rounds are evaluated.

Evaluation releases (kind ``histogram``) are made on the sites' test patients and
are accounted separately (``epsilon_test`` in metrics.json); they are left out of the curve.
"""

from __future__ import annotations

from dataclasses import dataclass

from privehr.privacy import events as ev
from privehr.privacy.accountant import Accountant
from privehr.report.load import RunData

EVALUATION_KINDS = frozenset({"histogram"})  # = federation.runner.TEST_PARTITION_KINDS
CURVE_GRID = 1e-2


@dataclass(frozen=True)
class EpsilonCurve:
    """Worst site's cumulative training ε after each evaluated round of one configuration."""

    config: str
    rounds: tuple[int, ...]
    epsilon: tuple[float, ...]
    sites: int
    distinct_sequences: int


def _pick_rounds(rounds: list[int], max_points: int) -> list[int]:
    if len(rounds) <= max_points:
        return rounds
    step = (len(rounds) - 1) / (max_points - 1)
    picked = sorted({rounds[round(i * step)] for i in range(max_points)})
    return picked


def epsilon_curves(run: RunData, *, max_points: int = 16,
                   accountant: Accountant | None = None) -> list[EpsilonCurve]:
    """One curve per private configuration with ledger entries in this study."""
    acct = accountant or Accountant(value_discretization_interval=CURVE_GRID)
    private = [c["name"] for c in run.configs if c.get("privacy", {}).get("private")]
    out: list[EpsilonCurve] = []
    for name in private:
        seqs: dict[tuple[str, ...], list] = {}
        delta = 1e-5
        n_sites = 0
        for led in run.ledgers.values():
            rows = [e for e in led.entries if e.study == run.study_id and e.config == name
                    and e.kind not in EVALUATION_KINDS and e.round is not None]
            if not rows:
                continue
            n_sites += 1
            delta = led.delta
            key = tuple(f"{e.round}:{ev.dumps(e.event)}" for e in rows)
            seqs.setdefault(key, rows)
        if not seqs:
            continue
        all_rounds = sorted({e.round for rows in seqs.values() for e in rows})
        picked = _pick_rounds(all_rounds, max_points)
        worst = [0.0] * len(picked)
        for rows in seqs.values():
            for i, r in enumerate(picked):
                eps = acct.epsilon([e.event for e in rows if e.round <= r], delta)
                worst[i] = max(worst[i], eps)
        out.append(EpsilonCurve(config=name, rounds=tuple(picked), epsilon=tuple(worst),
                                sites=n_sites, distinct_sequences=len(seqs)))
    return out
