"""Site runtime + coordinator driver over an in-process bytes transport (no Flower yet)."""

import numpy as np
import pytest
from deploykit import make_deployment

from privehr.deploy.audit_log import read_entries, verify_log
from privehr.deploy.driver import drive_study
from privehr.deploy.provision import Roster
from privehr.deploy.site_runtime import SiteRuntime, load_site_data
from privehr.federation import protocol as P
from privehr.federation.config import load_config
from privehr.federation.methods import run_federated
from privehr.federation.modes import make_protection
from privehr.federation.runner import LedgerBook
from privehr.federation.study import PreparedStudy
from privehr.federation.wire import Message, decode, encode

SITES = ["hosp-a", "hosp-b", "hosp-c"]


class RuntimeTransport:
    """Bytes to each SiteRuntime, as the Flower transport would carry them."""

    def __init__(self, runtimes, study_hash, config):
        self.runtimes, self.study_hash, self.config = runtimes, study_hash, config

    def exchange(self, requests, *, stage, deadline_s):
        return {s: self.runtimes[s].handle(b, study_hash=self.study_hash, config=self.config, stage=stage)[0]
                for s, b in requests.items()}


@pytest.fixture
def dep(tmp_path, stores):
    return make_deployment(tmp_path, stores, SITES)


def simulate(dep, config_name):
    cfg = load_config(dep["study"])
    entry = next(c for c in cfg.configs if c.name == config_name)
    sites = [load_site_data(dep["stores"][s], cfg, s, i) for i, s in enumerate(SITES)]
    prep = PreparedStudy(cfg, sites, ["f"] * sites[0].data.X_train.shape[1])
    study_id = f"{cfg.study.name}-{cfg.config_hash()[:12]}"
    # the simulator charges a separate copy of the ledgers
    for s in sites:
        s.store = s.store.with_suffix(".sim.duckdb")
    book = LedgerBook(prep, study_id)
    res = run_federated(cfg, sites, entry, charge_for=book.charge_for,
                        protection=make_protection(entry, cfg, prep), study_id=study_id)
    return res


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["fedavg", "fedavg_secagg"])
def test_deployed_loop_equals_simulator(dep, config_name):
    cfg = load_config(dep["study"])
    h = cfg.config_hash()
    runtimes = {s: SiteRuntime(dep["prov"].sites[s], dep["stores"][s]) for s in SITES}
    entry = next(c for c in cfg.configs if c.name == config_name)
    res = drive_study(cfg, entry, RuntimeTransport(runtimes, h, config_name), SITES,
                      f"{cfg.study.name}-{h[:12]}")
    sim = simulate(dep, config_name)
    assert all("aborted" not in r for r in res.rounds) and len(res.rounds) == 2
    np.testing.assert_allclose(res.params, sim.params, rtol=1e-6, atol=1e-7)
    assert np.linalg.norm(res.params) > 0
    for s, rt in runtimes.items():
        rt.close()
        assert verify_log(rt.audit.path, key=Roster.load(dep["prov"].sites[s] / "roster.json").audit_key(s)).ok
        eps = [e for e in read_entries(rt.audit.path) if e["event"] == "epsilon"]
        assert eps and all(e["epsilon_total"] == "inf" for e in eps)  # non-private releases: ε = ∞


@pytest.mark.slow
def test_deployed_site_local_dp_charges_dp_events_at_every_site(dep):
    cfg = load_config(dep["study"])
    h = cfg.config_hash()
    runtimes = {s: SiteRuntime(dep["prov"].sites[s], dep["stores"][s]) for s in SITES}
    res = drive_study(cfg, next(c for c in cfg.configs if c.name == "fedavg_dp"),
                      RuntimeTransport(runtimes, h, "fedavg_dp"), SITES, f"{cfg.study.name}-{h[:12]}")
    assert all("aborted" not in r for r in res.rounds) and np.isfinite(res.params).all()
    for s, rt in runtimes.items():
        rt.close()
        eps = [e for e in read_entries(rt.audit.path) if e["event"] == "epsilon"]
        # every release of a DP configuration is DP: the site's ε stays finite
        totals = [float(e["epsilon_total"]) for e in eps if e["epsilon_total"] != "inf"]
        assert len(totals) == len(eps) and totals == sorted(totals), totals
        # the store ledger composes training and held-out evaluation releases sequentially (never
        # lower than the per-config max of the two partitions): at most the sum of their targets
        assert totals[-1] <= 2 * 8.0


def test_unapproved_study_never_opens_store(dep):
    rt = SiteRuntime(dep["prov"].sites["hosp-a"], dep["stores"]["hosp-a"])
    req = encode(Message(P.HELLO, "x", 0, "coordinator", "hosp-a", {"protocol": P.PROTOCOL_VERSION}))
    reply, head = rt.handle(req, study_hash="0" * 64, config="fedavg", stage="hello")
    msg = decode(reply)
    assert msg.kind == P.ERROR and msg.payload["code"] == P.ErrorCode.STUDY_NOT_APPROVED
    assert rt.store_opened == 0
    assert any(e["event"] == "refusal" for e in read_entries(rt.audit.path))
    assert head


def test_unknown_config_name_is_refused(dep):
    cfg = load_config(dep["study"])
    rt = SiteRuntime(dep["prov"].sites["hosp-a"], dep["stores"]["hosp-a"])
    req = encode(Message(P.HELLO, "x", 0, "coordinator", "hosp-a", {"protocol": P.PROTOCOL_VERSION}))
    reply, _ = rt.handle(req, study_hash=cfg.config_hash(), config="not-there", stage="hello")
    assert decode(reply).payload["code"] == P.ErrorCode.STUDY_NOT_APPROVED
    assert rt.store_opened == 0
