import json
import math
import multiprocessing as mp

import pytest
from dp_accounting import dp_event as de
from dp_accounting.pld import pld_privacy_accountant as pld
from opacus.accountants import PRVAccountant

from privehr.privacy.errors import (
    BudgetExceeded,
    LedgerError,
    PrivacyConfigError,
    UnsupportedEvent,
)
from privehr.privacy.ledger import PrivacyLedger, ledger_path_for_store

DELTA = 1e-5


def sgd(q=0.02, sigma=1.0, steps=100):
    return de.SelfComposedDpEvent(de.PoissonSampledDpEvent(q, de.GaussianDpEvent(sigma)), steps)


def new(tmp_path, **kw):
    kw.setdefault("site", "A")
    kw.setdefault("delta", DELTA)
    return PrivacyLedger(ledger_path_for_store(tmp_path / "site_a.duckdb"), **kw)


def charge(led, event, round=0, kind="model_update", study="s1"):
    return led.charge(event, study=study, config="cfg", round=round, kind=kind, meta={"n": 3})


def test_path_lives_beside_the_store(tmp_path):
    assert ledger_path_for_store(tmp_path / "x.duckdb").name == "x.duckdb.ledger.jsonl"


def test_ledger_epsilon_equals_direct_dp_accounting(tmp_path):
    led = new(tmp_path)
    for r in range(3):
        charge(led, sgd(), round=r)
    ref = pld.PLDAccountant().compose(sgd(steps=300)).get_epsilon(DELTA)
    assert led.epsilon() == pytest.approx(ref, rel=1e-6)
    assert led.entries()[-1].epsilon == pytest.approx(ref, rel=1e-6)
    prv = PRVAccountant()  # independent accountant (Opacus), same parameters
    prv.history = [(1.0, 0.02, 300)]
    assert led.epsilon() == pytest.approx(prv.get_epsilon(delta=DELTA), rel=1e-2)


def test_one_line_per_release_with_event_and_parameters(tmp_path):
    led = new(tmp_path)
    charge(led, sgd(0.05, 1.2, 10), round=4)
    lines = led.path.read_text().splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[1])
    assert rec["event"]["type"] == "SelfComposedDpEvent"
    assert rec["round"] == 4 and rec["kind"] == "model_update" and rec["study"] == "s1"
    assert rec["mechanism"] == {"mechanism": "poisson_sampled_gaussian", "noise_multiplier": 1.2,
                                "sampling_prob": 0.05, "steps": 10}
    assert rec["epsilon"] > 0 and rec["epsilon_rdp"] >= rec["epsilon"]
    assert rec["meta"] == {"n": 3}


def test_epsilon_grows_monotonically_release_by_release(tmp_path):
    led = new(tmp_path)
    for r in range(4):
        charge(led, de.GaussianDpEvent(8.0), round=r, kind="counts")
    eps = [e.epsilon for e in led.entries()]
    assert all(a < b for a, b in zip(eps, eps[1:]))


def test_restart_reloads_and_recomputes_cached_epsilon(tmp_path):
    led = new(tmp_path, epsilon_max=50.0)
    charge(led, sgd())
    charge(led, de.GaussianDpEvent(10.0), kind="standardisation_stats")
    cached = led.entries()[-1].epsilon
    again = PrivacyLedger(led.path)
    assert again.site == "A" and again.delta == DELTA and again.epsilon_max == 50.0
    assert len(again.entries()) == 2
    assert again.epsilon() == pytest.approx(cached, rel=1e-12)
    charge(again, de.GaussianDpEvent(10.0), kind="counts")
    assert again.epsilon() > cached


def test_reopening_with_other_budget_or_delta_is_refused(tmp_path):
    led = new(tmp_path, epsilon_max=3.0)
    with pytest.raises(LedgerError, match="epsilon_max"):
        PrivacyLedger(led.path, epsilon_max=10.0)
    with pytest.raises(LedgerError, match="delta"):
        PrivacyLedger(led.path, delta=1e-3)
    assert PrivacyLedger(led.path, site="A").epsilon_max == 3.0


def test_budget_refusal_names_site_spent_and_remaining_and_writes_nothing(tmp_path):
    led = new(tmp_path, epsilon_max=2.0)
    charge(led, sgd(0.02, 1.0, 100))
    spent = led.epsilon()
    size = led.path.stat().st_size
    with pytest.raises(BudgetExceeded) as err:
        led.check(sgd(0.02, 1.0, 2000))
    with pytest.raises(BudgetExceeded) as err:
        charge(led, sgd(0.02, 1.0, 2000), round=1)
    msg = str(err.value)
    assert "'A'" in msg and f"{spent:.4g}" in msg and "remaining" in msg
    assert err.value.remaining == pytest.approx(2.0 - spent)
    assert err.value.requested > 0 and err.value.projected > 2.0
    assert led.path.stat().st_size == size
    assert led.epsilon() == spent


def test_non_private_release_is_recorded_as_infinite(tmp_path):
    led = new(tmp_path)
    charge(led, de.GaussianDpEvent(5.0), kind="counts")
    entry = led.record_non_private(study="s1", config="cfg", round=None, kind="metrics")
    assert entry.epsilon == math.inf and led.epsilon() == math.inf
    assert json.loads(led.path.read_text().splitlines()[-1])["epsilon"] == "inf"
    assert PrivacyLedger(led.path).epsilon() == math.inf
    assert led.summary()["non_private_releases"] == 1


def test_non_private_release_is_refused_under_a_budget(tmp_path):
    led = new(tmp_path, epsilon_max=8.0)
    with pytest.raises(BudgetExceeded):
        led.record_non_private(study="s1", config="cfg", round=0, kind="weights")
    assert led.entries() == []


def test_bad_event_changes_nothing_and_names_sub_event(tmp_path):
    led = new(tmp_path)
    bad = de.ComposedDpEvent([de.GaussianDpEvent(1.0), de.UnsupportedDpEvent()])
    with pytest.raises(Exception) as err:
        charge(led, bad)
    assert "events[1]" in str(err.value) or "UnsupportedDpEvent" in str(err.value)
    bad2 = de.ComposedDpEvent([de.GaussianDpEvent(1.0),
                               de.PoissonSampledDpEvent(0.1, de.ZCDpEvent(1.0, 0.0))])
    with pytest.raises(UnsupportedEvent, match=r"events\[0\].events\[1\]"):
        charge(led, bad2)
    assert led.entries() == [] and len(led.path.read_text().splitlines()) == 1


def test_kind_and_meta_are_validated(tmp_path):
    led = new(tmp_path)
    with pytest.raises(PrivacyConfigError, match="kind"):
        led.charge(de.GaussianDpEvent(1.0), study="s", config="c", round=0, kind="secret")
    with pytest.raises(PrivacyConfigError, match="meta"):
        led.charge(de.GaussianDpEvent(1.0), study="s", config="c", round=0, kind="counts",
                   meta={"x": object()})


def test_by_study_and_summary(tmp_path):
    led = new(tmp_path, epsilon_max=100.0)
    charge(led, de.GaussianDpEvent(4.0), study="s1", kind="counts")
    charge(led, de.GaussianDpEvent(4.0), study="s2", kind="histogram")
    charge(led, de.GaussianDpEvent(4.0), study="s2", kind="histogram")
    rows = led.by_study()
    assert rows["s1"]["releases"] == 1 and rows["s2"]["releases"] == 2
    assert rows["s2"]["epsilon_alone"] > rows["s1"]["epsilon_alone"]
    assert rows["s2"]["epsilon_cumulative_after"] == pytest.approx(led.epsilon())
    s = led.summary()
    assert s["site"] == "A" and s["releases"] == 3
    assert s["by_kind"] == {"counts": 1, "histogram": 2}
    assert s["remaining"] == pytest.approx(100.0 - s["epsilon"])
    assert s["epsilon_rdp"] >= s["epsilon"]


def test_shared_patient_factor_composes_k_times(tmp_path):
    one = new(tmp_path / "one")
    two = new(tmp_path / "two", shared_patient_factor=2)
    for led in (one, two):
        charge(led, de.GaussianDpEvent(3.0), kind="counts")
    ref = pld.PLDAccountant().compose(de.GaussianDpEvent(3.0), 2).get_epsilon(DELTA)
    assert two.epsilon() == pytest.approx(ref, rel=1e-6)
    assert two.epsilon() > one.epsilon()


def test_torn_or_foreign_lines_are_reported(tmp_path):
    led = new(tmp_path)
    charge(led, de.GaussianDpEvent(3.0), kind="counts")
    with led.path.open("a") as fh:
        fh.write('{"record": "release", "event": {"type": "Pickle"')
    with pytest.raises(LedgerError, match="incomplete"):
        PrivacyLedger(led.path)
    text = led.path.read_text().rsplit("\n", 1)[0] + "\n"
    rec = json.loads(text.splitlines()[1])
    rec["event"] = {"type": "Pickle", "v": 1}
    led.path.write_text(text + json.dumps(rec) + "\n")
    with pytest.raises(LedgerError, match=r":3: .*Pickle"):
        PrivacyLedger(led.path)


def _worker(path, n, tag):
    led = PrivacyLedger(path)
    for i in range(n):
        led.charge(de.GaussianDpEvent(50.0), study=tag, config="c", round=i, kind="counts")


@pytest.mark.slow
def test_two_processes_append_without_losing_releases(tmp_path):
    led = new(tmp_path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(led.path), 5, f"p{k}")) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    entries = led.entries()
    assert len(entries) == 10
    assert sorted(e.seq for e in entries) == list(range(10))
    eps = [e.epsilon for e in entries]
    assert all(a < b for a, b in zip(eps, eps[1:]))  # each writer saw the other's lines
    ref = pld.PLDAccountant().compose(de.GaussianDpEvent(50.0), 10).get_epsilon(DELTA)
    assert led.epsilon() == pytest.approx(ref, rel=1e-6)


def test_threads_sharing_one_ledger_object_do_not_lose_releases(tmp_path):
    import threading

    led = new(tmp_path)
    errors = []

    def work(tag):
        try:
            for i in range(4):
                led.charge(de.GaussianDpEvent(60.0), study=tag, config="c", round=i, kind="counts")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"t{k}",)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(e.seq for e in led.entries()) == list(range(12))
    assert len(PrivacyLedger(led.path).entries()) == 12
