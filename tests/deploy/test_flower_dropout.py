"""Real processes: four sites, one SIGKILLed mid-round of distributed DP under SecAgg; the round
recovers with three survivors, whose noise shares the accounting assumes (t_min = 3 of 4).

Run alone with ``pytest -m deployment``. The cluster fixture stops every process it started.
"""

import json
import signal
import time

import numpy as np
import pytest
from deploykit import Cluster, verify_all

from privehr.deploy.audit_log import read_entries, verify_log
from privehr.deploy.provision import Roster
from privehr.privacy.ledger import PrivacyLedger, ledger_path_for_store

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.integration]

FOUR = ["hosp-a", "hosp-b", "hosp-c", "hosp-d"]


@pytest.fixture(scope="module")
def four(tmp_path_factory, stores):
    c = Cluster(tmp_path_factory.mktemp("four"), stores, FOUR, deadline=15, rounds=1)
    try:
        c.start_link()
        for s in FOUR:
            c.start_site(s)
        c.wait_sites(FOUR)
        yield c
    finally:
        c.stop()


def test_site_killed_mid_round_secagg_dp_recovers(four, tmp_path):
    """hosp-d dies after sharing its keys; the masked-input deadline drops it; 3 survivors unmask."""
    import threading

    out = tmp_path / "run"
    victim_log = four.prov.sites["hosp-d"] / "audit.jsonl"

    node_log = four.tmp / "site-hosp-d" / "supernode.log"

    def killer():
        # Kill once hosp-d's share_keys reply has left (its SuperNode logged as many sends as the
        # site logged replies): hosp-d is then in the key-sharing set, and others mask with it.
        t_end = time.monotonic() + 240
        while time.monotonic() < t_end:
            outs = [e.get("kind") for e in (read_entries(victim_log) if victim_log.exists() else [])
                    if e.get("event") == "message" and e.get("direction") == "out"]
            sent = node_log.read_text(errors="replace").count("Sent successfully") if node_log.exists() else 0
            if "secagg.share_keys" in outs and sent >= len(outs):
                four.procs["hosp-d"].kill(signal.SIGKILL)
                return
            time.sleep(0.1)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    res = four.run("fedavg_secagg_ddp", out=out, min_sites=4)
    t.join(timeout=5)
    assert res["status"] == "finished:completed", res["details"] + res["log"][-3000:]
    assert not four.procs["hosp-d"].alive()
    summary = json.loads((out / "result.json").read_text())
    (rnd,) = summary["rounds"]
    assert "aborted" not in rnd
    assert rnd["secagg_included"] == ["hosp-a", "hosp-b", "hosp-c"] and rnd["secagg_dropped"] == ["hosp-d"]
    drops = [d for d in summary["dropouts"] if d["site"] == "hosp-d"]
    assert drops[0]["stage"] == "secagg.masked_input" and "deadline" in drops[0]["why"]
    assert np.isfinite(np.load(out / "model.npy")).all()
    survivors = ["hosp-a", "hosp-b", "hosp-c"]
    verify_all(four, survivors)
    # the killed site's log is intact up to the kill (it may lack a final head)
    rep = verify_log(victim_log, key=Roster.load(four.prov.coordinator / "roster.json").audit_key("hosp-d"),
                     require_closed=False)
    assert rep.ok, rep.findings
    # ledger and audit log agree: every ledger release of a survivor has an audit ε entry, and
    # every release was DP (OS-entropy noise): ε stays finite
    for s in survivors:
        ledger = PrivacyLedger(ledger_path_for_store(four.dep["stores"][s]))
        kinds = [e.kind for e in ledger.entries()]
        assert kinds.count("model_update") == 1
        audit_eps = [e for e in read_entries(four.prov.sites[s] / "audit.jsonl") if e["event"] == "epsilon"]
        assert sorted(e["ledger_seq"] for e in audit_eps) == sorted(e.seq for e in ledger.entries())
        assert audit_eps and all(e["epsilon_total"] != "inf" for e in audit_eps)
    # the killed site's masked input never left, so its ledger was never charged for an update
    victim = PrivacyLedger(ledger_path_for_store(four.dep["stores"]["hosp-d"]))
    assert "model_update" not in [e.kind for e in victim.entries()]
