"""Quantisation stages: each encode/decode pair alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privehr.secure.quantize import (
    MIN_SITE_STDDEV,
    ConditionalRounding,
    DistributedDpQuantizer,
    DistributedDpRefused,
    FixedPointCodec,
    HadamardRotation,
    IntegerNoise,
    L2Clip,
    ModularCodec,
    SaturationError,
    Scale,
    choose_bits,
    plan_distributed_dp,
    post_rounding_sensitivity,
    site_noise_stddev,
)


def test_l2_clip_scales_only_long_vectors():
    long, short = np.array([3.0, 4.0]), np.array([0.3, 0.4])
    clipped, m = L2Clip(1.0).apply(long)
    assert np.linalg.norm(clipped) == pytest.approx(1.0) and m["clipped"]
    np.testing.assert_allclose(clipped, long / 5)
    same, m = L2Clip(1.0).apply(short)
    np.testing.assert_array_equal(same, short)
    assert not m["clipped"]
    with pytest.raises(ValueError, match="bound"):
        L2Clip(0.0)


def test_scale_roundtrip():
    x = np.array([0.5, -1.25])
    s = Scale(0.25)
    np.testing.assert_allclose(s.forward(x), [2.0, -5.0])
    np.testing.assert_allclose(s.inverse(s.forward(x)), x)


@pytest.mark.parametrize("dim", [1, 5, 64, 1000])
def test_hadamard_rotation_is_orthonormal_and_invertible(dim):
    rng = np.random.default_rng(dim)
    x = rng.normal(size=dim)
    rot = HadamardRotation(dim, b"public-seed")
    y = rot.forward(x)
    assert y.shape == (rot.padded_dim,) and rot.padded_dim >= dim
    assert rot.padded_dim & (rot.padded_dim - 1) == 0
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x))
    np.testing.assert_allclose(rot.inverse(y), x, atol=1e-10)
    assert not np.allclose(HadamardRotation(dim, b"other").forward(x), y) or dim == 1


def test_hadamard_rotation_flattens_a_spike():
    x = np.zeros(1024)
    x[3] = 1.0
    y = HadamardRotation(1024, b"s").forward(x)
    assert np.max(np.abs(y)) == pytest.approx(1 / 32)


def test_conditional_rounding_is_unbiased_and_respects_the_bound():
    rng = np.random.default_rng(0)
    x = np.array([0.25, -1.5, 2.9, 0.0])
    bound = post_rounding_sensitivity(float(np.linalg.norm(x)), 1.0, 4, 0.5)
    stage = ConditionalRounding(bound)
    draws = np.array([stage.apply(x, rng)[0] for _ in range(4000)])
    assert draws.dtype == np.int64
    assert np.all(np.linalg.norm(draws, axis=1) <= bound)
    assert np.all((draws == np.floor(x)) | (draws == np.ceil(x)))
    # unconditional rounding is unbiased; conditioning on a loose bound barely moves the mean
    np.testing.assert_allclose(draws.mean(axis=0), x, atol=0.05)


def test_conditional_rounding_resamples_and_gives_up_loudly():
    rng = np.random.default_rng(1)
    x = np.full(100, 0.5)
    tight = ConditionalRounding(norm_bound=math.sqrt(50), max_tries=10_000)
    out, m = tight.apply(x, rng)
    assert np.linalg.norm(out) <= math.sqrt(50) and m["rounding_tries"] >= 1
    with pytest.raises(RuntimeError, match="conditional rounding failed"):
        ConditionalRounding(norm_bound=1.0, max_tries=5).apply(x, rng)


def test_post_rounding_sensitivity_properties():
    c, gamma, d = 1.0, 0.01, 1000
    cg = c / gamma
    s = post_rounding_sensitivity(c, gamma, d, 1e-3)
    assert cg < s <= cg + math.sqrt(d)
    assert post_rounding_sensitivity(c, gamma, d, 0.5) < s  # larger beta, tighter bound
    # for tiny beta and a short clip the deterministic worst case (c + sqrt(d)) takes over
    assert post_rounding_sensitivity(1e-3, 1.0, 100, 1e-300) == pytest.approx(1e-3 + 10.0)
    assert s == pytest.approx(
        math.sqrt(cg**2 + d / 4 + math.sqrt(2 * math.log(1e3)) * (cg + math.sqrt(d) / 2))
    )
    with pytest.raises(ValueError, match="beta"):
        post_rounding_sensitivity(c, gamma, d, 1.0)


def test_site_noise_share_and_refusal():
    std = site_noise_stddev(1.0, 120.0, 4)
    assert std == pytest.approx(60.0)
    assert 4 * std**2 == pytest.approx(120.0**2)  # t_min survivors carry the accounted variance
    with pytest.raises(DistributedDpRefused, match="lattice units"):
        site_noise_stddev(0.5, 10.0, 9)  # 1.67 < MIN_SITE_STDDEV
    assert site_noise_stddev(1.0, MIN_SITE_STDDEV, 1) == MIN_SITE_STDDEV  # boundary accepted


def test_modular_codec_roundtrip_centred_lift_and_wrap_count():
    codec = ModularCodec(8)
    x = np.array([-128, -1, 0, 1, 127], dtype=np.int64)
    words, wraps = codec.encode(x)
    assert wraps == 0 and words.dtype == np.uint64 and int(words.max()) < 256
    np.testing.assert_array_equal(codec.decode(words), x)
    words, wraps = codec.encode(np.array([128, -129, 5]))
    assert wraps == 2
    np.testing.assert_array_equal(codec.decode(words), [-128, 127, 5])  # wraps, never aborts
    # sums of words decode to the sum of values while the sum stays in range
    a, b = codec.encode(np.array([100, -60]))[0], codec.encode(np.array([20, -60]))[0]
    np.testing.assert_array_equal(codec.decode(a + b), [120, -120])
    big = ModularCodec(64)
    np.testing.assert_array_equal(big.decode(big.encode(np.array([-(2**62), 3]))[0]), [-(2**62), 3])


def test_integer_noise_checks_its_callable():
    x = np.zeros(4, dtype=np.int64)
    np.testing.assert_array_equal(IntegerNoise(lambda n: np.ones(n, np.int64)).apply(x), 1)
    with pytest.raises(ValueError, match="noise returned"):
        IntegerNoise(lambda n: np.ones(n)).apply(x)


def test_fixed_point_range_cannot_wrap_for_n_summands():
    codec = FixedPointCodec(clip_bound=1.0, max_weight=2.0, n_summands=10, bits=16)
    worst = np.array([1.0, -1.0])
    words = [codec.encode(worst, 2.0, site=f"s{i}") for i in range(10)]
    total = np.sum(words, axis=0, dtype=np.uint64)
    np.testing.assert_allclose(codec.decode(total), 10 * 2.0 * worst, atol=codec.error_bound)
    assert codec.error_bound < 0.01


def test_fixed_point_rejects_saturation_naming_the_site():
    codec = FixedPointCodec(clip_bound=1.0, max_weight=1.0, n_summands=4, bits=32)
    with pytest.raises(SaturationError, match="site 'hospital-7'.*never clipped silently"):
        codec.encode(np.array([0.5, 1.5]), 1.0, site="hospital-7")
    with pytest.raises(SaturationError, match="weight"):
        codec.encode(np.array([0.5]), 1.5, site="hospital-7")
    with pytest.raises(SaturationError):
        codec.encode(np.array([np.nan]), 1.0, site="x")
    with pytest.raises(ValueError, match="too narrow"):
        FixedPointCodec(clip_bound=1.0, max_weight=1.0, n_summands=10, bits=4)


def test_choose_bits_fits_signal_and_noise():
    b = choose_bits(10, 100.0, 50.0)
    worst = 10 * 100.0 + 12 * math.sqrt(10) * 50.0
    assert 2 ** (b - 1) > worst >= 2 ** (b - 2) - 1
    assert choose_bits(100, 100.0, 50.0) > b


def test_distributed_dp_quantizer_roundtrip_without_noise():
    rng = np.random.default_rng(2)
    x = rng.normal(size=300)
    q = DistributedDpQuantizer(clip=5.0, gamma=1e-3, dim=300, bits=32, rotation_seed=b"r")
    words, m = q.encode(x, rng)
    assert words.shape == (q.output_dim,) == (512,) and m["wraps"] == 0
    clipped = L2Clip(5.0).apply(x)[0]
    err = np.linalg.norm(q.decode(words) - clipped)
    assert err <= q.gamma * math.sqrt(q.output_dim)  # each lattice coordinate off by < 1
    with pytest.raises(ValueError, match="shape"):
        q.encode(x[:10], rng)


def test_plan_distributed_dp_is_consistent_with_its_parts():
    plan = plan_distributed_dp(
        clip=1.0, gamma=0.01, dim=1000, noise_multiplier=1.2, min_survivors=4, n_sites=8
    )
    assert plan.words == 1024
    assert plan.sensitivity == pytest.approx(
        post_rounding_sensitivity(1.0, 0.01, 1024, math.exp(-0.5))
    )
    assert plan.site_stddev == pytest.approx(1.2 * plan.sensitivity / 2)
    assert plan.bits == choose_bits(8, plan.sensitivity, plan.site_stddev)
    assert (
        plan_distributed_dp(
            clip=1.0,
            gamma=0.01,
            dim=1000,
            noise_multiplier=1.2,
            min_survivors=4,
            n_sites=8,
            rotate=False,
        ).words
        == 1000
    )
    with pytest.raises(DistributedDpRefused):
        plan_distributed_dp(
            clip=1.0, gamma=1.0, dim=4, noise_multiplier=0.5, min_survivors=9, n_sites=10
        )


@pytest.mark.parametrize("bits", [12, 32, 53, 62, 64])
def test_fixed_point_roundtrip_within_bound_for_any_width(bits):
    rng = np.random.default_rng(bits)
    n = 7
    codec = FixedPointCodec(clip_bound=3.0, max_weight=50.0, n_summands=n, bits=bits)
    xs = [np.clip(rng.normal(size=400), -3, 3) for _ in range(n)]
    ws = rng.uniform(0, 50.0, n)
    words = [codec.encode(x, float(w)) for x, w in zip(xs, ws, strict=True)]
    total = np.zeros(400, dtype=np.uint64)
    for w in words:
        total += w  # uint64 wraps mod 2^64, which is exact mod 2^b
    want = sum(float(w) * x for x, w in zip(xs, ws, strict=True))
    assert np.max(np.abs(codec.decode(total) - want)) <= codec.error_bound
