"""The coordinator's round loop, shared by the in-process simulator and the Flower deployment.

One loop over any ``Transport`` (hello → standardisation statistics → rounds → evaluation)
keeps the stage order identical everywhere, which is what makes a deployed run over the same
stores and seeds reproduce the simulator's model. The caller owns what is specific to it:
the simulator builds ``SiteNode``s and an ``InProcessTransport``; a deployment passes a
``FlowerTransport`` and never touches site data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.coordinator import Coordinator, Deadlines, RoundAborted, Transport
from privehr.federation.evaluation import combine
from privehr.learning.models import get_flat, make_model
from privehr.learning.strategies import FedAdam, FedAvgM, NoServerOpt


@dataclass
class DriveResult:
    params: np.ndarray
    standardizer: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    coordinator: Coordinator | None = None
    n_rounds: int = 0


def server_optimizer(entry: ConfigEntry):
    if entry.server_optimizer == "fedavgm":
        return FedAvgM(momentum=0.9, lr=1.0)
    if entry.server_optimizer == "fedadam":
        return FedAdam(lr=0.05)
    return NoServerOpt()


def budget_refusals(coord: Coordinator, round_: int) -> list[str]:
    code = int(P.ErrorCode.BUDGET_EXHAUSTED)
    return sorted({s for lg in coord.stage_logs if lg.round == round_ for s, c in lg.errors.items() if c == code})


def drive(cfg: StudyConfig, entry: ConfigEntry, transport: Transport, sites: list[str], study_id: str,
          protection: Any) -> DriveResult:
    """Run one configuration's protocol over ``transport``; the model never leaves this function
    except as the final parameters (and what the sites' gates chose to release)."""
    fed = cfg.federation
    setup_s = max(fed.setup_deadline_s, fed.deadline_s)
    deadlines = Deadlines(default=fed.deadline_s, per_stage=dict.fromkeys(P.SETUP_KINDS, setup_s))
    coord = Coordinator(transport, list(sites), study_id, deadlines)
    start_round = getattr(transport, "start_round", None)
    d_in = coord.hello()
    standardizer, counts = coord.standardizer(dp=protection.private, std_floor=protection.std_floor())
    standardizer = protection.public_standardizer() or standardizer
    protection.on_counts(counts)
    if hasattr(protection, "setup"):  # e.g. the HE key ceremony, by messages like everything else
        protection.setup(coord)
    model = make_model(cfg.study.model, d_in, hidden=cfg.study.hidden, seed=cfg.study.seed)
    params = get_flat(model).astype(np.float64)
    opt = server_optimizer(entry)
    state = opt.initialize()
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
                               "update_l2": float(np.linalg.norm(delta)), "bytes": coord.bytes_by_site(r),
                               **protection.round_measurements()})
        refused = budget_refusals(coord, r)
        if refused:  # a site out of budget stops the study, or the study goes on without it
            rounds_log[-1]["budget_exhausted"] = refused
            if cfg.privacy.on_budget_exhausted == "stop":
                rounds_log[-1]["stopped"] = f"privacy budget exhausted at {refused}; study stopped"
                break
            if hasattr(transport, "exclude"):
                transport.exclude(refused)
    replies = coord.broadcast(P.EVALUATE, {"params": np.asarray(params, np.float32), "standardizer": standardizer,
                                           "dp": protection.evaluation_dp(cfg)}, n_rounds + 1)
    metrics = combine(replies, n_boot=cfg.study.bootstrap, seed=cfg.study.seed)
    return DriveResult(np.asarray(params, np.float64), standardizer, rounds_log, metrics, coord, n_rounds)
