"""Budget refusal before data is touched; per-stage deadlines decide dropouts."""

import logging
import time

import numpy as np
from fedkit import synthetic_sites

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, parse_config
from privehr.federation.coordinator import Coordinator, Deadlines
from privehr.federation.handlers import SiteHandlers
from privehr.federation.methods import run_federated
from privehr.federation.modes import make_protection
from privehr.federation.runner import LedgerBook
from privehr.federation.simulator import DropoutPlan, InProcessTransport
from privehr.federation.site import SiteNode
from privehr.federation.study import PreparedStudy
from privehr.privacy.noise import NoiseSource


def test_exhausted_budget_refuses_the_round_before_training_and_names_the_site(tmp_path, caplog):
    cfg = parse_config({
        "study": {"seed": 0, "bootstrap": 0},
        "federation": {"rounds": 3, "local_epochs": 1},
        "privacy": {"budget_epsilon": 1.0, "on_budget_exhausted": "stop", "dp_evaluation": False},
        "configs": [{"name": "dp", "method": "fedavg", "protection": "dp_local", "epsilon": 3.0}],
    })
    sites = synthetic_sites(k=3)
    for s in sites:
        s.store = tmp_path / f"{s.name}.duckdb"
    prep = PreparedStudy(cfg, sites, [f"f{i}" for i in range(6)])
    book = LedgerBook(prep, "study-1")
    entry = cfg.configs[0]
    trained = []
    protection = make_protection(entry, cfg, prep, NoiseSource.secure())
    with caplog.at_level(logging.WARNING):
        res = run_federated(cfg, sites, entry, charge_for=book.charge_for, precheck_for=book.precheck_for,
                            protection=protection, study_id="study-1")
    assert res.rounds[0]["budget_exhausted"] == ["site0", "site1", "site2"]
    assert "stopped" in res.rounds[0] and len(res.rounds) == 1
    assert "site 'site0': privacy budget exceeded" in caplog.text and "remaining" in caplog.text
    for name, led in book.ledgers.items():
        kinds = [e.kind for e in led.entries()]
        assert "model_update" not in kinds, f"{name} released an update past its budget"
        assert led.epsilon() <= 1.0
    assert trained == []


def test_a_site_slower_than_the_stage_deadline_is_dropped():
    sites = synthetic_sites(k=3)
    nodes = {}
    for s in sites:
        h = SiteHandlers(s.data, model_kind="logreg", hidden=4, seed=0)
        if s.name == "site1":
            orig = h._hello
            h._hello = lambda msg, orig=orig: (time.sleep(0.3), orig(msg))[1]
        nodes[s.name] = SiteNode(s.name, h, lambda m, r: None)
    coord = Coordinator(InProcessTransport(nodes, DropoutPlan()), list(nodes), "t",
                        Deadlines(default=60.0, per_stage={P.HELLO: 0.1}))
    replies = coord.broadcast(P.HELLO, {"protocol": P.PROTOCOL_VERSION}, 0)
    assert sorted(replies) == ["site0", "site2"] and coord.stage_logs[-1].dropped == ["site1"]


def test_bytes_are_counted_per_site_per_round():
    cfg = parse_config({"study": {"bootstrap": 0}, "federation": {"rounds": 2},
                        "configs": [{"name": "f", "method": "fedavg"}]})
    sites = synthetic_sites(k=3)
    prep = PreparedStudy(cfg, sites, [])
    res = run_federated(cfg, sites, ConfigEntry(name="f", method="fedavg"),
                        charge_for=lambda s, c: (lambda m, r: None), protection=make_protection(cfg.configs[0], cfg, prep),
                        study_id="t")
    for r in res.rounds:
        assert set(r["bytes"]) == {"site0", "site1", "site2"}
        d = sites[0].data.X_train.shape[1] + 1
        assert all(b["up"] >= 4 * d and b["down"] >= 4 * d for b in r["bytes"].values())
    assert np.isfinite(res.params).all()


def test_hello_refused_everywhere_names_each_sites_code():
    """Sites that all refuse the set-up: the error says who refused with which fixed code."""
    import pytest

    from privehr.federation.coordinator import RoundAborted
    from privehr.federation.handlers import HandlerError

    nodes = {}
    for s in synthetic_sites(k=3):
        h = SiteHandlers(s.data, model_kind="logreg", hidden=8, seed=0, n_boot=0)

        def refuse(msg):
            raise HandlerError(P.ErrorCode.STUDY_NOT_APPROVED)

        h._hello = refuse
        nodes[s.name] = SiteNode(s.name, h, lambda m, r: None)
    coord = Coordinator(InProcessTransport(nodes, DropoutPlan()), list(nodes), "t")
    with pytest.raises(RoundAborted, match="refused by site0: STUDY_NOT_APPROVED, site1: STUDY_NOT_APPROVED"):
        coord.hello()
