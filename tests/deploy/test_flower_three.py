"""Real processes on localhost: a SuperLink with TLS + SuperNode authentication and three
``privehr site start`` processes (SuperNode in process isolation + the site's own worker).

Run alone with ``pytest -m deployment``. The cluster fixture stops every process it started.
"""

import json

import numpy as np
import pytest
from deploykit import Cluster, free_port, simulate, verify_all

from privehr.deploy.audit_log import read_entries
from privehr.deploy.provision import provision

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.integration]

THREE = ["hosp-a", "hosp-b", "hosp-c"]


@pytest.fixture(scope="module")
def three(tmp_path_factory, stores):
    # seeded test noise (keyed by site name at each site) so the DP run can equal the simulator's
    c = Cluster(tmp_path_factory.mktemp("three"), stores, THREE, deadline=40, rounds=2, noise_seed=7)
    try:
        for s in THREE:  # sites first: `site start` must wait out a coordinator that is not up yet
            c.start_site(s)
        c.start_link()
        c.wait_sites(THREE, timeout=120)
        yield c
    finally:
        c.stop()


def test_three_sites_secagg_dp_over_flower_equals_simulator(three, tmp_path):
    """Two rounds of distributed DP under SecAgg (each site's noise share, masked) over Flower."""
    out = tmp_path / "run"
    res = three.run("fedavg_secagg_ddp", out=out, min_sites=3)
    assert res["status"] == "finished:completed", res["details"] + res["log"][-3000:]
    summary = json.loads((out / "result.json").read_text())
    assert summary["sites"] == THREE and summary["dropouts"] == []
    assert [r["secagg_included"] for r in summary["rounds"]] == [THREE, THREE]
    deployed = np.load(out / "model.npy")
    sim = simulate(three.dep, THREE, "fedavg_secagg_ddp")
    np.testing.assert_allclose(deployed, sim.params, rtol=1e-6, atol=1e-7)
    verify_all(three, THREE)
    # each site's FAB was received but never executed; the audit log says so
    for s in THREE:
        connects = [e for e in read_entries(three.prov.sites[s] / "audit.jsonl") if e.get("fab_hash")]
        assert connects and "not executed" in connects[0]["text"]


def test_three_sites_he_over_flower_equals_simulator(three, tmp_path):
    """CKKS: the key ceremony at the key-holder site's own process, signed context pinned by all."""
    out = tmp_path / "run"
    res = three.run("fedavg_he", out=out, min_sites=3)
    assert res["status"] == "finished:completed", res["details"] + res["log"][-3000:]
    summary = json.loads((out / "result.json").read_text())
    assert summary["dropouts"] == [] and [r["he_sites"] for r in summary["rounds"]] == [THREE, THREE]
    sim = simulate(three.dep, THREE, "fedavg_he")
    np.testing.assert_allclose(np.load(out / "model.npy"), sim.params, rtol=0, atol=1e-5)
    verify_all(three, THREE)


def test_modified_bundle_and_unapproved_study_cannot_read_store(three, tmp_path):
    """A coordinator ships its own ClientApp code and asks for an unapproved study."""
    marker = tmp_path / "fab-code-ran"
    app = tmp_path / "evil"
    (app / "evilapp").mkdir(parents=True)
    (app / "evilapp" / "__init__.py").write_text("")
    (app / "evilapp" / "client_app.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('FAB code ran at a site')\n"
        "from flwr.clientapp import ClientApp\n\napp = ClientApp()\n\n"
        "@app.query('privehr')\ndef steal(msg, context):\n"
        "    data = pathlib.Path(str(context.node_config.get('site', ''))).read_bytes()\n"
        "    raise SystemExit(data)\n")
    results = tmp_path / "evil-replies.json"
    (app / "evilapp" / "server_app.py").write_text(f'''
import json
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import ServerApp
from privehr.federation import protocol as P
from privehr.federation.wire import Message as PM, decode, encode

app = ServerApp()

@app.main()
def main(grid, context):
    ids = list(grid.get_node_ids())
    hello = encode(PM(P.HELLO, "evil", 0, "coordinator", "?", {{"protocol": P.PROTOCOL_VERSION}}))
    msgs = [Message(RecordDict({{"privehr": ConfigRecord({{"payload": hello, "study": "f" * 64,
            "config": "fedavg", "stage": "hello"}})}}), dst_node_id=n, message_type="query.privehr", ttl=60.0)
            for n in ids]
    out = []
    for r in grid.send_and_receive(msgs, timeout=60):
        if r.has_error():
            out.append({{"error": r.error.code}})
        else:
            m = decode(r.content["privehr"]["payload"])
            out.append({{"kind": m.kind, "payload": m.payload}})
    with open({str(results)!r}, "w") as fh:
        json.dump(out, fh)
''')
    (app / "pyproject.toml").write_text('''[project]
name = "evil"
version = "1.0.0"
description = "x"
license = "Apache-2.0"
dependencies = ["flwr>=1.42.0,<1.43"]
[tool.flwr.app]
publisher = "evil"
[tool.flwr.app.components]
serverapp = "evilapp.server_app:app"
clientapp = "evilapp.client_app:app"
''')
    res = three.run("", out=tmp_path, min_sites=3, app_dir=app)
    assert res["status"] == "finished:completed", res["details"] + res["log"][-3000:]
    replies = json.loads(results.read_text())
    assert len(replies) == 3
    assert all(r == {"kind": "error", "payload": {"code": 5}} for r in replies)  # STUDY_NOT_APPROVED
    assert not marker.exists()
    for s in THREE:
        refusals = [e for e in read_entries(three.prov.sites[s] / "audit.jsonl")
                    if e["event"] == "refusal" and e.get("study") == "f" * 64]
        assert refusals and refusals[0]["code"] == 5


def test_unregistered_supernode_key_cannot_join(three, tmp_path):
    stranger = provision(["stranger"], tmp_path / "p")
    site = stranger.sites["stranger"]
    (site / "ca.crt").write_bytes((three.prov.coordinator / "ca.crt").read_bytes())  # right CA, unknown key
    L = three.launch
    argv = L.supernode_argv(site, superlink=f"127.0.0.1:{three.port}", runtime_port=free_port(), insecure=False,
                            max_wait_s=20)
    p = L.start("stranger", argv, tmp_path / "stranger.log", tmp_path / "home")
    try:
        p.popen.wait(timeout=60)
        log = p.log.read_text()
        assert p.popen.returncode != 0
        assert "SuperNode ID" not in log and "Failed to activate" in log
    finally:
        p.stop()


def test_supernode_without_the_ca_cannot_connect(three, tmp_path):
    other = provision(["x"], tmp_path / "p")  # a different CA
    site = three.prov.sites["hosp-a"]
    L = three.launch
    argv = L.supernode_argv(site, superlink=f"127.0.0.1:{three.port}", runtime_port=free_port(), insecure=False,
                            max_wait_s=20)
    argv[argv.index("--root-certificates") + 1] = str(other.sites["x"] / "ca.crt")
    p = L.start("wrong-ca", argv, tmp_path / "wrong-ca.log", tmp_path / "home")
    try:
        p.popen.wait(timeout=60)
        log = p.log.read_text()
        assert p.popen.returncode != 0
        assert "CERTIFICATE_VERIFY_FAILED" in log and "SuperNode ID" not in log
    finally:
        p.stop()
