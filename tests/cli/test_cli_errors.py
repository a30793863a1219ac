"""The CLI turns bad input into one clear message and exit code 2, never a traceback."""

from typer.testing import CliRunner

from privehr.cli import app

runner = CliRunner()


def test_ingest_of_an_empty_directory_says_what_is_wrong(tmp_path):
    empty = tmp_path / "export"
    empty.mkdir()
    res = runner.invoke(app, ["ingest", str(empty), "--store", str(tmp_path / "s.duckdb")])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "Traceback" not in res.output


def test_study_with_invalid_config_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[study]\nmodel = "forest"\n[federation]\nrounds = 0\n[[configs]]\nname = "x"\nmethod = "fedavg"\n'
                   'protection = "dp_local"\n')
    res = runner.invoke(app, ["study", str(bad), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "study.model" in res.output and "federation.rounds" in res.output
    assert "epsilon" in res.output  # dp_local without epsilon names the fix


def test_study_with_broken_toml_names_the_file(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("[study\n")
    res = runner.invoke(app, ["study", str(bad)])
    assert res.exit_code == 2 and "broken.toml" in res.output and "not valid TOML" in res.output


def test_ledger_of_a_missing_store_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["ledger", str(tmp_path / "nope.duckdb")])
    assert res.exit_code == 2 and "no ledger yet" in res.output


def test_tasks_lists_the_builtins():
    res = runner.invoke(app, ["tasks"])
    assert res.exit_code == 0
    for name in ("hypertension_onset", "diabetes_onset", "mortality_5y", "readmission_30d"):
        assert name in res.output
