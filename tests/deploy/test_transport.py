"""FlowerTransport against a scripted fake Grid: the protocol's deadline decides dropouts."""

from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from privehr.deploy import records as R
from privehr.deploy.audit_log import AuditKeys, AuditLog, read_entries
from privehr.deploy.transport import MIN_TTL_S, FlowerTransport


@pytest.fixture(autouse=True)
def flower_task(monkeypatch):
    """Messages need a run id; inside a ServerApp Flower sets it per process."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 7)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 3)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


@dataclass
class FakeGrid:
    """Replies per node: (delay_s, 'ok' | 'error' | 'never' | 'malformed'); ids are 'm<node>'."""

    clock: Clock
    plan: dict[int, tuple[float, str]]
    pushed: list[Message] = field(default_factory=list)
    reject: set[int] = field(default_factory=set)

    def push_messages(self, msgs):
        out = []
        for m in msgs:
            self.pushed.append(m)
            out.append("" if m.metadata.dst_node_id in self.reject else f"m{m.metadata.dst_node_id}")
        self.t0 = self.clock()
        return out

    def pull_messages(self, ids):
        out = []
        for mid in ids:
            node = int(mid[1:])
            delay, what = self.plan[node]
            if what == "never" or self.clock() - self.t0 < delay:
                continue
            req = next(m for m in self.pushed if m.metadata.dst_node_id == node)
            if what == "error":
                rep = Message(Error(code=5, reason="Node Unavailable"), reply_to=req)
            elif what == "malformed":
                rep = Message(RecordDict({R.RECORD: ConfigRecord({"other": 1})}), reply_to=req)
            else:
                body = req.content[R.RECORD][R.PAYLOAD]
                rep = Message(RecordDict({R.RECORD: ConfigRecord({R.PAYLOAD: b"re:" + body})}), reply_to=req)
            rep.metadata.__dict__["_reply_to_message_id"] = mid
            out.append(rep)
        return out


def make(plan, *, audit=None, reject=()):
    clock = Clock()
    grid = FakeGrid(clock, plan, reject=set(reject))
    nodes = {f"s{n}": n for n in plan}
    t = FlowerTransport(grid, nodes, study_hash="h" * 64, config="fedavg", audit=audit, poll_s=0.5,
                        clock=clock, sleep=clock.sleep)
    return t, grid, clock


def test_all_reply_in_time():
    t, grid, clock = make({1: (1.0, "ok"), 2: (2.0, "ok")})
    out = t.exchange({"s1": b"a", "s2": b"b"}, stage="train", deadline_s=10)
    assert out == {"s1": b"re:a", "s2": b"re:b"}
    assert clock.t < 10 and t.dropouts == []


def test_deadline_decides_dropout_not_flower():
    t, grid, clock = make({1: (1.0, "ok"), 2: (0.0, "never"), 3: (30.0, "ok")})
    t.start_round(2)
    out = t.exchange({"s1": b"a", "s2": b"b", "s3": b"c"}, stage="secagg.masked_input", deadline_s=5)
    assert out == {"s1": b"re:a", "s2": None, "s3": None}
    assert 5 <= clock.t <= 5.5
    assert {d["site"] for d in t.dropouts} == {"s2", "s3"}
    assert all("deadline" in d["why"] and d["round"] == 2 for d in t.dropouts)


def test_error_reply_and_malformed_and_rejected_are_dropouts():
    t, grid, clock = make({1: (0.5, "error"), 2: (0.5, "malformed"), 3: (0.5, "ok"), 4: (0.5, "ok")}, reject=[4])
    out = t.exchange({"s1": b"a", "s2": b"b", "s3": b"c", "s4": b"d", "s9": b"x"}, stage="hello", deadline_s=60)
    assert out == {"s1": None, "s2": None, "s3": b"re:c", "s4": None, "s9": None}
    why = {d["site"]: d["why"] for d in t.dropouts}
    assert why["s1"] == "flower error 5" and why["s2"] == "malformed reply"
    assert "rejected" in why["s4"] and why["s9"] == "not connected"
    assert clock.t < 2  # no waiting for the full deadline once every pending reply is in


def test_messages_carry_type_ttl_group_and_study():
    t, grid, _ = make({1: (0.0, "ok")})
    t.start_round(3)
    t.exchange({"s1": b"payload"}, stage="train", deadline_s=100)
    (m,) = grid.pushed
    assert m.metadata.message_type == "query.privehr" and m.metadata.group_id == "round-3"
    assert m.metadata.ttl == 200
    rec = m.content[R.RECORD]
    assert rec[R.STUDY] == "h" * 64 and rec[R.CONFIG] == "fedavg" and rec[R.STAGE] == "train"
    t.exchange({"s1": b"p"}, stage="train", deadline_s=1)
    assert grid.pushed[-1].metadata.ttl == MIN_TTL_S


def test_excluded_site_is_not_asked():
    t, grid, _ = make({1: (0.0, "ok"), 2: (0.0, "ok")})
    t.exclude(["s2"])
    out = t.exchange({"s1": b"a", "s2": b"b"}, stage="train", deadline_s=5)
    assert out["s2"] is None and len(grid.pushed) == 1


def test_audit_records_sizes_and_macs_not_content(tmp_path):
    log = AuditLog(tmp_path / "c.jsonl", "coordinator", AuditKeys(b"k" * 32, Ed25519PrivateKey.generate()))
    t, grid, _ = make({1: (0.0, "ok")}, audit=log)
    t.exchange({"s1": b"very secret bytes"}, stage="train", deadline_s=5)
    text = (tmp_path / "c.jsonl").read_text()
    assert "very secret" not in text
    msgs = [e for e in read_entries(tmp_path / "c.jsonl") if e["event"] == "message"]
    assert [(m["direction"], m["size"]) for m in msgs] == [("out", 17), ("in", 20)]
    assert grid.pushed[0].content[R.RECORD][R.HEAD]  # our signed head travels with the request


def test_failed_run_still_closes_the_coordinator_audit_log(tmp_path, stores):
    """No site connects: the run fails, and the coordinator's chain ends on a signed head."""
    import pytest
    from deploykit import make_deployment

    from privehr.deploy.audit_log import read_entries, verify_log
    from privehr.deploy.flower_app import run_server
    from privehr.deploy.provision import Roster

    class NoNodes:
        def get_nodes(self):
            return []

    dep = make_deployment(tmp_path, stores, ["hosp-a", "hosp-b", "hosp-c"])
    coord = dep["prov"].coordinator
    with pytest.raises(RuntimeError, match="connected within"):
        run_server(NoNodes(), study=dep["study"], config="fedavg", credentials=coord, out=tmp_path / "out",
                   min_sites=3, wait_s=0.0)
    entries = read_entries(coord / "audit.jsonl")
    assert entries[-2]["event"] == "close" and entries[-2]["outcome"] == "failed"
    rep = verify_log(coord / "audit.jsonl", key=Roster.load(coord / "roster.json").audit_key("coordinator"))
    assert rep.ok, rep.findings
