from __future__ import annotations

import numpy as np
import pytest

from privehr.secure.he import (
    CoordinatorAggregator,
    EncryptedAggregate,
    EncryptedUpdate,
    SiteEncryptor,
    aggregate_error_bound,
)
from privehr.secure.he.backend import default_backend
from privehr.secure.he.errors import AggregationError, CiphertextError, HeParameterError
from privehr.secure.he.packing import MAX_ABS_WEIGHTED, chunk_bounds, packed_length

SLOTS = 4096
D_LONG = 3 * SLOTS + 17  # longer than the slot count: 4 chunks


def _run(ceremony, updates, weights, round_id, length=None):
    holder, public, sha = ceremony
    length = length or updates[0].size
    coordinator = CoordinatorAggregator(public, sha, length=length, round_id=round_id)
    sent = []
    for i, (u, w) in enumerate(zip(updates, weights, strict=True)):
        site = SiteEncryptor(public, holder.record, site_id=f"site-{i}")
        enc = site.encrypt(u, w, round_id=round_id)
        sent.append(enc)
        coordinator.add(enc.to_payload())  # as routed by federation: a plain dict
    aggregate = EncryptedAggregate.from_payload(coordinator.result().to_payload())
    return holder, coordinator, sent, aggregate


def test_chunk_bounds_cover_vector_exactly():
    assert chunk_bounds(packed_length(D_LONG), SLOTS) == [
        (0, 4096), (4096, 8192), (8192, 12288), (12288, 12309)
    ]
    assert chunk_bounds(SLOTS, SLOTS) == [(0, SLOTS)]


@pytest.mark.parametrize("d", [D_LONG, 3 * SLOTS - 2])  # the second puts tokens across chunks
def test_weighted_mean_matches_plaintext_within_stated_bound_for_chunked_vectors(
    ceremony, round_id, d
):
    rng = np.random.default_rng(7)
    k = 4
    updates = [rng.normal(0.0, 0.5, size=d) for _ in range(k)]
    weights = [120.0, 35.0, 980.0, 7.0]
    holder, _, sent, aggregate = _run(ceremony, updates, weights, round_id)
    assert all(len(u.chunks) == 4 for u in sent)
    assert len(aggregate.chunks) == 4 and aggregate.site_ids == tuple(f"site-{i}" for i in range(4))
    assert aggregate.total_weight == pytest.approx(sum(weights))
    got = holder.decrypt_aggregate(aggregate)
    expected = np.average(np.stack(updates), axis=0, weights=weights)
    bound = holder.error_bound(k, sum(weights))
    assert bound == aggregate_error_bound(k, sum(weights), 20)
    assert got.shape == (d,)
    assert np.max(np.abs(got - expected)) <= bound
    # the tail of the last chunk is aggregated too, not lost or padded into the result
    assert np.max(np.abs(got[-17:] - expected[-17:])) <= bound


def test_decrypted_sum_is_rounded_to_the_release_grid(ceremony, round_id):
    rng = np.random.default_rng(1)
    updates = [rng.normal(size=300) for _ in range(2)]
    holder, _, _, aggregate = _run(ceremony, updates, [3.0, 4.0], round_id)
    total = holder.decrypt_aggregate(aggregate, mean=False)
    grid = 2.0**-20
    assert np.array_equal(total / grid, np.round(total / grid))
    assert np.max(np.abs(total - (3 * updates[0] + 4 * updates[1]))) <= 2 * 2**-24 + grid / 2


def test_key_holder_refuses_an_aggregate_of_one_site(ceremony, round_id):
    rng = np.random.default_rng(2)
    holder, _, _, aggregate = _run(ceremony, [rng.normal(size=50)], [1.0], round_id)
    with pytest.raises(AggregationError, match="min_sites"):
        holder.decrypt_aggregate(aggregate)


def test_each_round_is_decrypted_at_most_once(ceremony, round_id):
    rng = np.random.default_rng(3)
    holder, _, _, aggregate = _run(ceremony, [rng.normal(size=20)] * 2, [1.0, 1.0], round_id)
    holder.decrypt_aggregate(aggregate)
    with pytest.raises(AggregationError, match="already decrypted"):
        holder.decrypt_aggregate(aggregate)


def test_lying_coordinator_passing_off_one_sites_update_is_caught(ceremony, round_id):
    """The coordinator hands the key holder site-0's ciphertext but claims site-0 + site-1."""
    rng = np.random.default_rng(4)
    updates = [rng.normal(size=100) for _ in range(2)]
    holder, _, sent, honest = _run(ceremony, updates, [1.0, 1.0], round_id)
    forged = EncryptedAggregate(**{**honest.__dict__, "chunks": sent[0].chunks})
    with pytest.raises(AggregationError, match="not the sum"):
        holder.decrypt_aggregate(forged)
    with pytest.raises(AggregationError, match="already decrypted"):  # no second try
        holder.decrypt_aggregate(honest)


def test_lying_coordinator_masking_out_a_site_is_caught(ceremony, round_id):
    """Multiplying site-1's ciphertext by a 0/1 plaintext mask leaves the fresh form."""
    holder, public, sha = ceremony
    rng = np.random.default_rng(5)
    updates = [rng.normal(size=100) for _ in range(2)]
    _, _, sent, honest = _run(ceremony, updates, [1.0, 1.0], round_id)
    be = default_backend()
    ctx = be.load_context(public)
    a, b = (be.ciphertext_from_bytes(ctx, u.chunks[0]) for u in sent)
    mask = np.concatenate([np.zeros(100), np.ones(4)])  # keep b's tokens, drop its update
    forged_ct = be.add(be.multiply_plain(a, np.ones(104)), be.multiply_plain(b, mask))
    forged = EncryptedAggregate(
        **{**honest.__dict__, "chunks": (be.ciphertext_to_bytes(forged_ct),)}
    )
    with pytest.raises(CiphertextError):
        holder.decrypt_aggregate(forged)


def test_proof_of_another_round_is_refused(ceremony, round_id):
    holder, public, sha = ceremony
    rng = np.random.default_rng(6)
    _, _, sent, honest = _run(ceremony, [rng.normal(size=10)] * 2, [1.0, 1.0], round_id)
    old = SiteEncryptor(public, holder.record, site_id="site-1").encrypt(
        np.ones(10), round_id="some-old-round"
    )
    forged = EncryptedAggregate(**{**honest.__dict__, "proofs": (honest.proofs[0], old.proof)})
    with pytest.raises(AggregationError, match="another round"):
        holder.decrypt_aggregate(forged)


def test_with_a_roster_fabricated_sites_are_refused(roster_ceremony, site_keys, round_id):
    holder, public, sha = roster_ceremony
    coordinator = CoordinatorAggregator(public, sha, length=30, round_id=round_id)
    real = SiteEncryptor(public, holder.record, site_id="site-1", signer=site_keys["site-1"])
    coordinator.add(real.encrypt(np.full(30, 0.2), 5.0, round_id=round_id))
    ghost = SiteEncryptor(public, holder.record, site_id="ghost")  # made up by the coordinator
    coordinator.add(ghost.encrypt(np.zeros(30), 1e-9, round_id=round_id))
    with pytest.raises(AggregationError, match="roster"):
        holder.decrypt_aggregate(coordinator.result())


def test_with_a_roster_unsigned_or_missigned_proofs_are_refused(
    roster_ceremony, site_keys, round_id
):
    holder, public, sha = roster_ceremony
    coordinator = CoordinatorAggregator(public, sha, length=30, round_id=round_id)
    good = SiteEncryptor(public, holder.record, site_id="site-1", signer=site_keys["site-1"])
    coordinator.add(good.encrypt(np.full(30, 0.2), 5.0, round_id=round_id))
    impostor = SiteEncryptor(public, holder.record, site_id="site-2", signer=site_keys["site-3"])
    coordinator.add(impostor.encrypt(np.zeros(30), 1.0, round_id=round_id))
    with pytest.raises(CiphertextError, match="contribution proof rejected"):
        holder.decrypt_aggregate(coordinator.result())


def test_with_a_roster_signed_sites_aggregate(roster_ceremony, site_keys, round_id):
    holder, public, sha = roster_ceremony
    coordinator = CoordinatorAggregator(public, sha, length=30, round_id=round_id)
    for i, value in ((1, 0.2), (2, 0.6)):
        sid = f"site-{i}"
        site = SiteEncryptor(public, holder.record, site_id=sid, signer=site_keys[sid])
        coordinator.add(site.encrypt(np.full(30, value), 1.0, round_id=round_id))
    mean = holder.decrypt_aggregate(coordinator.result().to_payload())
    np.testing.assert_allclose(mean, 0.4, atol=holder.error_bound(2, 2.0))


def test_coordinator_rejects_duplicates_wrong_length_round_and_context(ceremony, round_id):
    holder, public, sha = ceremony
    coordinator = CoordinatorAggregator(public, sha, length=100, round_id=round_id)
    site = SiteEncryptor(public, holder.record, site_id="s1")
    coordinator.add(site.encrypt(np.ones(100), 2.0, round_id=round_id))
    with pytest.raises(AggregationError, match="already contributed"):
        coordinator.add(site.encrypt(np.ones(100), 2.0, round_id=round_id))
    other = SiteEncryptor(public, holder.record, site_id="s2")
    with pytest.raises(AggregationError, match="length 99"):
        coordinator.add(other.encrypt(np.ones(99), 1.0, round_id=round_id))
    with pytest.raises(AggregationError, match="for round"):
        coordinator.add(other.encrypt(np.ones(100), 1.0, round_id="elsewhere"))
    forged = EncryptedUpdate(
        **{**other.encrypt(np.ones(100), round_id=round_id).__dict__, "context_sha256": "0" * 64}
    )
    with pytest.raises(AggregationError, match="another context"):
        coordinator.add(forged)
    assert coordinator.site_ids_ == ["s1"] and coordinator.total_weight_ == 2.0


def test_corrupted_ciphertext_is_rejected_opaquely_and_leaves_the_sum_unchanged(
    ceremony, round_id
):
    holder, public, sha = ceremony
    coordinator = CoordinatorAggregator(public, sha, length=D_LONG, round_id=round_id)

    def site(name):
        return SiteEncryptor(public, holder.record, site_id=name)

    coordinator.add(site("s1").encrypt(np.full(D_LONG, 0.25), 1.0, round_id=round_id))
    bad = site("s2").encrypt(np.full(D_LONG, 0.5), 1.0, round_id=round_id)
    chunks = list(bad.chunks)
    chunks[2] = chunks[2][:100]
    with pytest.raises(CiphertextError) as info:
        coordinator.add(EncryptedUpdate(**{**bad.__dict__, "chunks": tuple(chunks)}))
    assert str(info.value) == "ciphertext rejected"
    coordinator.add(site("s3").encrypt(np.full(D_LONG, 0.75), 1.0, round_id=round_id))
    mean = holder.decrypt_aggregate(coordinator.result())
    np.testing.assert_allclose(mean, 0.5, atol=holder.error_bound(2, 2.0))


def test_site_validation_names_field_value_and_fix(ceremony):
    holder, public, _ = ceremony
    site = SiteEncryptor(public, holder.record, site_id="s1")
    with pytest.raises(HeParameterError, match="NaN"):
        site.encrypt(np.array([1.0, np.nan]), 1.0, round_id="r")
    with pytest.raises(HeParameterError, match="weight=0"):
        site.encrypt(np.ones(3), 0, round_id="r")
    with pytest.raises(HeParameterError, match="1-D"):
        site.encrypt(np.ones((2, 2)), 1.0, round_id="r")
    with pytest.raises(HeParameterError, match="same public constant"):
        site.encrypt(np.ones(3), MAX_ABS_WEIGHTED * 2, round_id="r")
    with pytest.raises(HeParameterError, match="round_id"):
        site.encrypt(np.ones(3), 1.0, round_id="")


def test_payload_roundtrip_and_kind_check(ceremony):
    holder, public, _ = ceremony
    enc = SiteEncryptor(public, holder.record, site_id="s1").encrypt(np.ones(5), 3.0, round_id="r")
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
        CoordinatorAggregator(public, sha, length=10, round_id="r").result()


def test_aggregate_encrypted_in_process(roster_ceremony, site_keys, round_id):
    from privehr.secure.he import aggregate_encrypted

    holder, public, _ = roster_ceremony
    rng = np.random.default_rng(8)
    updates = {sid: (rng.normal(size=5000), float(i + 1)) for i, sid in enumerate(site_keys)}
    mean, stats = aggregate_encrypted(
        updates, holder, public, round_id=round_id, signers=site_keys
    )
    expected = np.average(
        np.stack([u for u, _ in updates.values()]), axis=0, weights=[w for _, w in updates.values()]
    )
    assert np.max(np.abs(mean - expected)) <= holder.error_bound(4, 10.0)
    assert stats.n_sites == 4 and stats.length == 5000
    assert stats.aggregate_bytes == pytest.approx(stats.max_update_bytes, rel=0.01)
    assert stats.aggregate_bytes > 10 * 5000 * 4  # CKKS costs >10x float32
