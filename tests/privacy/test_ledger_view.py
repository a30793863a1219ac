import math

import pytest
from dp_accounting import dp_event as de

import privehr.privacy as pp
from privehr.privacy.errors import LedgerError
from privehr.privacy.ledger import PrivacyLedger, ledger_path_for_store
from privehr.privacy.ledger_view import find_ledgers, format_ledger, ledger_rows, open_ledger


def make(tmp_path, name="A"):
    store = tmp_path / "stores" / f"{name}.duckdb"
    led = PrivacyLedger(ledger_path_for_store(store), site=name, delta=1e-6, epsilon_max=20.0)
    led.charge(de.GaussianDpEvent(6.0), study="s1", config="dp_e3", round=None,
               kind="standardisation_stats")
    led.charge(de.SelfComposedDpEvent(de.PoissonSampledDpEvent(0.1, de.GaussianDpEvent(2.0)), 5),
               study="s2", config="dp_e3", round=0, kind="model_update")
    return store, led


def test_find_ledgers_from_store_file_ledger_file_and_directory(tmp_path):
    store_a, led_a = make(tmp_path, "A")
    _, led_b = make(tmp_path, "B")
    assert find_ledgers(store_a) == [led_a.path]
    assert find_ledgers(led_a.path) == [led_a.path]
    assert find_ledgers(tmp_path) == sorted([led_a.path, led_b.path])
    with pytest.raises(LedgerError, match="no privacy ledger"):
        find_ledgers(tmp_path / "nothing.duckdb")


def test_open_ledger_never_creates(tmp_path):
    missing = tmp_path / "x.duckdb.ledger.jsonl"
    with pytest.raises(LedgerError):
        open_ledger(missing)
    assert not missing.exists()


def test_format_shows_each_release_and_each_study(tmp_path):
    _, led = make(tmp_path)
    text = format_ledger(open_ledger(led.path))
    assert "site A" in text and "delta = 1e-06" in text
    assert "standardisation_stats" in text and "model_update" in text
    assert f"{led.epsilon():.3f}" in text
    assert "s1" in text and "s2" in text
    rows = ledger_rows(led)
    assert [r["seq"] for r in rows] == [0, 1]
    assert rows[1]["mech_sampling_prob"] == 0.1 and rows[1]["epsilon"] == led.epsilon()


def test_non_private_shows_inf(tmp_path):
    led = PrivacyLedger(tmp_path / "p.ledger.jsonl", site="P", delta=1e-6)
    led.record_non_private(study="s", config="plain", round=0, kind="metrics")
    text = format_ledger(led)
    assert "inf" in text and math.isinf(led.epsilon())


def test_package_exports_resolve():
    for name in pp.__all__:
        assert getattr(pp, name) is not None
    with pytest.raises(AttributeError):
        pp.does_not_exist  # noqa: B018
