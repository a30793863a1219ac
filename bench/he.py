"""Benchmark: CKKS-encrypted aggregation and encrypted scoring (``python -m bench.he``).

Aggregation, for d in {1e4, 1e5, 1e6} (``--quick`` skips 1e6) and K sites (default 10):
per-site encrypt time and ciphertext bytes, coordinator aggregation time, key-holder decrypt
time, max error against the plaintext weighted mean -- beside plaintext aggregation of the same
vectors in the same run (ratios). Scoring: encrypted logistic-regression throughput.

Sites are simulated one after another in one process (encrypt, send, add), so the per-site
numbers are what one site pays; the coordinator numbers cover all K sites.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from scipy.special import expit

from privehr.secure.he import (
    CoordinatorAggregator,
    KeyHolder,
    LinearModel,
    PolyMlp,
    SiteEncryptor,
    score_encrypted,
)


def bench_aggregation(d: int, k: int, rng: np.random.Generator) -> dict[str, Any]:
    t0 = time.perf_counter()
    holder, public, sha = KeyHolder.create(holder_id="site-0", min_sites=2)
    setup_s = time.perf_counter() - t0
    weights = rng.integers(50, 2000, size=k).astype(float)
    coordinator = CoordinatorAggregator(public, sha, length=d, round_id=f"bench-{d}")
    plain_sum = np.zeros(d)
    encrypt_s = add_s = plain_s = 0.0
    site_bytes = 0
    for i in range(k):
        update = rng.normal(0.0, 0.05, size=d).astype(np.float32).astype(np.float64)
        site = SiteEncryptor(public, holder.record, site_id=f"site-{i}")
        t = time.perf_counter()
        enc = site.encrypt(update, float(weights[i]), round_id=f"bench-{d}")
        encrypt_s += time.perf_counter() - t
        site_bytes = enc.nbytes
        payload = enc.to_payload()
        t = time.perf_counter()
        coordinator.add(payload)
        add_s += time.perf_counter() - t
        t = time.perf_counter()
        plain_sum += weights[i] * update
        plain_s += time.perf_counter() - t
        del enc, payload
    t = time.perf_counter()
    aggregate = coordinator.result()
    result_s = time.perf_counter() - t
    t = time.perf_counter()
    mean = holder.decrypt_aggregate(aggregate)
    decrypt_s = time.perf_counter() - t
    t = time.perf_counter()
    plain_mean = plain_sum / weights.sum()
    plain_s += time.perf_counter() - t
    err = float(np.max(np.abs(mean - plain_mean)))
    he_total = encrypt_s + add_s + result_s + decrypt_s
    return {
        "d": d,
        "sites": k,
        "setup_s": setup_s,
        "public_context_bytes": len(public),
        "encrypt_s_per_site": encrypt_s / k,
        "ciphertext_bytes_per_site": site_bytes,
        "bytes_per_value": site_bytes / d,
        "x_float32": site_bytes / (4 * d),
        "aggregate_s": add_s + result_s,
        "decrypt_s": decrypt_s,
        "he_total_s": he_total,
        "plain_total_s": plain_s,
        "slowdown": he_total / max(plain_s, 1e-9),
        "max_abs_error": err,
        "stated_bound": holder.error_bound(k, float(weights.sum())),
    }


def bench_scoring(
    n: int, d: int, rng: np.random.Generator, hidden: int = 0
) -> dict[str, Any]:
    x = rng.normal(size=(n, d))
    if hidden:
        model: LinearModel | PolyMlp = PolyMlp(
            w1=rng.normal(0, 0.2, size=(hidden, d)), b1=np.zeros(hidden),
            w2=rng.normal(0, 0.3, size=hidden), b2=-0.4,
        )
    else:
        model = LinearModel(rng.normal(0, 0.5, size=d), -0.4)
    t = time.perf_counter()
    probs, stats = score_encrypted(x, model)
    total = time.perf_counter() - t
    dev = float(np.max(np.abs(probs - expit(model.logits(x)))))
    return {
        "model": f"quadratic MLP (H={hidden}), N=16384" if hidden else "logistic regression",
        "patients": n,
        "features": d,
        "total_s": total,
        "patients_per_s": n / total,
        "host_patients_per_s": n / stats.evaluate_seconds,
        "client_encrypt_s": stats.encrypt_seconds,
        "host_evaluate_s": stats.evaluate_seconds,
        "client_decrypt_s": stats.decrypt_seconds,
        "request_bytes": stats.request_bytes,
        "response_bytes": stats.response_bytes,
        "public_context_bytes": stats.public_context_bytes,
        "max_prob_deviation": dev,
    }


def _aggregation_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| d | K | encrypt/site (s) | bytes/site | B/value (x f32) | aggregate K (s) | "
        "decrypt (s) | HE total (s) | plaintext (s) | HE/plain | max err | bound |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['d']:.0e} | {r['sites']} | {r['encrypt_s_per_site']:.3f} | "
        f"{r['ciphertext_bytes_per_site'] / 1e6:.2f} MB | {r['bytes_per_value']:.1f} "
        f"({r['x_float32']:.1f}x) | {r['aggregate_s']:.3f} | {r['decrypt_s']:.3f} | "
        f"{r['he_total_s']:.2f} | {r['plain_total_s']:.4f} | {r['slowdown']:.0f}x | "
        f"{r['max_abs_error']:.1e} | {r['stated_bound']:.1e} |"
        for r in rows
    ]
    return head + "\n".join(lines)


def _scoring_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | patients | features | end-to-end patients/s | host patients/s | request | "
        "response | max prob. deviation |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['model']} | {r['patients']} | {r['features']} | {r['patients_per_s']:.0f} | "
        f"{r['host_patients_per_s']:.0f} | {r['request_bytes'] / 1e6:.1f} MB | "
        f"{r['response_bytes'] / 1e3:.0f} kB | {r['max_prob_deviation']:.1e} |"
        for r in rows
    ]
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.he", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip d = 1e6")
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    dims = [10_000, 100_000] + ([] if args.quick else [1_000_000])
    agg = [bench_aggregation(d, args.sites, rng) for d in dims]
    scoring = [bench_scoring(n, 30, rng) for n in (4096, 16384)]
    scoring.append(bench_scoring(8192, 30, rng, hidden=16))
    print("## Encrypted aggregation (CKKS N=8192, primes 60/40/60, scale 2^40)\n")
    print(_aggregation_table(agg))
    print("\n## Encrypted scoring\n")
    print(_scoring_table(scoring))
    results = {"aggregation": agg, "scoring": scoring}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
