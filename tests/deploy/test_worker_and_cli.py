"""The site worker's message handling (no processes) and the deploy CLI commands."""

import json

import pytest
from deploykit import make_deployment
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from typer.testing import CliRunner

from privehr.deploy import records as R
from privehr.deploy.cli import deploy_app
from privehr.deploy.site_runtime import SiteRuntime
from privehr.deploy.site_worker import WHOAMI, answer
from privehr.federation import protocol as P
from privehr.federation.config import load_config
from privehr.federation.wire import Message as PM
from privehr.federation.wire import decode, encode

runner = CliRunner()


@pytest.fixture(autouse=True)
def flower_task(monkeypatch):
    monkeypatch.setattr(TaskIdentity, "_run_id", 7)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 3)


@pytest.fixture
def runtime(tmp_path, stores):
    dep = make_deployment(tmp_path, stores, ["hosp-a", "hosp-b", "hosp-c"])
    return SiteRuntime(dep["prov"].sites["hosp-a"], dep["stores"]["hosp-a"]), dep


def request(rec: dict, mtype: str = R.MESSAGE_TYPE) -> Message:
    return Message(RecordDict({R.RECORD: ConfigRecord(rec)}), dst_node_id=5, message_type=mtype)


def test_answer_whoami_names_site_without_opening_store(runtime):
    rt, _ = runtime
    rep = answer(rt, request({R.STAGE: WHOAMI}))
    assert rep.content[R.RECORD]["site"] == "hosp-a" and rt.store_opened == 0


def test_answer_hello_for_approved_study(runtime):
    rt, dep = runtime
    h = load_config(dep["study"]).config_hash()
    hello = encode(PM(P.HELLO, "s", 0, "coordinator", "hosp-a", {"protocol": P.PROTOCOL_VERSION}))
    rep = answer(rt, request({R.PAYLOAD: hello, R.STUDY: h, R.CONFIG: "fedavg", R.STAGE: "hello", R.HEAD: b""}))
    msg = decode(rep.content[R.RECORD][R.PAYLOAD])
    assert msg.kind == P.REPLY and msg.payload["n_features"] > 0
    assert rep.content[R.RECORD][R.HEAD] and rt.store_opened == 1


def test_answer_rejects_other_types_and_malformed(runtime):
    rt, _ = runtime
    assert answer(rt, request({}, mtype="query.other")).has_error()
    assert answer(rt, request({R.PAYLOAD: b"x"})).has_error()  # no study / config
    rep = answer(rt, request({R.PAYLOAD: b"garbage", R.STUDY: "0" * 64, R.CONFIG: "fedavg"}))
    assert decode(rep.content[R.RECORD][R.PAYLOAD]).payload["code"] == P.ErrorCode.STUDY_NOT_APPROVED


def test_cli_provision_insecure_warns(tmp_path):
    res = runner.invoke(deploy_app, ["provision", "--sites", "a,b,c", "--out", str(tmp_path / "p"), "--insecure"])
    assert res.exit_code == 0, res.output
    assert "INSECURE" in res.output
    assert not (tmp_path / "p" / "coordinator" / "server.key").exists()


def test_cli_provision_bad_name_exits_2(tmp_path):
    res = runner.invoke(deploy_app, ["provision", "--sites", "A_b", "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "sites" in res.output


def test_cli_approve_and_audit_verify(runtime, tmp_path):
    rt, dep = runtime
    site_dir = dep["prov"].sites["hosp-b"]
    res = runner.invoke(deploy_app, ["site", "approve", str(dep["study"]), "--credentials", str(site_dir)])
    assert res.exit_code == 0 and load_config(dep["study"]).config_hash() in res.output.replace("\n", "")
    answer(rt, request({R.STAGE: WHOAMI}))
    rt.handle(b"x", study_hash="0" * 64, config="c")
    rt.close()
    roster = str(dep["prov"].coordinator / "roster.json")
    ok = runner.invoke(deploy_app, ["audit", "verify", str(rt.audit.path), "--roster", roster])
    assert ok.exit_code == 0, ok.output
    lines = rt.audit.path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["time"] = "2000-01-01T00:00:00"
    lines[1] = json.dumps(entry)
    rt.audit.path.write_text("\n".join(lines) + "\n")
    bad = runner.invoke(deploy_app, ["audit", "verify", str(rt.audit.path), "--roster", roster])
    assert bad.exit_code == 1 and "edited" in bad.output
