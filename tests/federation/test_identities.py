"""Who holds which signing key: every site's (simulator), one site's, none (coordinator)."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fedkit import synthetic_sites

from privehr.federation.config import ConfigEntry, parse_config
from privehr.federation.identities import Identities, IdentityError
from privehr.federation.modes import make_protection
from privehr.federation.study import PreparedStudy

NAMES = ["site0", "site1", "site2"]


def test_a_site_key_must_match_the_roster():
    sim = Identities.simulated(NAMES)
    own = Identities.for_site(sim.roster, "site1", sim.keys["site1"])
    assert list(own.keys) == ["site1"] and own.roster == sim.roster
    with pytest.raises(IdentityError, match="does not match the roster"):
        Identities.for_site(sim.roster, "site1", Ed25519PrivateKey.generate())
    with pytest.raises(IdentityError, match="site0"):
        own.key("site0")


@pytest.mark.parametrize("protection", ["secagg", "he"])
def test_the_coordinator_half_cannot_act_for_a_site(protection):
    cfg = parse_config({"study": {"bootstrap": 0}, "configs": [{"name": "x", "method": "fedavg"}]})
    sites = synthetic_sites(k=3, n=40)
    roster = Identities.simulated(NAMES).roster
    entry = ConfigEntry(name="x", method="fedavg", protection=protection)
    coord_half = make_protection(entry, cfg, PreparedStudy(cfg, sites, []), identities=Identities.coordinator(roster))
    plugins = {}
    with pytest.raises(IdentityError):
        plugins = coord_half.site_plugins(sites[0])
        # HE builds its state lazily: acting for the site is where the missing key shows
        plugins["he_ceremony"](None, type("M", (), {"study": "s"})())
