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


class _Clock:
    """Accumulates wall-clock and CPU seconds (CPU = ``time.process_time``: what this process
    used, not what neighbours on a shared machine took)."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        self.wall += time.perf_counter() - w
        self.cpu += time.process_time() - c
        return out


def bench_aggregation(d: int, k: int, rng: np.random.Generator) -> dict[str, Any]:
    holder, public, sha = KeyHolder.create(holder_id="site-0", min_sites=2)
    weights = rng.integers(50, 2000, size=k).astype(float)
    round_id = f"bench-{d}"
    coordinator = CoordinatorAggregator(public, sha, length=d, round_id=round_id)
    enc_t, coord_t, key_t, plain_t = _Clock(), _Clock(), _Clock(), _Clock()
    plain_sum = np.zeros(d)
    site_bytes = 0
    for i in range(k):
        update = rng.normal(0.0, 0.05, size=d).astype(np.float32).astype(np.float64)
        site = SiteEncryptor(public, holder.record, site_id=f"site-{i}")
        enc = enc_t.run(site.encrypt, update, float(weights[i]), round_id=round_id)
        site_bytes = enc.nbytes
        payload = enc.to_payload()
        coord_t.run(coordinator.add, payload)
        plain_sum = plain_t.run(np.add, plain_sum, weights[i] * update)
        del enc, payload
    aggregate = coord_t.run(coordinator.result)
    mean = key_t.run(holder.decrypt_aggregate, aggregate)
    plain_mean = plain_t.run(np.divide, plain_sum, weights.sum())
    err = float(np.max(np.abs(mean - plain_mean)))
    he_cpu = enc_t.cpu + coord_t.cpu + key_t.cpu
    return {
        "d": d,
        "sites": k,
        "public_context_bytes": len(public),
        "encrypt_cpu_s_per_site": enc_t.cpu / k,
        "ciphertext_bytes_per_site": site_bytes,
        "bytes_per_value": site_bytes / d,
        "x_float32": site_bytes / (4 * d),
        "coordinator_cpu_s": coord_t.cpu,
        "key_holder_cpu_s": key_t.cpu,
        "he_total_cpu_s": he_cpu,
        "he_total_wall_s": enc_t.wall + coord_t.wall + key_t.wall,
        "plain_total_cpu_s": plain_t.cpu,
        "slowdown_cpu": he_cpu / max(plain_t.cpu, 1e-9),
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
    t, c = time.perf_counter(), time.process_time()
    probs, stats = score_encrypted(x, model)
    total = time.perf_counter() - t
    cpu = time.process_time() - c
    dev = float(np.max(np.abs(probs - expit(model.logits(x)))))
    return {
        "model": f"quadratic MLP (H={hidden}), N=16384" if hidden else "logistic regression",
        "patients": n,
        "features": d,
        "total_s": total,
        "total_cpu_s": cpu,
        "patients_per_s": n / total,
        "patients_per_cpu_s": n / cpu,
        "host_patients_per_s": n / stats.evaluate_seconds,
        "client_encrypt_s": stats.encrypt_seconds,
        "host_evaluate_s": stats.evaluate_seconds,
        "client_decrypt_s": stats.decrypt_seconds,
        "request_bytes": stats.request_bytes,
        "response_bytes": stats.response_bytes,
        "public_context_bytes": stats.public_context_bytes,
        "max_prob_deviation": dev,
    }


def bench_real(export_dir: str) -> dict[str, Any]:
    """Encrypted scoring of a real Synthea export: ingest, mortality task, plaintext-trained
    logistic regression, encrypted vs plaintext probabilities (uses privehr.ehr/.learning)."""
    import tempfile
    from pathlib import Path

    from privehr.ehr.features import build_task_data
    from privehr.ehr.store import ingest, open_store
    from privehr.ehr.tasks import mortality_task
    from privehr.learning.models import Estimator

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store.duckdb"
        ingest(export_dir, store)
        data = build_task_data(open_store(store), mortality_task())
    x = data.X.astype(np.float64)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    est = Estimator(kind="logreg").fit(x, data.y)
    plain = np.asarray(est.predict_proba(x)).reshape(len(x), -1)[:, -1]
    model = LinearModel.from_flat(est.parameters(), x.shape[1])
    probs, stats = score_encrypted(x, model)
    return {
        "export": Path(export_dir).name,
        "patients": int(x.shape[0]),
        "features": int(x.shape[1]),
        "request_bytes": stats.request_bytes,
        "response_bytes": stats.response_bytes,
        "max_prob_deviation": float(np.max(np.abs(probs - plain))),
    }


def _aggregation_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| d | K | encrypt/site CPU (s) | bytes/site | B/value (x f32) | coordinator CPU, K sites "
        "(s) | key holder CPU (s) | HE total CPU (s) | HE total wall (s) | plaintext CPU (s) | "
        "HE/plain | max err | bound |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['d']:.0e} | {r['sites']} | {r['encrypt_cpu_s_per_site']:.3f} | "
        f"{r['ciphertext_bytes_per_site'] / 1e6:.2f} MB | {r['bytes_per_value']:.1f} "
        f"({r['x_float32']:.1f}x) | {r['coordinator_cpu_s']:.3f} | {r['key_holder_cpu_s']:.3f} | "
        f"{r['he_total_cpu_s']:.2f} | {r['he_total_wall_s']:.2f} | {r['plain_total_cpu_s']:.4f} | "
        f"{r['slowdown_cpu']:.0f}x | {r['max_abs_error']:.1e} | {r['stated_bound']:.1e} |"
        for r in rows
    ]
    return head + "\n".join(lines)


def _scoring_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | patients | features | end-to-end patients/CPU-s | end-to-end patients/s (wall) "
        "| host patients/s (wall) | request | response | max prob. deviation |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['model']} | {r['patients']} | {r['features']} | {r['patients_per_cpu_s']:.0f} | "
        f"{r['patients_per_s']:.0f} | "
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
    parser.add_argument(
        "--synthea", metavar="EXPORT_DIR",
        help="also score a real Synthea CSV export, e.g. data/synthea/ma-113-synthea-v2.5",
    )
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
    results: dict[str, Any] = {"aggregation": agg, "scoring": scoring}
    if args.synthea:
        real = bench_real(args.synthea)
        results["synthea"] = real
        print(
            f"\nReal export {real['export']}: {real['patients']} patients x {real['features']} "
            f"features, request {real['request_bytes'] / 1e6:.1f} MB, response "
            f"{real['response_bytes'] / 1e3:.0f} kB, max probability deviation from plaintext "
            f"{real['max_prob_deviation']:.1e}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
