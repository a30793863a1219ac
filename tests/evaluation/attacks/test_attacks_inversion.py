import json

import numpy as np
import pytest

from privehr.evaluation.attacks._checks import AttackInputError
from privehr.evaluation.attacks.inversion import (
    chacha20_mask,
    decode_fixed_point,
    encode_fixed_point,
    lr_local_update,
    mask_words,
    reconstruct_from_masked_words,
    reconstruct_from_update,
    score_reconstruction,
)
from privehr.evaluation.attacks.inversion_suite import run_inversion_suite

KEY = bytes(range(32))  # fixed ChaCha20 key: deterministic masks in tests


@pytest.fixture(scope="module")
def ehr_like():
    """30 binary (prevalence 0.2) + 10 standardised continuous features, 30% positives."""
    rng = np.random.default_rng(0)
    n = 400
    X = np.c_[(rng.random((n, 30)) < 0.2).astype(float), rng.normal(size=(n, 10))]
    y = (rng.random(n) < 0.3).astype(np.int64)
    return X, y


def test_single_record_update_reveals_the_record_exactly(ehr_like):
    X, y = ehr_like
    rng = np.random.default_rng(1)
    w, b = rng.normal(0, 0.1, X.shape[1]), 0.2  # a mid-training global model
    for steps in (1, 5):
        update = lr_local_update(w, b, X[:1], y[:1], lr=0.3, steps=steps)
        m = score_reconstruction(reconstruct_from_update(update), X[:1], population=X)
        assert m["cosine"] == pytest.approx(1.0, abs=1e-9)
        assert m["relative_l2"] < 1e-8
        assert m["binary_exact_fraction"] == 1.0
        assert m["binary_baseline_fraction"] < 1.0  # the prior alone does not get it right


def test_same_label_batch_reveals_the_batch_average(ehr_like):
    X, y = ehr_like
    idx = np.flatnonzero(y == 1)[:8]
    update = lr_local_update(np.zeros(X.shape[1]), 0.0, X[idx], y[idx], lr=0.1)
    x_hat = reconstruct_from_update(update)
    assert np.allclose(x_hat, X[idx].mean(axis=0))
    m = score_reconstruction(x_hat, X[idx])
    assert m["cosine_to_mean"] == pytest.approx(1.0)
    assert m["cosine"] < 0.95  # but no single record


def test_best_matching_record_links_a_reconstruction_to_its_patient(ehr_like):
    from privehr.evaluation.attacks.inversion import best_matching_record

    X, y = ehr_like
    update = lr_local_update(np.zeros(X.shape[1]), 0.0, X[17:18], y[17:18])
    idx, cos = best_matching_record(reconstruct_from_update(update), X)
    assert idx == 17 and cos == pytest.approx(1.0)
    assert best_matching_record(np.zeros(X.shape[1]), X)[1] == 0.0


def test_fixed_point_round_trip_both_word_sizes():
    v = np.array([-3.25, 0.0, 1e-3, 2.5])
    for dtype in (np.uint32, np.uint64):
        words = encode_fixed_point(v, frac_bits=16, dtype=dtype)
        assert words.dtype == dtype
        assert np.allclose(decode_fixed_point(words, frac_bits=16), v, atol=2**-16)
    with pytest.raises(ValueError, match="uint32 or uint64"):
        decode_fixed_point(np.zeros(3, dtype=np.int32), frac_bits=16)
    with pytest.raises(ValueError, match="exactly one"):
        decode_fixed_point(np.zeros(3, dtype=np.uint32))
    with pytest.raises(ValueError, match="representable"):
        encode_fixed_point(np.array([0.0, 40000.0]), frac_bits=16, dtype=np.uint32)


def test_decode_b_bit_words_in_a_wide_container_with_any_scale():
    """As SecAgg sends them: b-bit two's complement in uint64 words, scale not a power of 2."""
    scale, bits = 1000.0, 20
    values = np.array([-1.234, 0.5, -0.001, 3.0])
    ints = np.rint(values * scale).astype(np.int64)
    words = ints.view(np.uint64) & np.uint64((1 << bits) - 1)
    assert np.allclose(decode_fixed_point(words, scale=scale, bits=bits), values, atol=1e-3)
    x_hat = reconstruct_from_masked_words(words, scale=scale, bits=bits)
    assert np.allclose(x_hat, values[:-1] / values[-1], atol=1e-3)
    with pytest.raises(ValueError, match="bits=40"):
        decode_fixed_point(words.astype(np.uint32), scale=scale, bits=40)


def test_masked_words_reveal_nothing_but_unmasking_restores_the_record(ehr_like):
    X, y = ehr_like
    cosines = []
    for i in range(60):
        update = lr_local_update(np.zeros(X.shape[1]), 0.0, X[i:i + 1], y[i:i + 1], lr=0.1)
        words = encode_fixed_point(update, frac_bits=16)
        mask = chacha20_mask(words.size, np.uint32, key=bytes((i + j) % 256 for j in range(32)))
        seen = mask_words(words, mask)
        cosines.append(score_reconstruction(
            reconstruct_from_masked_words(seen, frac_bits=16), X[i:i + 1])["cosine"])
        unmasked = (seen - mask).astype(np.uint32)
        x_back = reconstruct_from_masked_words(unmasked, frac_bits=16)
        assert score_reconstruction(x_back, X[i:i + 1])["cosine"] > 0.999
    cosines = np.array(cosines)
    assert abs(cosines.mean()) < 0.1 and np.abs(cosines).mean() < 0.3


def test_chacha20_mask_is_keyed_and_uniform_looking():
    a, b = chacha20_mask(4096, np.uint32, key=KEY), chacha20_mask(4096, np.uint32, key=KEY)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, chacha20_mask(4096, np.uint32))  # fresh random key
    assert abs(a.astype(float).mean() / 2**32 - 0.5) < 0.02


def test_suite_shows_exact_leak_masking_aggregation_and_dp(ehr_like):
    X, y = ehr_like
    out = run_inversion_suite(X, y, batch_sizes=(1, 4, 64), noise_multipliers=(0.0, 0.1, 2.0),
                              dp_batch_sizes=(1,), n_trials=30, n_sites=4, seed=3,
                              mask_fn=lambda n, dt: chacha20_mask(n, dt))
    json.dumps(out)
    plain = {r["batch_size"]: r for r in out["plain_update"]}
    masked = {r["batch_size"]: r for r in out["masked_words"]}
    agg = {r["batch_size"]: r for r in out["aggregate"]}
    dp = {r["noise_multiplier"]: r for r in out["dp_aggregate"]}
    # (a) a single site's single-record update: exact
    assert plain[1]["cosine"] > 0.999 and plain[1]["binary_exact_fraction"] == 1.0
    assert plain[1]["reidentification_rate"] == 1.0
    assert plain[1]["reidentification_chance"] == 1 / 400
    # (b) masked words: no better than a random direction
    assert abs(masked[1]["cosine"]) < 0.15
    assert masked[64]["cosine"] < masked[64]["cosine_chance"] + 0.15
    # (c) aggregate: exact for one record in the round, fades as the total batch grows
    assert agg[1]["cosine"] > 0.999
    assert agg[4]["cosine"] < 0.9 and agg[64]["cosine"] < agg[1]["cosine"] - 0.2
    gain = {b: agg[b]["binary_exact_fraction"] - agg[b]["binary_baseline_fraction"]
            for b in agg}
    assert gain[1] > 0.1 and gain[64] < gain[1] - 0.1
    assert agg[4]["n_sites"] == 4 and agg[1]["n_sites"] == 1
    assert agg[1]["reidentification_rate"] == 1.0
    # linkage against the population still finds a patient of a 4-record round
    assert agg[4]["reidentification_rate"] > 5 * agg[4]["reidentification_chance"]
    assert masked[1]["reidentification_rate"] < 0.1
    assert dp[2.0]["reidentification_rate"] < 0.1
    # (d) DP noise: cosine shrinks with σ and tracks the 1/sqrt(1 + σ² d) guide
    assert dp[0.0]["cosine"] > 0.999
    assert dp[0.1]["cosine"] == pytest.approx(dp[0.1]["cosine_ceiling"], abs=0.1)
    assert abs(dp[2.0]["cosine"]) < dp[2.0]["cosine_ceiling"] + 0.1
    assert dp[2.0]["binary_exact_fraction"] < dp[2.0]["binary_baseline_fraction"] + 0.05
    # the DP-implied reconstruction bound holds and tightens with noise
    for r in out["dp_aggregate"]:
        assert r["binary_exact_fraction"] <= r["binary_rero_bound"] + 0.02
    assert dp[0.0]["binary_rero_bound"] == 1.0 > dp[0.1]["binary_rero_bound"] - 1e-12
    assert dp[2.0]["binary_rero_bound"] < dp[0.1]["binary_rero_bound"]


def test_rero_bound_matches_gaussian_tradeoff():
    from scipy.stats import norm

    from privehr.evaluation.attacks.inversion_suite import binary_rero_bound

    X = np.c_[np.r_[np.ones(20), np.zeros(80)], np.r_[np.ones(50), np.zeros(50)]]
    binary = np.array([True, True])
    expected = np.mean([norm.cdf(norm.ppf(0.8) + 1.0), norm.cdf(0.0 + 1.0)])
    assert binary_rero_bound(X, binary, 1.0) == pytest.approx(expected)
    assert binary_rero_bound(X, np.array([False, False]), 1.0) is None


def test_suite_validates_all_problems_at_once(ehr_like):
    X, y = ehr_like
    with pytest.raises(AttackInputError) as err:
        run_inversion_suite(X[:10], y[:10], batch_sizes=(1, 50), noise_multipliers=(-1.0,),
                            n_trials=0, word_dtype=np.int32)
    assert len(err.value.problems) == 4
