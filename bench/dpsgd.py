"""DP-SGD throughput vs non-private training on the same tensor data path (same run).

    python -m bench.dpsgd [--patients 5000] [--rows 4] [--features 30] [--steps 200] [--q 0.05]

Both arms use the padded patients x rows x features tensors, the same Poisson sampling of
patients at rate q (so the same batch sizes on average) and a plain SGD step. The non-private
arm computes the batch gradient with autograd; the DP arm (``dp_sgd_local``) computes
per-patient gradients (closed form for logistic regression, Opacus hooks for the MLP), clips,
adds lattice Gaussian noise from a fresh OS-seeded generator and steps. Reported: steps/s of
each and the ratio (DP time / non-private time). Aims (issue): <= 1.3x logreg, <= 4x MLP.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from privehr.learning.models import make_model
from privehr.privacy.dpsgd import dp_sgd_local, masked_loss, pad_by_patient
from privehr.privacy.noise import NoiseSource


def make_data(patients: int, rows: int, features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = rng.integers(1, rows + 1, size=patients)
    ids = np.repeat(np.arange(patients), k)
    X = rng.normal(size=(ids.size, features)).astype(np.float32)
    w = rng.normal(size=features)
    y = (X @ w + rng.normal(size=ids.size) > 0).astype(np.float32)
    return pad_by_patient(X, y, ids)


def non_private(model: nn.Module, pp, q: float, steps: int, lr: float, seed: int = 0) -> float:
    """Plain minibatch SGD on Poisson-sampled patients; returns seconds."""
    rng = np.random.default_rng(seed)
    P = pp.Xp.shape[0]
    params = list(model.parameters())
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.as_tensor(np.flatnonzero(rng.random(P) < q))
        for p in params:
            p.grad = None
        logits = model(pp.Xp[idx]).squeeze(-1)
        (masked_loss(logits, pp.y[idx], pp.mask[idx]) / (q * P)).backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
    return time.perf_counter() - t0


def private(model: nn.Module, pp, q: float, steps: int, lr: float) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = dp_sgd_local(model, pp.Xp, pp.mask, pp.y, sampling_prob=q, noise_multiplier=1.0,
                       clip_norm=1.0, steps=steps, lr=lr, noise=NoiseSource.secure())
    return time.perf_counter() - t0, res.method


def run(args) -> list[dict]:
    torch.set_num_threads(1)
    out = []
    for rows in sorted({1, args.rows}):
        pp = make_data(args.patients, rows, args.features)
        for kind in ("logreg", "mlp"):
            # warm-up (Opacus hook installation, allocator)
            private(make_model(kind, args.features, hidden=args.hidden, seed=0), pp, args.q, 3,
                    0.1)
            non_private(make_model(kind, args.features, hidden=args.hidden, seed=0), pp, args.q,
                        3, 0.1)
            t_nps, t_dps = [], []
            for _ in range(args.repeats):  # interleaved: load changes hit both arms alike
                t_nps.append(non_private(make_model(kind, args.features, hidden=args.hidden,
                                                    seed=0), pp, args.q, args.steps, 0.1))
                t, method = private(make_model(kind, args.features, hidden=args.hidden, seed=0),
                                    pp, args.q, args.steps, 0.1)
                t_dps.append(t)
            t_np, t_dp = min(t_nps), min(t_dps)
            out.append({
                "model": kind, "method": method, "patients": args.patients,
                "max_rows": rows, "features": args.features, "q": args.q,
                "steps": args.steps, "non_private_steps_per_s": args.steps / t_np,
                "dp_steps_per_s": args.steps / t_dp, "ratio": t_dp / t_np,
            })
    return out


def sampler_rates(n: int = 100_000) -> list[dict]:
    """Discrete Gaussian sampler throughput (CKS20, vectorised rejection)."""
    from privehr.privacy.discrete import sample_discrete_gaussian

    out = []
    for sigma in (3.0, 1000.0, 2.0**24):
        rng = NoiseSource.secure().generator()
        t = min(_timed(lambda s=sigma, g=rng: sample_discrete_gaussian(s, n, g)) for _ in range(5))
        out.append({"sigma": sigma, "samples": n, "seconds": t})
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=5000)
    ap.add_argument("--rows", type=int, default=4, help="max rows per patient (encounters)")
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--q", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args(argv)
    rows = run(args)
    print("| model | path | rows/patient | non-private steps/s | DP steps/s | DP/non-private |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['method']} | 1..{r['max_rows']} | "
              f"{r['non_private_steps_per_s']:.0f} | {r['dp_steps_per_s']:.0f} | "
              f"{r['ratio']:.2f}x |")
    samplers = sampler_rates()
    print()
    print("| discrete Gaussian sigma | samples | seconds |")
    print("|---|---|---|")
    for r in samplers:
        print(f"| {r['sigma']:g} | {r['samples']} | {r['seconds']:.4f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"dpsgd": rows, "discrete_gaussian": samplers}, fh, indent=2)


if __name__ == "__main__":
    main()
