"""Site runtime + coordinator driver over an in-process bytes transport (no Flower yet)."""

import numpy as np
import pytest
from deploykit import make_deployment, simulate

from privehr.deploy.audit_log import read_entries, verify_log
from privehr.deploy.driver import drive_study
from privehr.deploy.provision import Roster
from privehr.deploy.site_protection import coordinator_protection
from privehr.deploy.site_runtime import SiteRuntime
from privehr.federation import protocol as P
from privehr.federation.config import load_config
from privehr.federation.wire import Message, decode, encode
from privehr.privacy.ledger import PrivacyLedger, ledger_path_for_store

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


@pytest.fixture
def seeded_dep(tmp_path, stores):
    """Test-only seeded noise, keyed by site name at every site (DP releases count as non-private)."""
    return make_deployment(tmp_path, stores, SITES, noise_seed=7)


def _drive(dep, config_name, *, protection=None):
    cfg = load_config(dep["study"])
    h = cfg.config_hash()
    runtimes = {s: SiteRuntime(dep["prov"].sites[s], dep["stores"][s]) for s in SITES}
    roster = Roster.load(dep["prov"].coordinator / "roster.json").identity_keys()
    entry = next(c for c in cfg.configs if c.name == config_name)
    res = drive_study(cfg, entry, RuntimeTransport(runtimes, h, config_name), roster, f"{cfg.study.name}-{h[:12]}",
                      protection=protection)
    for rt in runtimes.values():
        rt.close()
    return res, runtimes


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["fedavg", "fedavg_secagg", "fedavg_dp", "fedavg_secagg_ddp", "fedavg_he"])
def test_deployed_loop_equals_simulator(seeded_dep, config_name):
    """Each site builds its half from its own approved study, key and seeded stream: same model."""
    res, runtimes = _drive(seeded_dep, config_name)
    sim = simulate(seeded_dep, SITES, config_name)
    assert all("aborted" not in r for r in res.rounds) and len(res.rounds) == 2
    # CKKS is approximate (fresh encryption noise, mean rounded to 2^-20): equal to 1e-5, not bits
    tol = {"rtol": 0, "atol": 1e-5} if config_name == "fedavg_he" else {"rtol": 1e-6, "atol": 1e-7}
    np.testing.assert_allclose(res.params, sim.params, **tol)
    assert np.linalg.norm(res.params) > 0
    for s, rt in runtimes.items():
        assert verify_log(rt.audit.path, key=Roster.load(seeded_dep["prov"].sites[s] / "roster.json").audit_key(s)).ok
        eps = [e for e in read_entries(rt.audit.path) if e["event"] == "epsilon"]
        assert eps and all(e["epsilon_total"] == "inf" for e in eps)  # non-private or seeded: ε = ∞


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["fedavg_dp", "fedavg_secagg_ddp"])
def test_deployed_dp_charges_dp_events_at_every_site(dep, config_name):
    res, runtimes = _drive(dep, config_name)
    assert all("aborted" not in r for r in res.rounds) and np.isfinite(res.params).all()
    for rt in runtimes.values():
        eps = [e for e in read_entries(rt.audit.path) if e["event"] == "epsilon"]
        # every release of a DP configuration is DP: the site's ε stays finite
        totals = [float(e["epsilon_total"]) for e in eps if e["epsilon_total"] != "inf"]
        assert len(totals) == len(eps) and totals == sorted(totals), totals
        assert sum(e["release"] == "model_update" for e in eps) == 2
        # the store ledger composes training and held-out evaluation releases sequentially (never
        # lower than the per-config max of the two partitions): at most the sum of their targets
        assert totals[-1] <= 2 * 8.0


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["fedavg_dp", "fedavg_secagg_ddp", "fedavg_secagg"])
def test_lying_coordinator_cannot_lower_the_noise(dep, config_name):
    """A coordinator that asks for a tenth of the noise (or, for SecAgg, a lower threshold)
    gets fixed refusals and no update leaves."""
    cfg = load_config(dep["study"])
    entry = next(c for c in cfg.configs if c.name == config_name)
    liar = coordinator_protection(entry, cfg, Roster.load(dep["prov"].coordinator / "roster.json").identity_keys())
    if config_name == "fedavg_dp":
        liar.sigma /= 10
    elif config_name == "fedavg_secagg":
        liar.threshold -= 1
    else:
        honest = liar.configure_round

        def configure_round(coord, round_, dim):
            out = honest(coord, round_, dim)
            return {**out, "site_std": out["site_std"] / 10}

        liar.configure_round = configure_round
    res, runtimes = _drive(dep, config_name, protection=liar)
    assert res.rounds and all("aborted" in r for r in res.rounds)
    for s, rt in runtimes.items():
        ledger = PrivacyLedger(ledger_path_for_store(dep["stores"][s]))
        assert not [e for e in ledger.entries() if e.kind == "model_update"], s
        codes = [e["code"] for e in read_entries(rt.audit.path) if e["event"] == "refusal"]
        assert int(P.ErrorCode.PRIVACY_PARAMS_MISMATCH) in codes, (s, codes)


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
