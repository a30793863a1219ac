from __future__ import annotations

import numpy as np
import pytest

from privehr.secure.he.aggregation import (
    MAX_ABS_WEIGHTED,
    CoordinatorAggregator,
    SiteEncryptor,
    aggregate_error_bound,
    chunk_bounds,
)
from privehr.secure.he.errors import AggregationError, CiphertextError, HeParameterError
from privehr.secure.he.payloads import EncryptedAggregate, EncryptedUpdate

SLOTS = 4096
D_LONG = 3 * SLOTS + 17  # longer than the slot count: 4 chunks, the last holding 17 values


def _run(ceremony, updates, weights, length):
    holder, public, sha = ceremony
    coordinator = CoordinatorAggregator(public, sha, length=length)
    sent = []
    for i, (u, w) in enumerate(zip(updates, weights, strict=True)):
        enc = SiteEncryptor(public, sha, site_id=f"site-{i}").encrypt(u, w)
        sent.append(enc)
        coordinator.add(enc.to_payload())  # as routed by federation: a plain dict
    aggregate = EncryptedAggregate.from_payload(coordinator.result().to_payload())
    return holder, coordinator, sent, aggregate


def test_chunk_bounds_cover_vector_exactly():
    bounds = chunk_bounds(D_LONG, SLOTS)
    assert bounds == [(0, 4096), (4096, 8192), (8192, 12288), (12288, 12305)]
    assert chunk_bounds(SLOTS, SLOTS) == [(0, SLOTS)]


def test_weighted_mean_matches_plaintext_within_stated_bound_for_chunked_vectors(ceremony):
    rng = np.random.default_rng(7)
    k = 4
    updates = [rng.normal(0.0, 0.5, size=D_LONG) for _ in range(k)]
    weights = [120.0, 35.0, 980.0, 7.0]
    holder, coordinator, sent, aggregate = _run(ceremony, updates, weights, D_LONG)
    assert all(len(u.chunks) == 4 for u in sent)
    assert len(aggregate.chunks) == 4 and aggregate.site_ids == tuple(f"site-{i}" for i in range(4))
    assert aggregate.total_weight == pytest.approx(sum(weights))
    got = holder.decrypt_aggregate(aggregate)
    expected = np.average(np.stack(updates), axis=0, weights=weights)
    bound = holder.error_bound(k, sum(weights))
    assert bound == aggregate_error_bound(k, sum(weights), 20)
    assert got.shape == (D_LONG,)
    assert np.max(np.abs(got - expected)) <= bound
    # the tail (last chunk, 17 values) is aggregated too, not lost or padded into the result
    assert np.max(np.abs(got[-17:] - expected[-17:])) <= bound


def test_decrypted_sum_is_rounded_to_the_release_grid(ceremony):
    rng = np.random.default_rng(1)
    updates = [rng.normal(size=300) for _ in range(2)]
    holder, _, _, aggregate = _run(ceremony, updates, [3.0, 4.0], 300)
    total = holder.decrypt_aggregate(aggregate, mean=False)
    grid = 2.0**-20
    assert np.array_equal(total / grid, np.round(total / grid))
    assert np.max(np.abs(total - (3 * updates[0] + 4 * updates[1]))) <= 2 * 2**-24 + grid / 2


def test_key_holder_refuses_an_aggregate_of_one_site(ceremony):
    rng = np.random.default_rng(2)
    holder, _, _, aggregate = _run(ceremony, [rng.normal(size=50)], [1.0], 50)
    with pytest.raises(AggregationError, match="min_sites"):
        holder.decrypt_aggregate(aggregate)


def test_coordinator_rejects_duplicates_wrong_length_and_wrong_context(ceremony):
    _, public, sha = ceremony
    coordinator = CoordinatorAggregator(public, sha, length=100)
    site = SiteEncryptor(public, sha, site_id="s1")
    coordinator.add(site.encrypt(np.ones(100), 2.0))
    with pytest.raises(AggregationError, match="already contributed"):
        coordinator.add(site.encrypt(np.ones(100), 2.0))
    other = SiteEncryptor(public, sha, site_id="s2")
    with pytest.raises(AggregationError, match="length 99"):
        coordinator.add(other.encrypt(np.ones(99), 1.0))
    forged = EncryptedUpdate(**{**other.encrypt(np.ones(100)).__dict__, "context_sha256": "0" * 64})
    with pytest.raises(AggregationError, match="another context"):
        coordinator.add(forged)
    assert coordinator.site_ids_ == ["s1"] and coordinator.total_weight_ == 2.0


def test_corrupted_ciphertext_is_rejected_opaquely_and_leaves_the_sum_unchanged(ceremony):
    holder, public, sha = ceremony
    coordinator = CoordinatorAggregator(public, sha, length=D_LONG)
    good = SiteEncryptor(public, sha, site_id="s1").encrypt(np.full(D_LONG, 0.25), 1.0)
    coordinator.add(good)
    bad = SiteEncryptor(public, sha, site_id="s2").encrypt(np.full(D_LONG, 0.5), 1.0)
    chunks = list(bad.chunks)
    chunks[2] = chunks[2][:100]
    with pytest.raises(CiphertextError) as info:
        coordinator.add(EncryptedUpdate(**{**bad.__dict__, "chunks": tuple(chunks)}))
    assert str(info.value) == "ciphertext rejected"
    coordinator.add(SiteEncryptor(public, sha, site_id="s3").encrypt(np.full(D_LONG, 0.75), 1.0))
    mean = holder.decrypt_aggregate(coordinator.result())
    np.testing.assert_allclose(mean, 0.5, atol=holder.error_bound(2, 2.0))


def test_site_validation_names_field_value_and_fix(ceremony):
    _, public, sha = ceremony
    site = SiteEncryptor(public, sha, site_id="s1")
    with pytest.raises(HeParameterError, match="NaN"):
        site.encrypt(np.array([1.0, np.nan]), 1.0)
    with pytest.raises(HeParameterError, match="weight=0"):
        site.encrypt(np.ones(3), 0)
    with pytest.raises(HeParameterError, match="1-D"):
        site.encrypt(np.ones((2, 2)), 1.0)
    with pytest.raises(HeParameterError, match="same public constant"):
        site.encrypt(np.ones(3), MAX_ABS_WEIGHTED * 2)


def test_payload_roundtrip_and_kind_check(ceremony):
    _, public, sha = ceremony
    enc = SiteEncryptor(public, sha, site_id="s1").encrypt(np.ones(5), 3.0)
    payload = enc.to_payload()
    assert all(isinstance(c, bytes) for c in payload["chunks"])
    assert EncryptedUpdate.from_payload(payload) == enc
    with pytest.raises(HeParameterError, match="he.aggregate"):
        EncryptedAggregate.from_payload(payload)
    with pytest.raises(HeParameterError, match="lacks key 'weight'"):
        EncryptedUpdate.from_payload({k: v for k, v in payload.items() if k != "weight"})
    assert enc.nbytes == sum(len(c) for c in enc.chunks)


def test_result_before_any_update_is_an_error(ceremony):
    _, public, sha = ceremony
    with pytest.raises(AggregationError, match="add"):
        CoordinatorAggregator(public, sha, length=10).result()
