"""Coordinator side of a deployed study: the simulator's round loop over any ``Transport``.

This is the coordinator half of ``methods.run_federated`` (same stage order, same model
initialisation, same server optimiser), without building any ``SiteNode``: in a deployment the
sites are other machines. Keeping the order identical is what makes a deployed run over the
same stores reproduce the in-process simulator's model. Proposed refactor for
``federation/methods.py``: let ``run_federated`` build nodes + ``InProcessTransport`` and then
call one shared ``drive(coord, transport, protection, cfg, entry)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.coordinator import Coordinator, Deadlines, RoundAborted, Transport
from privehr.federation.evaluation import combine
from privehr.federation.methods import server_optimizer
from privehr.learning.models import get_flat, make_model


@dataclass
class DeployedResult:
    params: np.ndarray
    rounds: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    stage_logs: list[Any] = field(default_factory=list)


def budget_refusals(coord: Coordinator, round_: int) -> list[str]:
    code = int(P.ErrorCode.BUDGET_EXHAUSTED)
    return sorted({s for lg in coord.stage_logs if lg.round == round_ for s, c in lg.errors.items() if c == code})


def coordinator_protection(entry: ConfigEntry, cfg: StudyConfig, sites: list[str]):
    """The coordinator half of a protection mode; it never needs any site's data."""
    from privehr.deploy.site_protection import SUPPORTED, UnsupportedInDeployment
    from privehr.federation.modes import make_protection

    if entry.protection not in SUPPORTED:
        raise UnsupportedInDeployment(f"protection {entry.protection!r} is not deployable yet; use {sorted(SUPPORTED)}")
    prep = SimpleNamespace(sites=[SimpleNamespace(name=s) for s in sites], feature_names=[])
    return make_protection(entry, cfg, prep)


def drive_study(cfg: StudyConfig, entry: ConfigEntry, transport: Transport, sites: list[str], study_id: str,
                *, protection: Any = None) -> DeployedResult:
    protection = protection or coordinator_protection(entry, cfg, sites)
    coord = Coordinator(transport, list(sites), study_id, Deadlines(default=cfg.federation.deadline_s))
    start_round = getattr(transport, "start_round", None)
    d_in = coord.hello()
    floor = protection.std_floor() if hasattr(protection, "std_floor") else None
    standardizer, counts = coord.standardizer(dp=protection.private, std_floor=floor)
    if hasattr(protection, "public_standardizer"):
        standardizer = protection.public_standardizer() or standardizer
    protection.on_counts(counts)
    model = make_model(cfg.study.model, d_in, hidden=cfg.study.hidden, seed=cfg.study.seed)
    params = get_flat(model).astype(np.float64)
    opt = server_optimizer(entry)
    state = opt.initialize() if hasattr(opt, "initialize") else None
    rounds_log: list[dict[str, Any]] = []
    n_rounds = protection.rounds(cfg)
    for r in range(1, n_rounds + 1):
        if start_round:
            start_round(r)
        t0 = time.perf_counter()
        train_cfg = {"standardizer": standardizer, "epochs": cfg.federation.local_epochs, "lr": cfg.federation.lr,
                     "batch_size": cfg.federation.batch_size, "mu": entry.mu, "seed": cfg.study.seed,
                     **protection.train_config(r)}
        if hasattr(protection, "configure_round"):
            train_cfg.update(protection.configure_round(coord, r, int(params.shape[0])))
        try:
            delta, included = coord.train_round(r, params.astype(np.float32), train_cfg,
                                                protection.aggregate, kind=protection.request_kind)
        except RoundAborted as exc:
            rounds_log.append({"round": r, "aborted": str(exc), "seconds": time.perf_counter() - t0})
        else:
            state, params = opt.next(state, params, delta)
            rounds_log.append({"round": r, "sites": included, "seconds": time.perf_counter() - t0,
                               "update_l2": float(np.linalg.norm(delta)), **protection.round_measurements()})
        refused = budget_refusals(coord, r)
        if refused:  # as the simulator: a site out of budget stops the study or leaves it
            rounds_log[-1]["budget_exhausted"] = refused
            if getattr(cfg.privacy, "on_budget_exhausted", "stop") == "stop":
                rounds_log[-1]["stopped"] = f"privacy budget exhausted at {refused}; study stopped"
                break
            if hasattr(transport, "exclude"):
                transport.exclude(refused)
    replies = coord.broadcast(P.EVALUATE, {"params": np.asarray(params, np.float32), "standardizer": standardizer,
                                           "dp": protection.evaluation_dp(cfg)}, n_rounds + 1)
    metrics = combine(replies, n_boot=cfg.study.bootstrap, seed=cfg.study.seed) if replies else {}
    return DeployedResult(np.asarray(params, np.float32), rounds_log, metrics, coord.bytes_by_site(),
                          coord.stage_logs)
