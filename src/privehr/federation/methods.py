"""Run one grid configuration: a simulation baseline or a federated method with a protection.

Baselines (centralised on pooled rows, site-only) are simulation-only references and say so in
their results. Federated configurations build one ``SiteNode`` per site and a ``Coordinator``
that reach each other only through the in-process transport's bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.drive import drive
from privehr.federation.evaluation import exact_metrics
from privehr.federation.handlers import SiteHandlers, standardise
from privehr.federation.simulator import DropoutPlan, InProcessTransport
from privehr.federation.site import SiteNode
from privehr.learning.models import get_flat, make_model
from privehr.learning.train import local_train, predict_proba


@dataclass
class ConfigResult:
    entry: dict[str, Any]
    params: np.ndarray
    rounds: list[dict[str, Any]] = field(default_factory=list)


def _standardise_pooled(X_tr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X_tr.mean(0)
    std = X_tr.std(0)
    std[std < 1e-6] = 1.0
    return mean, std


def _train_alone(cfg: StudyConfig, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    mean, std = _standardise_pooled(X)
    model = make_model(cfg.study.model, X.shape[1], hidden=cfg.study.hidden, seed=cfg.study.seed)
    Xt = torch.from_numpy(standardise(X, mean, std))
    yt = torch.from_numpy(y.astype(np.float32))
    local_train(model, Xt, yt, epochs=cfg.federation.rounds * cfg.federation.local_epochs,
                lr=cfg.federation.lr, batch_size=cfg.federation.batch_size,
                generator=torch.Generator().manual_seed(seed))
    return model, mean, std


def _predict(model: torch.nn.Module, X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return predict_proba(model, torch.from_numpy(standardise(X, mean, std)))


def run_centralised(cfg: StudyConfig, sites, entry: ConfigEntry) -> ConfigResult:
    X = np.concatenate([s.data.X_train for s in sites])
    y = np.concatenate([s.data.y_train for s in sites])
    model, mean, std = _train_alone(cfg, X, y, cfg.study.seed)
    return _baseline_result(cfg, sites, entry, {s.name: (model, mean, std) for s in sites},
                            note="simulation only: pooled rows, non-private upper bound", params=get_flat(model))


def run_site_only(cfg: StudyConfig, sites, entry: ConfigEntry) -> ConfigResult:
    models = {s.name: _train_alone(cfg, s.data.X_train, s.data.y_train, cfg.study.seed + i)
              for i, s in enumerate(sites)}
    return _baseline_result(cfg, sites, entry, models,
                            note="each site alone, evaluated on its own test split", params=np.zeros(0, np.float32))


def _baseline_result(cfg, sites, entry, models, *, note: str, params: np.ndarray) -> ConfigResult:
    t0 = time.perf_counter()
    per_site, ys, ps, pids = {}, [], [], []
    for s in sites:
        model, mean, std = models[s.name]
        p = _predict(model, s.data.X_test, mean, std)
        per_site[s.name] = exact_metrics(s.data.y_test, p, n_boot=cfg.study.bootstrap, seed=cfg.study.seed,
                                         pid=s.data.pid_test)
        ys.append(s.data.y_test)
        ps.append(p)
        pids.append(np.char.add(f"{s.name}/", s.data.pid_test.astype(str)))
    y, p, pid = np.concatenate(ys), np.concatenate(ps), np.concatenate(pids)
    glob = exact_metrics(y, p, n_boot=cfg.study.bootstrap, seed=cfg.study.seed, pid=pid)
    entry_out = {
        "name": entry.name, "method": entry.method, "protection": "none", "note": note,
        "global": glob, "per_site": per_site, "subgroups": _exact_subgroups(cfg, sites, ys, ps),
        "rounds": 0, "seconds": time.perf_counter() - t0, "bytes": {},
        "privacy": {"private": False, "epsilon": None, "reason": "simulation baseline, no DP"},
    }
    return ConfigResult(entry_out, params)


def _exact_subgroups(cfg, sites, ys, ps) -> dict[str, Any]:
    from privehr.federation.evaluation import GROUPINGS

    out: dict[str, Any] = {}
    for g in GROUPINGS:
        vals = [s.data.groups_test.get(g) for s in sites]
        if any(v is None for v in vals):
            continue
        v_all = np.concatenate(vals).astype(str)
        y, p = np.concatenate(ys), np.concatenate(ps)
        out[g] = {str(v): exact_metrics(y[v_all == v], p[v_all == v], n_boot=cfg.study.bootstrap // 2,
                                        seed=cfg.study.seed) for v in np.unique(v_all)}
    return out


def _exact_eval(cfg: StudyConfig, sites, params: np.ndarray, standardizer: dict[str, Any]) -> dict[str, Any]:
    """The harness's exact view of the final model (simulation only: pooled test predictions).

    Released metrics of a private configuration come from DP-noised histograms; this exact
    view exists so utility can be compared across configurations without evaluation noise.
    It is never available in a real deployment and is labelled so in every output.
    """
    model = make_model(cfg.study.model, len(standardizer["mean"]), hidden=cfg.study.hidden, seed=cfg.study.seed)
    from privehr.learning.models import set_flat

    set_flat(model, np.asarray(params, np.float32))
    mean, std = np.asarray(standardizer["mean"]), np.asarray(standardizer["std"])
    ys, ps = [], []
    for s in sites:
        ys.append(s.data.y_test)
        ps.append(_predict(model, s.data.X_test, mean, std))
    out = exact_metrics(np.concatenate(ys), np.concatenate(ps), n_boot=cfg.study.bootstrap, seed=cfg.study.seed)
    out["note"] = "simulation only: exact pooled test predictions, not released by any site"
    return out


def run_federated(
    cfg: StudyConfig,
    sites,
    entry: ConfigEntry,
    *,
    charge_for: Callable[[str, str], Callable],
    protection: Any,
    study_id: str,
    precheck_for: Callable[[str], Callable] | None = None,
) -> ConfigResult:
    """Run FedAvg/FedProx with ``protection`` (a mode object from ``modes``) over the simulator."""
    t_start = time.perf_counter()
    nodes = {}
    for s in sites:
        handlers = SiteHandlers(s.data, model_kind=cfg.study.model, hidden=cfg.study.hidden,
                                seed=cfg.study.seed, n_boot=cfg.study.bootstrap,
                                plugins=protection.site_plugins(s))
        nodes[s.name] = SiteNode(s.name, handlers, charge_for(s.name, entry.name),
                                 precheck_for(s.name) if precheck_for else None)
    plan = DropoutPlan()
    for site, stage, rnd in entry.dropouts:
        plan.drop(site, stage, rnd)
    transport = InProcessTransport(nodes, plan)
    res = drive(cfg, entry, transport, [s.name for s in sites], study_id, protection)
    params, standardizer, rounds_log = res.params, res.standardizer, res.rounds
    metrics = dict(res.metrics)
    metrics["simulation_exact"] = _exact_eval(cfg, sites, params, standardizer)
    entry_out = {
        "name": entry.name, "method": entry.method, "protection": entry.protection,
        "mu": entry.mu, "server_optimizer": entry.server_optimizer,
        **metrics, "rounds": res.n_rounds, "seconds": time.perf_counter() - t_start,
        "bytes": res.coordinator.bytes_by_site(), "rounds_completed": sum(1 for x in rounds_log if "aborted" not in x),
        "protection_details": protection.describe(),
        "standardizer": standardizer,
    }
    return ConfigResult(entry_out, np.asarray(params, np.float32), rounds_log)
