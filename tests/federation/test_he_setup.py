"""The HE key ceremony by messages: what a lying coordinator must not get a site to pin."""

import pytest
from fedkit import synthetic_sites

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, parse_config
from privehr.federation.coordinator import Coordinator
from privehr.federation.handlers import SiteHandlers
from privehr.federation.modes import make_protection
from privehr.federation.simulator import DropoutPlan, InProcessTransport
from privehr.federation.site import SiteNode
from privehr.federation.study import PreparedStudy

ABORT = int(P.ErrorCode.PROTOCOL_ABORT)


@pytest.fixture(scope="module")
def fed():
    cfg = parse_config({"study": {"bootstrap": 0}, "configs": [{"name": "h", "method": "fedavg", "protection": "he"}]})
    sites = synthetic_sites(k=3, n=60)
    prot = make_protection(ConfigEntry(name="h", method="fedavg", protection="he"), cfg,
                           PreparedStudy(cfg, sites, []))
    nodes = {s.name: SiteNode(s.name, SiteHandlers(s.data, model_kind="logreg", hidden=4, seed=0, n_boot=0,
                                                   plugins=prot.site_plugins(s)), lambda m, r: None)
             for s in sites}
    transport = InProcessTransport(nodes, DropoutPlan())
    coord = Coordinator(transport, sorted(nodes), "study-A")
    genuine = coord.exchange(P.HE_CEREMONY, {prot.key_holder_site: {}}, 0)[prot.key_holder_site]
    return prot, transport, coord, genuine


def _distribute(coord, payload):
    acks = coord.broadcast(P.HE_CONTEXT, payload, 0)
    return acks, coord.stage_logs[-1].errors


def test_genuine_ceremony_is_pinned_by_every_site(fed):
    prot, _, coord, genuine = fed
    acks, errors = _distribute(coord, genuine)
    assert sorted(acks) == ["site0", "site1", "site2"] and not errors
    assert len({a["pinned"] for a in acks.values()}) == 1


def test_only_the_key_holder_runs_the_ceremony(fed):
    _, _, coord, _ = fed
    assert not coord.exchange(P.HE_CEREMONY, {"site1": {}}, 0)
    assert coord.stage_logs[-1].errors == {"site1": int(P.ErrorCode.UNKNOWN_KIND)}


def test_substituted_context_is_refused(fed):
    """The coordinator keeps the signed record but ships a context whose secret key it holds."""
    from privehr.secure.he import AGGREGATION_PARAMS, KeyHolder

    _, _, coord, genuine = fed
    _, own_context, _ = KeyHolder.create(AGGREGATION_PARAMS, holder_id="site0", min_sites=2)
    acks, errors = _distribute(coord, {**genuine, "context": own_context})
    assert not acks and errors == dict.fromkeys(["site0", "site1", "site2"], ABORT)


def test_record_signed_by_anyone_but_the_key_holder_is_refused(fed):
    """A coordinator's own ceremony, signed with a key that is not the key holder's."""
    import json

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from privehr.federation.modes_he import ceremony_statement
    from privehr.secure.he import AGGREGATION_PARAMS, KeyHolder

    _, _, coord, _ = fed
    holder, ctx, _ = KeyHolder.create(AGGREGATION_PARAMS, holder_id="site0", min_sites=2)
    record = json.dumps(holder.record.to_dict(), sort_keys=True).encode()
    forged = {"context": ctx, "record": record,
              "signature": Ed25519PrivateKey.generate().sign(ceremony_statement("study-A", record))}
    acks, errors = _distribute(coord, forged)
    assert not acks and errors == dict.fromkeys(["site0", "site1", "site2"], ABORT)


def test_ceremony_of_another_study_is_refused(fed):
    """Replaying study A's genuinely signed ceremony in study B."""
    _, transport, _, genuine = fed
    other = Coordinator(transport, ["site0", "site1", "site2"], "study-B")
    acks, errors = _distribute(other, genuine)
    assert not acks and errors == dict.fromkeys(["site0", "site1", "site2"], ABORT)
