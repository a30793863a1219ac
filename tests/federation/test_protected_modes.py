"""End-to-end protected configurations over the simulator, on synthetic sites."""

import numpy as np
import pytest
from fedkit import synthetic_sites

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, parse_config
from privehr.federation.methods import run_federated
from privehr.federation.modes import PlainProtection, make_protection
from privehr.federation.study import PreparedStudy
from privehr.privacy.noise import NoiseSource


def _setup(k=4, rounds=3, **privacy):
    cfg = parse_config({
        "study": {"seed": 1, "bootstrap": 10},
        "federation": {"rounds": rounds, "local_epochs": 2, "lr": 0.1, "batch_size": 16},
        "privacy": {"ddp_rounds": 5, **privacy},
        "configs": [{"name": "x", "method": "fedavg"}],
    })
    sites = synthetic_sites(k=k, n=150)
    prep = PreparedStudy(cfg, sites, [f"f{i}" for i in range(6)])
    return cfg, sites, prep


def _run(cfg, sites, entry, protection):
    log = []
    charge_for = lambda site, config: (lambda msg, rel: log.append((site, rel.kind, rel.event)))  # noqa: E731
    return run_federated(cfg, sites, entry, charge_for=charge_for, protection=protection, study_id="t"), log


def test_secagg_gives_the_plain_fedavg_model_up_to_quantisation():
    cfg, sites, prep = _setup()
    entry = ConfigEntry(name="s", method="fedavg", protection="secagg")
    plain, _ = _run(cfg, sites, ConfigEntry(name="p", method="fedavg"), PlainProtection(cfg, prep))
    sec, log = _run(cfg, sites, entry, make_protection(entry, cfg, prep))
    np.testing.assert_allclose(sec.params, plain.params, atol=1e-4)
    # the masked input is the release (non-private: SecAgg alone is not DP); keys are not releases
    assert sum(1 for _, k, _ in log if k == "model_update") == 4 * 3


def test_secagg_round_survives_a_dropout_mid_protocol():
    cfg, sites, prep = _setup(k=5)
    # site2 goes silent before its masked input (its pairwise masks are recovered), site3 after
    # it (still in the sum: its self-mask seed is recovered from the survivors' shares)
    entry = ConfigEntry(name="s", method="fedavg", protection="secagg",
                        dropouts=[("site2", "secagg.masked_input", 2), ("site3", "secagg.unmask", 3)])
    res, _ = _run(cfg, sites, entry, make_protection(entry, cfg, prep))
    r2, r3 = res.rounds[1], res.rounds[2]
    assert "aborted" not in r2 and r2["secagg_dropped"] == ["site2"]
    assert "aborted" not in r3 and "site3" in r3["secagg_included"]
    assert np.isfinite(res.params).all() and res.entry["rounds_completed"] == 3


def test_secagg_aborts_cleanly_when_too_few_survive():
    cfg, sites, prep = _setup(k=4)  # threshold 3 of 4: two dropouts are one too many
    entry = ConfigEntry(name="s", method="fedavg", protection="secagg",
                        dropouts=[("site1", "secagg.masked_input", 1), ("site2", "secagg.masked_input", 1)])
    res, _ = _run(cfg, sites, entry, make_protection(entry, cfg, prep))
    assert "aborted" in res.rounds[0]
    assert res.entry["rounds_completed"] == 2


def test_distributed_dp_trains_and_charges_every_site_every_round():
    cfg, sites, prep = _setup(k=4, sampling_rate=0.3, ddp_server_lr=2.0)
    entry = ConfigEntry(name="d", method="fedavg", protection="ddp", epsilon=8.0)
    res, log = _run(cfg, sites, entry, make_protection(entry, cfg, prep, NoiseSource.secure()))
    updates = [(s, e) for s, k, e in log if k == "model_update"]
    assert len(updates) == 4 * 5 and all(e is not None for _, e in updates)
    assert type(updates[0][1]).__name__ == "DistributedDiscreteGaussianEvent"
    assert res.entry["simulation_exact"]["auroc"] > 0.6


def test_seeded_noise_marks_releases_non_private():
    cfg, sites, prep = _setup(k=3)
    entry = ConfigEntry(name="l", method="fedavg", protection="dp_local", epsilon=3.0)
    res, log = _run(cfg, sites, entry, make_protection(entry, cfg, prep, NoiseSource.seeded_for_tests(0)))
    updates = [e for _, k, e in log if k == "model_update"]
    assert updates and all(type(e).__name__ == "NonPrivateDpEvent" for e in updates)


def test_dp_local_charges_dp_events_and_stays_finite():
    cfg, sites, prep = _setup(k=3)
    entry = ConfigEntry(name="l", method="fedavg", protection="dp_local", epsilon=3.0)
    res, log = _run(cfg, sites, entry, make_protection(entry, cfg, prep, NoiseSource.secure()))
    kinds = {k for _, k, e in log if e is None}
    assert not kinds, f"non-private releases in a DP configuration: {kinds}"
    assert np.isfinite(res.params).all()


@pytest.mark.parametrize("protection", ["secagg", "ddp"])
def test_secagg_modes_refuse_fewer_than_three_sites(protection):
    cfg, sites, prep = _setup(k=2)
    entry = ConfigEntry(name="x", method="fedavg", protection=protection, epsilon=3.0)
    with pytest.raises(Exception, match="at least 3"):
        make_protection(entry, cfg, prep)
    assert P.SECAGG == "secagg"


def test_he_gives_the_plain_fedavg_model_within_the_ckks_bound():
    cfg, sites, prep = _setup(k=3, rounds=2)
    entry = ConfigEntry(name="h", method="fedavg", protection="he")
    plain, _ = _run(cfg, sites, ConfigEntry(name="p", method="fedavg"), PlainProtection(cfg, prep))
    he, log = _run(cfg, sites, entry, make_protection(entry, cfg, prep))
    np.testing.assert_allclose(he.params, plain.params, atol=1e-4)
    assert sum(1 for _, k, _ in log if k == "model_update") == 3 * 2
    assert he.entry["protection_details"]["key_holder"] == "site0"
