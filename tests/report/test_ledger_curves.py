"""Cumulative ε curves from the ledgers: monotone, and ending at the exact accountant value."""

from __future__ import annotations

from dp_accounting import dp_event as de

from privehr.privacy.accountant import Accountant
from privehr.report.ledger_curves import EVALUATION_KINDS, _pick_rounds, epsilon_curves
from privehr.report.load import load_run


def test_curves_end_at_the_exact_epsilon(run_dir):
    run = load_run(run_dir)
    curves = {c.config: c for c in epsilon_curves(run)}
    private = [c["name"] for c in run.configs if c["privacy"]["private"]]
    assert set(curves) == set(private)
    exact = Accountant()
    for name, curve in curves.items():
        assert list(curve.epsilon) == sorted(curve.epsilon)  # cumulative: never decreases
        assert curve.sites == len(run.ledgers)
        assert curve.distinct_sequences == 1  # the fixture charges every site alike
        led = next(iter(run.ledgers.values()))
        events = [e.event for e in led.entries if e.study == run.study_id and e.config == name
                  and e.kind not in EVALUATION_KINDS]
        want = exact.epsilon(events, led.delta)
        # the curve's coarse PLD grid is pessimistic: slightly above, never below
        assert want - 1e-9 <= curve.epsilon[-1] <= want + 0.05
        assert not any(isinstance(ev, de.NonPrivateDpEvent) for ev in events)


def test_pick_rounds_keeps_both_ends():
    rounds = list(range(61))
    picked = _pick_rounds(rounds, 16)
    assert picked[0] == 0 and picked[-1] == 60 and len(picked) <= 16
    assert _pick_rounds([0, 1, 2], 16) == [0, 1, 2]
