"""Leave-one-site-out external validation: does a federated model transfer to a new hospital?

For each site s, plain FedAvg trains on every other site over the same message protocol, and the
held-out site scores the final model on its own test patients and sends back only its
evaluation histograms (an exact evaluation at one site). Expensive (K federated runs): it
belongs in study configs, not in the demo.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.coordinator import Coordinator
from privehr.federation.evaluation import combine
from privehr.federation.handlers import SiteHandlers
from privehr.federation.methods import ConfigResult, run_federated
from privehr.federation.modes import PlainProtection
from privehr.federation.simulator import InProcessTransport
from privehr.federation.site import SiteNode


def run_loso(cfg: StudyConfig, sites, entry: ConfigEntry, *, book, study_id: str) -> ConfigResult:
    t0 = time.perf_counter()
    per_site: dict[str, Any] = {}
    for held_out in sites:
        others = [s for s in sites if s.name != held_out.name]
        if len(others) < 1:
            continue
        sub = ConfigEntry(name=f"{entry.name}:{held_out.name}", method="fedavg", mu=entry.mu)
        res = run_federated(cfg, others, sub, charge_for=lambda s, _c: book.charge_for(s, entry.name),
                            precheck_for=book.precheck_for,
                            protection=PlainProtection(cfg), study_id=study_id)
        handlers = SiteHandlers(held_out.data, model_kind=cfg.study.model, hidden=cfg.study.hidden,
                                seed=cfg.study.seed, n_boot=cfg.study.bootstrap)
        node = SiteNode(held_out.name, handlers, book.charge_for(held_out.name, entry.name),
                        book.precheck_for(held_out.name))
        coord = Coordinator(InProcessTransport({held_out.name: node}), [held_out.name], study_id)
        replies = coord.broadcast(P.EVALUATE, {"params": res.params, "standardizer": res.entry["standardizer"],
                                               "dp": {}}, 0)
        per_site[held_out.name] = combine(replies, n_boot=cfg.study.bootstrap, seed=cfg.study.seed)["global"]
    aurocs = [m["auroc"] for m in per_site.values() if m and m.get("auroc") is not None]
    out = {
        "name": entry.name, "method": "loso", "protection": "none",
        "note": "leave-one-site-out: each site scores a FedAvg model trained without it",
        "global": None, "per_site": per_site, "subgroups": {},
        "loso_mean_auroc": float(np.nanmean(aurocs)) if aurocs else None,
        "rounds": cfg.federation.rounds, "seconds": time.perf_counter() - t0, "bytes": {},
        "privacy": book.config_privacy(entry.name),
    }
    return ConfigResult(out, np.zeros(0, np.float32))
