import math

import pytest
from dp_accounting import dp_event as de
from dp_accounting.pld import pld_privacy_accountant as pld
from dp_accounting.rdp import rdp_privacy_accountant as rdp
from opacus.accountants import PRVAccountant

from privehr.privacy.accountant import Accountant, fold, kls_tau
from privehr.privacy.errors import PrivacyConfigError, UnsupportedEvent
from privehr.privacy.events import DistributedDiscreteGaussianEvent


def step(q, sigma):
    return de.PoissonSampledDpEvent(q, de.GaussianDpEvent(sigma))


def direct_pld(event, delta):
    return pld.PLDAccountant().compose(event).get_epsilon(delta)


@pytest.mark.parametrize("q, sigma, steps", [(0.01, 1.0, 1000), (0.05, 1.5, 400)])
def test_pld_matches_direct_dp_accounting_and_opacus_prv(q, sigma, steps):
    delta = 1e-5
    eps = Accountant().epsilon(de.SelfComposedDpEvent(step(q, sigma), steps), delta)
    assert eps == pytest.approx(direct_pld(de.SelfComposedDpEvent(step(q, sigma), steps), delta),
                                rel=1e-6)
    prv = PRVAccountant()
    prv.history = [(sigma, q, steps)]
    assert eps == pytest.approx(prv.get_epsilon(delta=delta), rel=1e-2)


def test_folding_many_single_steps_equals_batch_composition():
    events = [step(0.01, 1.0)] * 500 + [de.GaussianDpEvent(20.0)] * 3 + [step(0.01, 1.0)] * 500
    eps = Accountant().epsilon(events, 1e-5)
    ref = pld.PLDAccountant()
    ref.compose(de.GaussianDpEvent(20.0), 3)
    ref.compose(step(0.01, 1.0), 1000)
    assert eps == pytest.approx(ref.get_epsilon(1e-5), rel=1e-6)
    leaves = fold(events)
    assert sorted(leaf.count for leaf in leaves) == [3, 1000]


def test_cache_returns_same_value_and_rdp_is_looser():
    acc = Accountant()
    e = de.SelfComposedDpEvent(step(0.02, 1.2), 200)
    a = acc.epsilon(e, 1e-5)
    assert acc.epsilon([e], 1e-5) == a
    r = acc.epsilon_rdp(e, 1e-5)
    direct_rdp = rdp.RdpAccountant().compose(e).get_epsilon(1e-5)
    assert r == pytest.approx(direct_rdp, rel=1e-9)
    assert r > a


# Contract shared by both accountants (PLD reported, RDP cross-check).
METHODS = {"pld": Accountant.epsilon, "rdp": Accountant.epsilon_rdp}


@pytest.mark.parametrize("method", METHODS)
def test_contract_non_private_makes_epsilon_infinite(method):
    eps = METHODS[method](Accountant(), [de.GaussianDpEvent(5.0), de.NonPrivateDpEvent()], 1e-5)
    assert eps == math.inf


@pytest.mark.parametrize("method", METHODS)
def test_contract_nothing_released_is_zero(method):
    assert METHODS[method](Accountant(), [], 1e-5) == 0.0
    assert METHODS[method](Accountant(), [de.NoOpDpEvent()], 1e-5) == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_contract_epsilon_grows_with_more_events(method):
    acc = Accountant()
    values = [METHODS[method](acc, [step(0.02, 1.0)] * n, 1e-5) for n in (10, 50, 200)]
    assert values[0] < values[1] < values[2]


@pytest.mark.parametrize("method", METHODS)
def test_contract_bad_sub_event_is_named_before_anything_is_composed(method):
    bad = de.ComposedDpEvent([de.GaussianDpEvent(1.0), de.GaussianDpEvent(-1.0)])
    with pytest.raises(Exception, match=r"events\[0\]\.events\[1\]"):
        METHODS[method](Accountant(), [bad], 1e-5)


def test_rdp_agrees_with_opacus_rdp_accountant():
    from opacus.accountants import RDPAccountant

    ours = Accountant().epsilon_rdp(de.SelfComposedDpEvent(step(0.01, 1.0), 1000), 1e-5)
    theirs = RDPAccountant()
    theirs.history = [(1.0, 0.01, 1000)]
    assert ours == pytest.approx(theirs.get_epsilon(delta=1e-5), rel=5e-2)


def test_dry_run_names_bad_sub_event():
    bad = de.ComposedDpEvent([de.GaussianDpEvent(1.0),
                              de.PoissonSampledDpEvent(0.1, de.ZCDpEvent(0.1, 0.0))])
    with pytest.raises(UnsupportedEvent) as err:
        Accountant().epsilon([de.GaussianDpEvent(2.0), bad], 1e-5)
    assert err.value.path == "events[1].events[1]"


def test_bad_delta_is_named():
    with pytest.raises(PrivacyConfigError, match="delta"):
        Accountant().epsilon(de.GaussianDpEvent(1.0), 0.0)


def test_repeat_composes_the_ledger_k_times():
    acc = Accountant()
    e = de.SelfComposedDpEvent(step(0.02, 1.0), 100)
    assert acc.epsilon(e, 1e-5, repeat=2) == pytest.approx(
        direct_pld(de.SelfComposedDpEvent(step(0.02, 1.0), 200), 1e-5), rel=1e-6)


def test_distributed_discrete_gaussian_maps_to_sampled_gaussian():
    e = DistributedDiscreteGaussianEvent(sigma_lattice=40.0, l2_sensitivity_lattice=64.0,
                                         sampling_prob=0.05, steps=100, n_sites_min=4,
                                         dimension=10_000)
    expected = de.SelfComposedDpEvent(step(0.05, math.sqrt(4) * 40.0 / 64.0), 100)
    assert Accountant().epsilon(e, 1e-5) == pytest.approx(direct_pld(expected, 1e-5), rel=1e-6)


def test_distributed_discrete_gaussian_refused_below_sigma_three():
    e = DistributedDiscreteGaussianEvent(1.0, 2.0, 1.0, 10, 3, 100_000)
    with pytest.raises(UnsupportedEvent) as err:
        Accountant().epsilon([de.GaussianDpEvent(1.0), e], 1e-5)
    assert "lattice sigma=1" in str(err.value) and "tau*d" in str(err.value)
    assert err.value.path == "events[1]"
    assert kls_tau(1.0, 3) * 100_000 > 1  # why: not negligible at sigma = 1
    assert kls_tau(3.0, 100) * 1e9 < 1e-20


def test_cached_fast_path_equals_plain_pld_accountant_on_growing_ledger():
    acc = Accountant()
    events = [de.GaussianDpEvent(15.0)]
    for r in range(2):
        events.append(de.SelfComposedDpEvent(step(0.05, 2.0), 10))
        events.append(de.SelfComposedDpEvent(step(0.02, 3.0), 5))
        ref = pld.PLDAccountant()
        for e in events:
            ref.compose(e)
        assert acc.epsilon(events, 1e-5) == pytest.approx(ref.get_epsilon(1e-5), rel=1e-6)
    mixed = events + [de.LaplaceDpEvent(3.0)]  # not on the fast path
    ref.compose(de.LaplaceDpEvent(3.0))
    assert acc.epsilon(mixed, 1e-5) == pytest.approx(ref.get_epsilon(1e-5), rel=1e-6)
