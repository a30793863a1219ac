"""Benchmark the privacy-evidence attacks on synthetic EHR-like data.

Run: ``python -m bench.attacks`` (about a minute on 2 cores). Prints, for a small
logistic-regression task: membership-inference AUCs without DP and under DP-SGD at several
ε; the update-inversion suite; one-run audit lower bounds against the accountant's ε; and
wall-clock times. Numbers are for the report and the README, never asserted in tests.
"""

from __future__ import annotations

import time

import dp_accounting
import numpy as np
from dp_accounting.pld import pld_privacy_accountant

from privehr.evaluation.attacks import (
    coordinate_canaries,
    one_run_audit,
    run_inversion_suite,
    run_membership_attacks,
)
from privehr.evaluation.attacks.audit import input_canary_scorer

DELTA = 1e-5


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def make_ehr_like(n: int, n_binary: int, n_cont: int, seed: int):
    rng = np.random.default_rng(seed)
    X = np.c_[(rng.random((n, n_binary)) < 0.2).astype(float), rng.normal(size=(n, n_cont))]
    beta = rng.normal(size=X.shape[1]) / np.sqrt(X.shape[1])
    y = (rng.random(n) < _sigmoid(X @ beta - 0.5)).astype(np.int64)
    return X, y


def plain_trainer(l2: float = 1e-4, steps: int = 400, lr: float = 0.5):
    def train(X, y, seed):
        w, b = np.zeros(X.shape[1]), 0.0
        for _ in range(steps):
            g = _sigmoid(X @ w + b) - y
            w -= lr * (X.T @ g / len(y) + l2 * w)
            b -= lr * g.mean()
        return lambda Z, w=w, b=b: _sigmoid(Z @ w + b)
    return train


def dp_event(sigma, q, steps):
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)


def epsilon(sigma, q, steps):
    acc = pld_privacy_accountant.PLDAccountant()
    acc.compose(dp_event(sigma, q, steps))
    return float(acc.get_epsilon(DELTA))


def calibrate(eps, q, steps):
    return float(dp_accounting.calibrate_dp_mechanism(
        pld_privacy_accountant.PLDAccountant, lambda s: dp_event(s, q, steps), eps, DELTA,
        bracket_interval=dp_accounting.ExplicitBracketInterval(0.3, 80.0), tol=0.01))


def dp_trainer(sigma, q=0.5, steps=30, lr=0.5, clip=1.0):
    def train(X, y, seed):
        rng = np.random.default_rng(seed)
        n, d = X.shape
        th = np.zeros(d + 1)
        for _ in range(steps):
            idx = np.flatnonzero(rng.random(n) < q)
            tot = rng.normal(0, sigma * clip, d + 1)
            if idx.size:
                g = (_sigmoid(X[idx] @ th[:d] + th[d]) - y[idx])[:, None]
                pe = np.c_[g * X[idx], g]
                pe *= np.minimum(1, clip / np.maximum(np.linalg.norm(pe, axis=1), 1e-12))[:, None]
                tot += pe.sum(0)
            th -= lr * tot / (q * n)
        return lambda Z, th=th: _sigmoid(Z @ th[:d] + th[d])
    return train


def bench_mia() -> None:
    print("## Membership inference (LR, 50 features; AUC [95% CI]; TPR at FPR 0.1)")
    for n_each in (60, 500):
        X, y = make_ehr_like(2 * n_each, 35, 15, seed=n_each)
        Xm, ym, Xn, yn = X[:n_each], y[:n_each], X[n_each:], y[n_each:]
        configs = [("non-private", plain_trainer(), float("inf"))]
        for eps in (8.0, 2.0, 1.0):
            configs.append((f"DP-SGD eps={eps:g}", dp_trainer(calibrate(eps, 0.5, 30)), eps))
        for name, fn, _ in configs:
            t = time.perf_counter()
            r = run_membership_attacks(Xm, ym, Xn, yn, fn, seed=1, n_bootstrap=500)
            dt = time.perf_counter() - t
            cells = []
            for k in ("loss_threshold", "lira_offline", "lira_online"):
                a = r[k]
                cells.append(f"{k}={a['auc']:.3f} [{a['auc_ci'][0]:.2f},{a['auc_ci'][1]:.2f}]"
                             f" tpr@.1={a['tpr_at_fpr'][0]['tpr']:.2f}")
            print(f"n={n_each}+{n_each} {name:18s} " + "  ".join(cells) + f"  ({dt:.2f}s)")


def bench_inversion() -> None:
    print("\n## Update inversion (35 binary + 15 continuous features; means of 20 trials)")
    X, y = make_ehr_like(2000, 35, 15, seed=3)
    t = time.perf_counter()
    out = run_inversion_suite(X, y, n_trials=20, seed=0, dp_batch_sizes=(1,),
                              noise_multipliers=(0.0, 0.05, 0.1, 0.5, 1.0, 2.0))
    dt = time.perf_counter() - t
    for key in ("plain_update", "masked_words", "aggregate", "dp_aggregate"):
        for r in out[key]:
            extra = f" sigma={r['noise_multiplier']:g} guide={r['cosine_ceiling']:.3f}" \
                if key == "dp_aggregate" else ""
            print(f"{key:13s} B={r['batch_size']:3d}{extra} cos={r['cosine']:+.3f} "
                  f"(chance {r['cosine_chance']:+.3f}) cos_mean={r['cosine_to_mean']:+.3f} "
                  f"relL2={r['relative_l2']:.3g} bin={r['binary_exact_fraction']:.3f} "
                  f"(prior {r['binary_baseline_fraction']:.3f}) "
                  f"reid={r['reidentification_rate']:.2f} (chance "
                  f"{r['reidentification_chance']:.3f})"
                  + (f" rero={r['binary_rero_bound']:.3f}" if key == "dp_aggregate" else ""))
    print(f"(suite {dt:.2f}s)")


def bench_audit() -> None:
    print("\n## One-run audit (coordinate canaries, full-batch DP-GD, 10 steps, 95% conf.)")
    m, d = 1000, 10
    X, y = make_ehr_like(500, 0, d, seed=4)
    canaries = coordinate_canaries(m, d, value=10.0)
    rows = [("non-private", plain_trainer(l2=0.0, steps=100), float("inf"))]
    for eps in (1.0, 2.0, 4.0, 8.0):
        sigma = float(dp_accounting.calibrate_dp_mechanism(
            pld_privacy_accountant.PLDAccountant,
            lambda s: dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(s), 10),
            eps, DELTA, bracket_interval=dp_accounting.ExplicitBracketInterval(0.3, 80.0)))
        rows.append((f"DP eps={eps:g}", dp_trainer(sigma, q=1.0, steps=10), eps))
    for name, fn, eps in rows:
        for k in (100, 300):
            t = time.perf_counter()
            bounds = [one_run_audit(input_canary_scorer(X, y, fn), canaries, m, k, k, DELTA,
                                    0.05, s, eps_claimed=eps) for s in range(3)]
            dt = (time.perf_counter() - t) / 3
            lbs = ", ".join(f"{b.eps_lower_bound:.2f} ({b.correct}/{b.guesses})" for b in bounds)
            print(f"{name:12s} k+=k-={k}: eps_lower={lbs}  claimed={eps:g}  ({dt:.2f}s/run)")


def main() -> None:
    bench_mia()
    bench_inversion()
    bench_audit()


if __name__ == "__main__":
    main()
