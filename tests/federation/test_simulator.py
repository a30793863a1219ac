import numpy as np
import torch
from fedkit import synthetic_sites

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, parse_config
from privehr.federation.coordinator import Coordinator
from privehr.federation.handlers import SiteHandlers
from privehr.federation.methods import run_centralised, run_federated
from privehr.federation.modes import PlainProtection
from privehr.federation.simulator import DropoutPlan, InProcessTransport
from privehr.federation.site import SiteNode
from privehr.learning.models import get_flat, make_model
from privehr.learning.train import local_train


def _cfg(rounds=3, **fed):
    return parse_config({
        "study": {"seed": 3, "bootstrap": 20},
        "federation": {"rounds": rounds, "local_epochs": 1, "lr": 0.1, "batch_size": 16, **fed},
        "configs": [{"name": "fedavg", "method": "fedavg"}],
    })


def _charges():
    log = []
    return log, (lambda site, config: (lambda msg, rel: log.append((site, rel.kind, rel.event))))


def test_fedavg_with_one_site_equals_local_training():
    sites = synthetic_sites(k=1)
    cfg = _cfg(rounds=1)
    _, charge_for = _charges()
    res = run_federated(cfg, sites, cfg.configs[0], charge_for=charge_for, protection=PlainProtection(), study_id="t")
    d = sites[0].data
    mean, var = d.X_train.mean(0), d.X_train.var(0)
    std = np.sqrt(var)
    model = make_model("logreg", d.X_train.shape[1], hidden=16, seed=3)
    X = torch.from_numpy(((d.X_train - mean) / std).astype(np.float32))
    local_train(model, X, torch.from_numpy(d.y_train.astype(np.float32)), epochs=1, lr=0.1, batch_size=16,
                generator=torch.Generator().manual_seed(3 * 1000 + 1), prox_mu=0.0, global_params=get_flat(model))
    np.testing.assert_allclose(res.params, get_flat(model), atol=1e-5)


def test_every_release_is_charged_and_bytes_counted(sites3):
    cfg = _cfg(rounds=3, local_epochs=4)
    log, charge_for = _charges()
    res = run_federated(cfg, sites3, cfg.configs[0], charge_for=charge_for, protection=PlainProtection(), study_id="t")
    kinds = [k for _, k, _ in log]
    # per site: stats once, one update per round, evaluation once
    assert kinds.count("model_update") == 3 * 3
    assert kinds.count("standardisation_stats") == 3 and kinds.count("histogram") == 3
    assert all(ev is None for _, _, ev in log)  # plain mode: all non-private, none skipped
    assert all(b["up"] > 0 and b["down"] > 0 for b in res.entry["bytes"].values())
    assert res.entry["global"]["auroc"] > 0.7


def test_dropped_site_does_not_corrupt_the_round(sites3):
    cfg = _cfg(rounds=2)
    _, charge_for = _charges()
    entry = ConfigEntry(name="drop", method="fedavg", dropouts=[("site1", P.TRAIN, 2)])
    res = run_federated(cfg, sites3, entry, charge_for=charge_for, protection=PlainProtection(), study_id="t")
    assert res.rounds[0]["sites"] == ["site0", "site1", "site2"]
    assert res.rounds[1]["sites"] == ["site0", "site2"]
    assert np.isfinite(res.params).all()


def test_fedavg_iid_reaches_centralised_auroc():
    sites = synthetic_sites(k=4, n=200)
    cfg = _cfg(rounds=8)
    _, charge_for = _charges()
    fed = run_federated(cfg, sites, cfg.configs[0], charge_for=charge_for, protection=PlainProtection(), study_id="t")
    cen = run_centralised(cfg, sites, ConfigEntry(name="c", method="centralised"))
    assert abs(fed.entry["global"]["auroc"] - cen.entry["global"]["auroc"]) < 0.02


def test_malformed_request_gets_fixed_error_code_without_echo(sites3):
    s = sites3[0]
    node = SiteNode(s.name, SiteHandlers(s.data, model_kind="logreg", hidden=4, seed=0), lambda m, r: None)
    from privehr.federation.wire import decode

    reply = decode(node.handle(b"PEHR\x01garbage"))
    assert reply.kind == P.ERROR and reply.payload == {"code": int(P.ErrorCode.MALFORMED_REQUEST)}


def test_nan_update_is_rejected_at_the_site_gate_with_site_named(sites3, caplog):
    s = sites3[0]
    charged = []
    handlers = SiteHandlers(s.data, model_kind="logreg", hidden=4, seed=0)
    d = s.data.X_train.shape[1] + 1
    handlers._local_delta = lambda msg: (np.full(d, np.nan), {})  # a diverged local update
    node = SiteNode(s.name, handlers, lambda m, r: charged.append(r.kind))
    coord = Coordinator(InProcessTransport({s.name: node}, DropoutPlan()), [s.name], "t")
    params = np.zeros(s.data.X_train.shape[1] + 1, np.float32)
    cfg = {"mode": "plain", "standardizer": {"mean": [0.0] * 6, "std": [1.0] * 6}, "epochs": 1, "lr": 0.1,
           "batch_size": 8, "seed": 0}
    replies = coord.broadcast(P.TRAIN, {"params": params, "config": cfg}, 1)
    assert replies == {}
    assert coord.stage_logs[-1].errors == {s.name: int(P.ErrorCode.INVALID_UPDATE)}
    assert charged == []  # nothing left, nothing charged
    assert "site0" in caplog.text
