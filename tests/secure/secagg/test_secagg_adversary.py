"""A coordinator that lies (or a network that tampers) is detected before any share leaks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from privehr.secure.secagg import SecAggAborted, SecAggCryptoError, run_round
from privehr.secure.secagg import constants as c
from privehr.secure.secagg.messages import advert_statement


def _flip(blob: bytes, pos: int = -1) -> bytes:
    b = bytearray(blob)
    b[pos] ^= 0x01
    return bytes(b)


def _step_until(rnd, stage, inputs=None, model_digests=None):
    """Drive an honest round until the coordinator's requests for ``stage``; return them."""
    for sid, vec in (inputs or rnd.random_inputs()).items():
        rnd.sites[sid].set_input(vec)
    requests = rnd.coordinator.begin()
    while rnd.coordinator.stage != stage:
        st = rnd.coordinator.stage
        replies = {}
        for sid, p in requests.items():
            kw = (
                {"model_digest": model_digests[sid]}
                if model_digests and st == c.STAGE_ADVERTISE
                else {}
            )
            replies[sid] = rnd.sites[sid].handle(st, p, **kw)
        requests = rnd.coordinator.advance(replies)
    return requests


def _answers(rnd, stage, requests):
    """Each site's answer to ``requests``, or the exception it raised."""
    out = {}
    for sid, p in requests.items():
        try:
            out[sid] = rnd.sites[sid].handle(stage, p)
        except SecAggAborted as exc:
            out[sid] = exc
    return out


# -- share ciphertexts ---------------------------------------------------------------------------
def test_tampered_share_ciphertext_is_rejected(make_round):
    rnd = make_round(5, 3, dim=16)
    requests = _step_until(rnd, c.STAGE_MASKED)
    victim = rnd.ids[2]
    sender = sorted(requests[victim][c.KEY_CIPHERTEXTS])[0]
    requests[victim][c.KEY_CIPHERTEXTS][sender] = _flip(requests[victim][c.KEY_CIPHERTEXTS][sender])
    answers = _answers(rnd, c.STAGE_MASKED, requests)
    assert isinstance(answers[victim], SecAggCryptoError)
    assert "cryptographic verification failed" in str(answers[victim])
    assert all(isinstance(a, dict) for s, a in answers.items() if s != victim)
    # the victim is finished for this round: it never reveals anything afterwards
    with pytest.raises(SecAggAborted):
        rnd.sites[victim].handle(c.STAGE_CONSISTENCY, {c.KEY_ROUND: 0})


def test_share_ciphertext_relabelled_or_redirected_is_rejected(make_round):
    rnd = make_round(5, 3, dim=16)
    requests = _step_until(rnd, c.STAGE_MASKED)
    a, b, victim = rnd.ids[0], rnd.ids[1], rnd.ids[4]
    cts = requests[victim][c.KEY_CIPHERTEXTS]
    cts[a], cts[b] = cts[b], cts[a]  # swap senders: associated data no longer matches
    assert isinstance(
        _answers(rnd, c.STAGE_MASKED, {victim: requests[victim]})[victim], SecAggCryptoError
    )

    rnd = make_round(5, 3, dim=16)
    requests = _step_until(rnd, c.STAGE_MASKED)
    r1, r2 = rnd.ids[3], rnd.ids[4]
    requests[r2][c.KEY_CIPHERTEXTS][a] = requests[r1][c.KEY_CIPHERTEXTS][a]  # meant for r1
    assert isinstance(_answers(rnd, c.STAGE_MASKED, {r2: requests[r2]})[r2], SecAggCryptoError)


def test_share_ciphertext_replayed_from_previous_round_is_rejected(make_round):
    provisioned = make_round.provision(5)
    old = make_round(5, 3, dim=16, round_id=1, provisioned=provisioned)
    old_requests = _step_until(old, c.STAGE_MASKED)
    new = make_round(5, 3, dim=16, round_id=2, provisioned=provisioned)
    requests = _step_until(new, c.STAGE_MASKED)
    victim, sender = new.ids[0], new.ids[1]
    requests[victim][c.KEY_CIPHERTEXTS][sender] = old_requests[victim][c.KEY_CIPHERTEXTS][sender]
    answers = _answers(new, c.STAGE_MASKED, {victim: requests[victim]})
    assert isinstance(answers[victim], SecAggCryptoError)


def test_withheld_ciphertext_aborts(make_round):
    rnd = make_round(5, 3, dim=16)
    requests = _step_until(rnd, c.STAGE_MASKED)
    victim = rnd.ids[0]
    del requests[victim][c.KEY_CIPHERTEXTS][rnd.ids[1]]
    answers = _answers(rnd, c.STAGE_MASKED, {victim: requests[victim]})
    assert isinstance(answers[victim], SecAggAborted)


# -- advertised keys, roster, model ---------------------------------------------------------------
def test_substituted_advertised_key_is_detected_by_every_site(make_round):
    rnd = make_round(5, 3, dim=16)
    requests = _step_until(rnd, c.STAGE_SHARE)
    target = rnd.ids[1]
    mitm = X25519PrivateKey.generate().public_key().public_bytes_raw()
    for sid, p in requests.items():
        if sid != target:
            p[c.KEY_ADVERTISED] = copy.deepcopy(p[c.KEY_ADVERTISED])
            p[c.KEY_ADVERTISED][target][c.KEY_C_PK] = mitm
    answers = _answers(rnd, c.STAGE_SHARE, requests)
    for sid, a in answers.items():
        assert isinstance(a, SecAggCryptoError if sid != target else dict), sid
    assert target in str(answers[rnd.ids[0]])


def test_own_key_substituted_is_detected(make_round):
    rnd = make_round(4, 3, dim=16)
    requests = _step_until(rnd, c.STAGE_SHARE)
    sid = rnd.ids[0]
    requests[sid][c.KEY_ADVERTISED][sid][c.KEY_S_PK] = (
        X25519PrivateKey.generate().public_key().public_bytes_raw()
    )
    assert isinstance(_answers(rnd, c.STAGE_SHARE, {sid: requests[sid]})[sid], SecAggCryptoError)


def test_unrostered_site_is_refused_even_with_a_valid_signature(make_round):
    rnd = make_round(4, 3, dim=16)
    requests = _step_until(rnd, c.STAGE_SHARE)
    evil = Ed25519PrivateKey.generate()
    advert = {
        c.KEY_C_PK: X25519PrivateKey.generate().public_key().public_bytes_raw(),
        c.KEY_S_PK: X25519PrivateKey.generate().public_key().public_bytes_raw(),
        c.KEY_COMMIT: bytes(32),
        c.KEY_MODEL_DIGEST: b"",
    }
    advert[c.KEY_SIGNATURE] = evil.sign(advert_statement(rnd.config.digest(), "sybil", advert))
    for p in requests.values():
        p[c.KEY_ADVERTISED] = dict(p[c.KEY_ADVERTISED], sybil=advert)
    answers = _answers(rnd, c.STAGE_SHARE, requests)
    assert all(isinstance(a, SecAggAborted) and "roster" in str(a) for a in answers.values())


def test_signature_of_another_rostered_site_does_not_transfer(make_round):
    rnd = make_round(4, 3, dim=16)
    requests = _step_until(rnd, c.STAGE_SHARE)
    a, b = rnd.ids[0], rnd.ids[1]
    for p in requests.values():
        adverts = copy.deepcopy(p[c.KEY_ADVERTISED])
        adverts[b] = dict(adverts[a])  # b "advertises" a's signed keys
        p[c.KEY_ADVERTISED] = adverts
    answers = _answers(rnd, c.STAGE_SHARE, requests)
    assert isinstance(answers[rnd.ids[2]], SecAggCryptoError)


def test_different_models_are_detected_before_any_share_is_sent(make_round):
    rnd = make_round(5, 3, dim=16)
    digests = {s: b"model-v1" for s in rnd.ids}
    digests[rnd.ids[3]] = b"model-v1-poisoned"
    requests = _step_until(rnd, c.STAGE_SHARE, model_digests=digests)
    answers = _answers(rnd, c.STAGE_SHARE, requests)
    assert all(isinstance(a, SecAggAborted) and "model digest" in str(a) for a in answers.values())


def test_same_model_digest_passes(make_round):
    rnd = make_round(4, 3, dim=16)
    inputs = rnd.random_inputs()
    result = run_round(
        rnd.coordinator, rnd.sites, inputs, model_digests={s: b"\x01" * 32 for s in rnd.ids}
    )
    np.testing.assert_array_equal(result.sum, rnd.expected(inputs, rnd.ids))


# -- survivor sets and unmask requests ------------------------------------------------------------
def test_different_survivor_sets_abort_without_revealing_shares(make_round):
    rnd = make_round(6, 4, dim=16)
    requests = _step_until(rnd, c.STAGE_CONSISTENCY)
    victim = rnd.ids[5]
    half_a, half_b = rnd.ids[:3], rnd.ids[3:]
    for sid in half_b:  # half the sites are told that `victim` dropped
        requests[sid][c.KEY_SURVIVORS] = [s for s in rnd.ids if s != victim]
    sigs = {
        s: a for s, a in _answers(rnd, c.STAGE_CONSISTENCY, requests).items() if isinstance(a, dict)
    }
    assert set(sigs) == set(rnd.ids) - {victim}  # victim refuses a set without itself
    # the coordinator forwards every signature to everyone: signatures over the other view fail
    unmask = {
        s: {
            c.KEY_STAGE: c.STAGE_UNMASK,
            c.KEY_ROUND: 0,
            c.KEY_SURVIVORS: rnd.ids if s in half_a else [x for x in rnd.ids if x != victim],
            c.KEY_DROPPED: [] if s in half_a else [victim],
            c.KEY_SIGNATURES: {x: a[c.KEY_SIGNATURE] for x, a in sigs.items()},
        }
        for s in sigs
    }
    answers = _answers(rnd, c.STAGE_UNMASK, unmask)
    assert all(isinstance(a, SecAggAborted) for a in answers.values()), answers


def test_only_consistent_signatures_still_need_t(make_round):
    rnd = make_round(6, 4, dim=16)
    requests = _step_until(rnd, c.STAGE_CONSISTENCY)
    victim = rnd.ids[5]
    for sid in rnd.ids[3:]:
        requests[sid][c.KEY_SURVIVORS] = [s for s in rnd.ids if s != victim]
    sigs = {
        s: a for s, a in _answers(rnd, c.STAGE_CONSISTENCY, requests).items() if isinstance(a, dict)
    }
    group = rnd.ids[:3]  # 3 < t = 4 consistent signatures
    unmask = {
        s: {
            c.KEY_STAGE: c.STAGE_UNMASK,
            c.KEY_ROUND: 0,
            c.KEY_SURVIVORS: rnd.ids,
            c.KEY_DROPPED: [],
            c.KEY_SIGNATURES: {x: sigs[x][c.KEY_SIGNATURE] for x in group},
        }
        for s in group
    }
    answers = _answers(rnd, c.STAGE_UNMASK, unmask)
    assert all(isinstance(a, SecAggAborted) and "fewer than t" in str(a) for a in answers.values())


def test_request_for_both_share_kinds_is_refused(make_round):
    rnd = make_round(5, 3, dim=16)
    requests = _step_until(rnd, c.STAGE_UNMASK)
    target = rnd.ids[2]
    for p in requests.values():
        p[c.KEY_DROPPED] = [target]  # target is also a survivor
    answers = _answers(rnd, c.STAGE_UNMASK, requests)
    assert all(
        isinstance(a, SecAggAborted) and "both share kinds" in str(a) for a in answers.values()
    )


def test_survivor_relabelled_as_dropped_is_refused(make_round):
    rnd = make_round(5, 3, dim=16)
    requests = _step_until(rnd, c.STAGE_UNMASK)
    target = rnd.ids[2]
    for p in requests.values():
        p[c.KEY_SURVIVORS] = [s for s in p[c.KEY_SURVIVORS] if s != target]
        p[c.KEY_DROPPED] = [target]  # ask for its pairwise key although its input is in the sum
    answers = _answers(rnd, c.STAGE_UNMASK, requests)
    assert all(isinstance(a, SecAggAborted) for a in answers.values())


def test_honest_unmask_reveals_one_kind_per_peer(make_round):
    rnd = make_round(5, 3, dim=16)
    inputs = rnd.random_inputs()
    seen = {}

    def hook(stage, responses):
        if stage == c.STAGE_UNMASK:
            seen.update(responses)
        return responses

    run_round(
        rnd.coordinator,
        rnd.sites,
        inputs,
        drop={c.STAGE_MASKED: {rnd.ids[1]}},
        tamper_responses=hook,
    )
    for reply in seen.values():
        assert set(reply[c.KEY_SK_SHARES]) == {rnd.ids[1]}
        assert rnd.ids[1] not in reply[c.KEY_B_SHARES]
        assert not set(reply[c.KEY_B_SHARES]) & set(reply[c.KEY_SK_SHARES])


# -- bad shares from a peer -----------------------------------------------------------------------
def _corrupt_one_b_share(target_owner, liar):
    def hook(stage, responses):
        if stage == c.STAGE_UNMASK and liar in responses:
            r = dict(responses[liar])
            b = dict(r[c.KEY_B_SHARES])
            b[target_owner] = _flip(b[target_owner], 10)
            r[c.KEY_B_SHARES] = b
            responses = dict(responses, **{liar: r})
        return responses

    return hook


def test_one_bad_share_with_redundancy_still_gives_the_exact_sum(make_round):
    rnd = make_round(5, 3, dim=32)  # 5 holders, t = 3: two spare shares
    inputs = rnd.random_inputs()
    result = run_round(
        rnd.coordinator,
        rnd.sites,
        inputs,
        tamper_responses=_corrupt_one_b_share(rnd.ids[0], rnd.ids[1]),
    )
    np.testing.assert_array_equal(result.sum, rnd.expected(inputs, rnd.ids))


def test_one_bad_share_without_redundancy_aborts_instead_of_a_wrong_sum(make_round):
    rnd = make_round(5, 3, dim=32)
    inputs = rnd.random_inputs()
    with pytest.raises(SecAggCryptoError):
        run_round(
            rnd.coordinator,
            rnd.sites,
            inputs,
            drop={c.STAGE_UNMASK: {rnd.ids[3], rnd.ids[4]}},
            tamper_responses=_corrupt_one_b_share(rnd.ids[0], rnd.ids[1]),
        )


def test_bad_pairwise_key_share_aborts(make_round):
    rnd = make_round(5, 3, dim=32)
    inputs = rnd.random_inputs()
    dropped, liar = rnd.ids[4], rnd.ids[0]

    def hook(stage, responses):
        if stage == c.STAGE_UNMASK:
            r = dict(responses[liar])
            r[c.KEY_SK_SHARES] = {dropped: _flip(r[c.KEY_SK_SHARES][dropped], 20)}
            responses = dict(responses, **{liar: r})
        return responses

    with pytest.raises(SecAggCryptoError):
        run_round(
            rnd.coordinator,
            rnd.sites,
            inputs,
            drop={c.STAGE_MASKED: {dropped}, c.STAGE_UNMASK: {rnd.ids[1]}},
            tamper_responses=hook,
        )


def test_isolating_a_site_by_declaring_its_neighbours_dropped_is_refused(make_round):
    # SecAgg+: if every neighbour of `victim` is called dropped, their pairwise keys get
    # revealed and `victim`'s masked input would open on its own. Sites refuse to sign that.
    rnd = make_round(10, 3, degree=4, dim=16)
    requests = _step_until(rnd, c.STAGE_CONSISTENCY)
    graph = rnd.coordinator.neighbours
    victim = rnd.ids[0]
    fake_u3 = sorted(set(rnd.ids) - graph[victim])
    for p in requests.values():
        p[c.KEY_SURVIVORS] = fake_u3
    answers = _answers(rnd, c.STAGE_CONSISTENCY, {s: requests[s] for s in fake_u3})
    assert all(isinstance(a, SecAggAborted) and "disconnected" in str(a) for a in answers.values())


def test_coordinator_with_roster_keys_drops_a_forged_advertisement(make_round):
    from privehr.secure.secagg import SecAggCoordinator

    rnd = make_round(5, 3, dim=16)
    coord = SecAggCoordinator(rnd.config, rnd.ids, roster_keys=rnd.roster)
    inputs = rnd.random_inputs()
    forger = rnd.ids[3]

    def hook(stage, responses):
        if stage == c.STAGE_ADVERTISE:
            r = dict(responses[forger])
            r[c.KEY_S_PK] = X25519PrivateKey.generate().public_key().public_bytes_raw()
            responses = dict(responses, **{forger: r})
        return responses

    result = run_round(coord, rnd.sites, inputs, tamper_responses=hook)
    assert forger not in result.included
    assert result.stats["malformed"] == {c.STAGE_ADVERTISE: [forger]}
    np.testing.assert_array_equal(result.sum, rnd.expected(inputs, set(rnd.ids) - {forger}))
