"""Benchmark: simulator overhead per federated round (``python -m bench.federation``).

K sites (default 10) each hold a noisy copy of one synthetic logistic dataset. A round runs
through ``Coordinator.train_round`` over ``InProcessTransport`` in plain mode (message
encode/decode, outbound gate checks, ledger hook, model build + standardisation at each site,
weighted FedAvg) plus the server optimiser step. Inside that same round the time spent in
``local_train`` is measured by wrapping the function the site handler calls, so

    ratio = simulated round time / local_train time inside it

is computed from one run and is insensitive to load from other processes (on a shared
machine two separate runs differ by more than the overhead itself). A standalone loop of
the same local training is also timed, for reference. Reported for logreg and MLP, with one
torch thread (what we recommend for these tiny models: see ``torch_threads``) and with the
default. Median over ``--repeats`` rounds after one warm-up round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import privehr.federation.handlers as handlers_module
from privehr.federation.coordinator import Coordinator, Deadlines, weighted_mean_delta
from privehr.federation.handlers import SiteHandlers
from privehr.federation.simulator import InProcessTransport
from privehr.federation.site import SiteData, SiteNode
from privehr.learning.models import get_flat, make_model, set_flat
from privehr.learning.strategies import NoServerOpt
from privehr.learning.train import local_train, torch_threads


def make_sites(k: int, n: int, d: int, seed: int) -> list[SiteData]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    X0 = rng.normal(size=(n, d))
    y0 = (rng.random(n) < 1 / (1 + np.exp(-(X0 @ w * 0.8 - 0.5)))).astype(np.float64)
    sites = []
    for i in range(k):
        X = X0 + rng.normal(scale=0.05, size=X0.shape)
        pid = np.arange(n) + i * n
        sites.append(SiteData(X, y0.copy(), pid, X[:50], y0[:50].copy(), pid[:50]))
    return sites


class _Timed:
    """Wraps ``local_train`` to add up the seconds spent inside it."""

    def __init__(self, fn: Callable[..., dict[str, Any]]) -> None:
        self.fn = fn
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def standalone_local(sites: list[SiteData], params: np.ndarray, kind: str, rnd: int) -> float:
    """Every site's local training, one after another, without the federation around it."""
    t0 = time.perf_counter()
    for s in sites:
        m = make_model(kind, s.X_train.shape[1], hidden=32, seed=0)
        set_flat(m, params)
        X = torch.from_numpy(s.X_train.astype(np.float32))
        y = torch.from_numpy(s.y_train.astype(np.float32))
        local_train(m, X, y, epochs=1, lr=0.05, batch_size=32,
                    generator=torch.Generator().manual_seed(rnd))
        _ = get_flat(m) - params
    return time.perf_counter() - t0


def bench(kind: str, k: int, n: int, d: int, repeats: int, threads: int) -> dict[str, Any]:
    sites = make_sites(k, n, d, seed=0)
    names = [f"site-{i}" for i in range(k)]
    nodes = {
        name: SiteNode(name, SiteHandlers(s, model_kind=kind, hidden=32, seed=0, n_boot=0),
                       lambda msg, release: None)
        for name, s in zip(names, sites, strict=True)
    }
    transport = InProcessTransport(nodes)
    coord = Coordinator(transport, names, "bench", Deadlines(default=600.0))
    standardizer, _ = coord.standardizer(dp=False)
    cfg = {"standardizer": standardizer, "epochs": 1, "lr": 0.05, "batch_size": 32, "mu": 0.0,
           "seed": 0, "mode": "plain"}
    params = get_flat(make_model(kind, d, hidden=32, seed=0))
    opt = NoServerOpt()
    state = opt.initialize()
    timed = _Timed(local_train)
    sim_s, inside_s, alone_s = [], [], []
    original = handlers_module.local_train
    handlers_module.local_train = timed  # bench-only instrumentation, restored below
    try:
        with torch_threads(threads):
            for r in range(1, repeats + 2):
                transport.start_round(r)
                timed.seconds = 0.0
                t0 = time.perf_counter()
                delta, _ = coord.train_round(r, params, cfg, weighted_mean_delta)
                state, params = opt.next(state, params, delta)
                total = time.perf_counter() - t0
                inside = timed.seconds
                alone = standalone_local(sites, params, kind, r)
                if r > 1:  # the first round is warm-up
                    sim_s.append(total)
                    inside_s.append(inside)
                    alone_s.append(alone)
    finally:
        handlers_module.local_train = original
    ratios = [s / i for s, i in zip(sim_s, inside_s, strict=True)]
    return {
        "model": kind, "K": k, "rows_per_site": n, "features": d, "threads": threads,
        "simulated_s": round(statistics.median(sim_s), 4),
        "local_train_inside_s": round(statistics.median(inside_s), 4),
        "local_train_standalone_s": round(statistics.median(alone_s), 4),
        "overhead_ms_per_round": round(1000 * statistics.median(
            [s - i for s, i in zip(sim_s, inside_s, strict=True)]), 1),
        "ratio": round(statistics.median(ratios), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="Simulator overhead per federated round")
    ap.add_argument("--sites", type=int, default=10)
    ap.add_argument("--rows", type=int, default=1000, help="training rows per site")
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print JSON lines only")
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    for kind in ("logreg", "mlp"):
        for threads in sorted({1, default_threads}):
            row = bench(kind, args.sites, args.rows, args.features, args.repeats, threads)
            if args.json:
                print(json.dumps(row), flush=True)
                continue
            print(f"{row['model']:6s} K={row['K']} threads={row['threads']}: round "
                  f"{row['simulated_s']:.3f} s, local_train inside {row['local_train_inside_s']:.3f}"
                  f" s (standalone {row['local_train_standalone_s']:.3f} s), overhead "
                  f"{row['overhead_ms_per_round']:.1f} ms/round, ratio {row['ratio']:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
