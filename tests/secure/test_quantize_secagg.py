"""Quantisation composed with SecAgg: clip -> quantise -> (noise) -> mask -> sum -> unmask ->
dequantise equals the unprotected pipeline up to the quantisation bound, and with integer
noise the unmasked sum carries (at least) the accounted variance, also after dropouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.secure.quantize import (
    DistributedDpQuantizer,
    FixedPointCodec,
    L2Clip,
    ModularCodec,
    choose_bits,
    site_noise_stddev,
)
from privehr.secure.secagg import SecAggConfig, SecAggCoordinator, SecAggSite, run_round
from privehr.secure.secagg import constants as c


def _round(n, t, dim, bits):
    ids = [f"site-{i}" for i in range(n)]
    keys = {s: Ed25519PrivateKey.generate() for s in ids}
    roster = {s: k.public_key().public_bytes_raw() for s, k in keys.items()}
    cfg = SecAggConfig(n_sites=n, threshold=t, dim=dim, bits=bits)
    sites = {s: SecAggSite(s, keys[s], roster, cfg) for s in ids}
    return ids, sites, SecAggCoordinator(cfg, ids)


def _rounded_gaussian(std, seed):
    """Test-only stand-in for privehr.privacy.discrete.sample_discrete_gaussian."""
    gen = np.random.default_rng(seed)
    return lambda size: np.rint(gen.normal(0.0, std, size)).astype(np.int64)


@pytest.mark.parametrize("drop", [{}, {c.STAGE_MASKED: {"site-1", "site-4"}}])
def test_fixed_point_secagg_matches_weighted_float_sum(drop):
    n, dim, clip = 6, 300, 2.0
    rng = np.random.default_rng(5)
    codec = FixedPointCodec(clip_bound=clip, max_weight=1.0, n_summands=n, bits=32)
    ids, sites, coord = _round(n, 4, dim, codec.bits)
    updates = {s: L2Clip(clip).apply(rng.normal(size=dim))[0] for s in ids}
    weights = {s: float(w) for s, w in zip(ids, rng.uniform(0.1, 1.0, n), strict=True)}
    inputs = {s: codec.encode(updates[s], weights[s], site=s) for s in ids}
    result = run_round(coord, sites, inputs, drop=drop)
    plain = sum(weights[s] * updates[s] for s in result.included)
    got = codec.decode(result.sum)
    assert np.max(np.abs(got - plain)) <= codec.error_bound
    assert np.max(np.abs(got - plain)) > 0  # quantisation is real, the bound is not vacuous


def test_distributed_dp_pipeline_without_noise_matches_unprotected_sum():
    n, dim, clip, gamma = 5, 200, 1.0, 1e-3
    rng = np.random.default_rng(6)
    probe = DistributedDpQuantizer(clip=clip, gamma=gamma, dim=dim, bits=32, rotation_seed=b"pub")
    bits = choose_bits(n, probe.sensitivity, 0.0)
    quant = DistributedDpQuantizer(clip=clip, gamma=gamma, dim=dim, bits=bits, rotation_seed=b"pub")
    ids, sites, coord = _round(n, 3, quant.output_dim, bits)
    raw = {s: rng.normal(size=dim) * 0.2 for s in ids}
    inputs, wraps = {}, 0
    for s in ids:
        inputs[s], m = quant.encode(raw[s], rng)
        wraps += m["wraps"]
    result = run_round(coord, sites, inputs)
    unprotected = sum(L2Clip(clip).apply(raw[s])[0] for s in ids)
    err = np.linalg.norm(quant.decode(result.sum) - unprotected)
    assert wraps == 0
    assert err <= gamma * n * math.sqrt(
        quant.output_dim
    )  # < 1 lattice step per site and coordinate


@pytest.mark.parametrize("n_dropped", [0, 2])
def test_noise_variance_of_unmasked_sum_matches_accounting(n_dropped):
    n, t, dim, clip, gamma, sigma = 6, 4, 4000, 1.0, 0.05, 1.0
    t_min = max(t, 3)
    probe = DistributedDpQuantizer(clip=clip, gamma=gamma, dim=dim, bits=32)
    delta = probe.sensitivity
    std = site_noise_stddev(sigma, delta, t_min)
    bits = choose_bits(n, delta, std)
    ids, sites, coord = _round(n, t, dim, bits)
    rng = np.random.default_rng(7)
    # inputs on the lattice (integers x gamma, norm <= clip): rounding is then exact
    lattice = {s: np.zeros(dim, dtype=np.int64) for s in ids}
    for i, s in enumerate(ids):
        lattice[s][i * 3 : i * 3 + 3] = [12, -5, 9]
    inputs, wraps = {}, 0
    for i, s in enumerate(ids):
        q = DistributedDpQuantizer(
            clip=clip, gamma=gamma, dim=dim, bits=bits, noise=_rounded_gaussian(std, 100 + i)
        )
        inputs[s], m = q.encode(lattice[s] * gamma, rng)
        wraps += m["wraps"]
    drop = {c.STAGE_MASKED: set(ids[:n_dropped])}
    result = run_round(coord, sites, inputs, drop=drop)
    assert len(result.included) == n - n_dropped
    signal = sum(lattice[s] for s in result.included)
    noise = ModularCodec(bits).decode(result.sum) - signal
    accounted = (sigma * delta) ** 2  # what the ledger is told the sum carries
    expected = len(result.included) * (std**2 + 1 / 12)  # stand-in: rounded Gaussian shares
    tol = 5 * math.sqrt(2 / (dim - 1))  # five standard errors of a sample variance
    assert abs(noise.mean()) < 5 * math.sqrt(expected / dim)
    assert noise.var(ddof=1) == pytest.approx(expected, rel=tol)
    assert noise.var(ddof=1) >= accounted * (1 - tol)
    if len(result.included) == t_min:  # max tolerable dropouts: exactly the accounted noise
        assert noise.var(ddof=1) == pytest.approx(accounted, rel=tol + 1 / (12 * std**2))
    assert wraps == 0


def test_wraparound_is_counted_not_aborted():
    rng = np.random.default_rng(8)
    q = DistributedDpQuantizer(
        clip=1.0, gamma=0.01, dim=64, bits=6, noise=_rounded_gaussian(40.0, 9)
    )
    words, m = q.encode(rng.normal(size=64), rng)
    assert m["wraps"] > 0
    assert words.shape == (64,) and int(words.max()) < 64
