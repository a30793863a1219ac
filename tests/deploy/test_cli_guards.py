"""Deploy CLI guards for the README walkthrough: no silent re-provisioning, no bare traceback
when `coordinator run` finds no SuperLink, and help that says where the audit log is."""

from typer.testing import CliRunner

from privehr.deploy import launch
from privehr.deploy.cli import deploy_app

runner = CliRunner()


def test_provision_refuses_a_folder_that_holds_a_deployment(tmp_path):
    out = tmp_path / "prov"
    first = runner.invoke(deploy_app, ["provision", "--sites", "a,b,c", "--out", str(out)])
    assert first.exit_code == 0, first.output
    keys = {p: p.read_bytes() for p in out.rglob("*.key")}
    again = runner.invoke(deploy_app, ["provision", "--sites", "a,b,c", "--out", str(out)])
    assert again.exit_code == 2, again.output
    assert "already holds a provisioned deployment" in " ".join(again.output.split())
    assert {p: p.read_bytes() for p in out.rglob("*.key")} == keys  # nothing was replaced


def test_coordinator_run_without_superlink_says_what_to_start(tmp_path):
    study = tmp_path / "study.toml"
    study.write_text("[study]\nname='x'\n")
    res = runner.invoke(deploy_app, ["coordinator", "run", str(study), "--config", "fedavg",
                                     "--credentials", str(tmp_path / "coordinator"), "--out", str(tmp_path / "run"),
                                     "--state", str(tmp_path / "nostate")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)  # a message, not a traceback
    assert "privehr coordinator start --state" in text
    assert not (tmp_path / "nostate").exists()  # no default Flower config left behind


def test_coordinator_run_reports_launch_errors_without_traceback(tmp_path, monkeypatch):
    state = tmp_path / "state"
    (state / "flwr-home").mkdir(parents=True)
    (state / "flwr-home" / "config.toml").write_text("[superlink]\n")

    def down(*_a, **_k):
        raise launch.LaunchError("flwr run failed (0): Connection to the SuperLink is unavailable.")

    monkeypatch.setattr(launch, "run_deployed_study", down)
    res = runner.invoke(deploy_app, ["coordinator", "run", str(tmp_path / "s.toml"), "--config", "fedavg",
                                     "--credentials", str(tmp_path / "c"), "--out", str(tmp_path / "run"),
                                     "--state", str(state)])
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit)
    text = " ".join(res.output.split())
    assert "SuperLink is unavailable" in text and "still running" in text


def test_coordinator_run_help_names_the_audit_log(tmp_path):
    res = runner.invoke(deploy_app, ["coordinator", "run", "--help"], env={"COLUMNS": "200"})
    assert "CREDENTIALS/audit.jsonl" in res.output


def test_coordinator_start_wrong_credentials_or_busy_port_says_what_to_fix(tmp_path):
    import socket

    res = runner.invoke(deploy_app, ["coordinator", "start", "--credentials", str(tmp_path / "nope"),
                                     "--state", str(tmp_path / "s")])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert "written by `privehr provision`" in " ".join(res.output.split())
    prov = tmp_path / "prov"
    assert runner.invoke(deploy_app, ["provision", "--sites", "a,b,c", "--out", str(prov)]).exit_code == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = runner.invoke(deploy_app, ["coordinator", "start", "--credentials", str(prov / "coordinator"),
                                         "--port", str(port), "--state", str(tmp_path / "s")])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert "already in use" in " ".join(res.output.split())
    assert not (tmp_path / "s").exists()  # refused before anything was started or written
