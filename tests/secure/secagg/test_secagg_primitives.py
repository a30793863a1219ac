"""Building blocks: configuration rules, Shamir sharing, mask PRG, share channel, graph."""

from __future__ import annotations

import itertools
import secrets

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from privehr.secure.secagg import SecAggConfig, SecAggConfigError
from privehr.secure.secagg.graph import is_connected, neighbourhoods, share_points
from privehr.secure.secagg.keys import (
    CryptoCheckFailed,
    channel_key,
    open_share,
    pair_mask_seed,
    seal_share,
)
from privehr.secure.secagg.prg import MaskExpander, expand_mask
from privehr.secure.secagg.shamir import SHARE_BYTES, combine, decode_share, split


# -- configuration ------------------------------------------------------------------------------
def test_config_defaults_and_derived_values():
    cfg = SecAggConfig(n_sites=7, threshold=4, dim=10)
    assert cfg.complete and cfg.neighbourhood_size == 7 and cfg.bits == 32
    assert cfg.min_survivors == 4 and cfg.max_dropouts == 3
    assert SecAggConfig(n_sites=4, threshold=3, dim=1).min_survivors == 3
    sparse = SecAggConfig(n_sites=20, threshold=4, degree=6, dim=10)
    assert not sparse.complete and sparse.neighbourhood_size == 7
    assert cfg.digest() != cfg.for_round(1).digest()
    assert cfg.for_round(1).threshold == 4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_sites": 6, "threshold": 3, "dim": 4}, "threshold=3"),  # t <= n/2
        ({"n_sites": 6, "threshold": 7, "dim": 4}, "threshold=7"),
        ({"n_sites": 20, "threshold": 3, "degree": 6, "dim": 4}, "threshold=3"),  # <= 7/2
        ({"n_sites": 10, "threshold": 4, "degree": 5, "dim": 4}, "degree=5"),  # odd sparse
        ({"n_sites": 10, "threshold": 4, "degree": 10, "dim": 4}, "degree=10"),
        ({"n_sites": 2, "threshold": 2, "dim": 4}, "n_sites=2"),
        ({"n_sites": 5, "threshold": 3, "dim": 0}, "dim=0"),
        ({"n_sites": 5, "threshold": 3, "dim": 4, "bits": 65}, "bits=65"),
    ],
)
def test_config_refuses_unsafe_values_naming_field_rule_and_fix(kwargs, field):
    with pytest.raises(SecAggConfigError) as err:
        SecAggConfig(**kwargs)
    assert field in str(err.value) and "fix" in str(err.value)


def test_config_collects_all_problems():
    with pytest.raises(SecAggConfigError) as err:
        SecAggConfig(n_sites=5, threshold=3, dim=0, bits=1, round_id=-1)
    assert len(err.value.problems) == 3


def test_threshold_message_suggests_the_safe_minimum():
    with pytest.raises(SecAggConfigError, match="threshold=4 or more"):
        SecAggConfig(n_sites=6, threshold=3, dim=4)


# -- Shamir ---------------------------------------------------------------------------------------
def _reconstructs(shares, secret) -> bool:
    try:
        return combine(shares, 32) == secret
    except ValueError:  # out of the secret's range: also a detected failure
        return False


def test_any_t_shares_reconstruct_and_fewer_do_not():
    secret = secrets.token_bytes(32)
    shares = split(secret, 3, [1, 2, 3, 4, 5], secrets)
    assert all(len(s) == SHARE_BYTES for s in shares.values())
    for subset in itertools.combinations(shares.values(), 3):
        assert combine(subset, 32) == secret
    for subset in itertools.combinations(shares.values(), 2):
        assert not _reconstructs(subset, secret)


def test_shares_are_fresh_and_a_modified_share_changes_the_result():
    secret = secrets.token_bytes(32)
    a, b = split(secret, 2, [1, 2, 3], secrets), split(secret, 2, [1, 2, 3], secrets)
    assert a[1] != b[1]
    bad = bytearray(a[2])
    bad[-1] ^= 1
    assert _reconstructs([a[1], a[2]], secret)
    assert not _reconstructs([a[1], bytes(bad)], secret)


def test_malformed_shares_are_rejected():
    shares = split(b"\x07" * 32, 2, [1, 2], secrets)
    with pytest.raises(ValueError):
        decode_share(shares[1][:-1])
    with pytest.raises(ValueError):
        combine([shares[1], shares[1]], 32)
    with pytest.raises(ValueError):
        split(b"\x07" * 32, 3, [1, 2], secrets)


# -- PRG ------------------------------------------------------------------------------------------
def test_mask_expansion_is_deterministic_per_seed_and_distinct_across_seeds():
    s1, s2 = secrets.token_bytes(32), secrets.token_bytes(32)
    m1 = expand_mask(s1, 1000, "uint32")
    np.testing.assert_array_equal(m1, expand_mask(s1, 1000, "uint32"))
    assert np.count_nonzero(m1 == expand_mask(s2, 1000, "uint32")) < 5
    assert expand_mask(s1, 10, "uint64").dtype == np.uint64
    with pytest.raises(ValueError):
        expand_mask(b"short", 10)


# -- share channel --------------------------------------------------------------------------------
def test_share_channel_binds_round_and_direction():
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    cfg = b"\x01" * 32
    ka = channel_key(a, b.public_key().public_bytes_raw(), cfg, "A", "B")
    kb = channel_key(b, a.public_key().public_bytes_raw(), cfg, "A", "B")
    assert ka == kb
    blob = seal_share(ka, secrets, cfg, "A", "B", b"share")
    assert open_share(kb, cfg, "A", "B", blob) == b"share"
    for args in [(cfg, "B", "A"), (b"\x02" * 32, "A", "B"), (cfg, "A", "C")]:
        with pytest.raises(CryptoCheckFailed):
            open_share(kb, *args, blob)
    with pytest.raises(CryptoCheckFailed):
        open_share(kb, cfg, "A", "B", blob[:-1] + bytes([blob[-1] ^ 1]))


def test_pairwise_seed_is_symmetric_and_round_bound():
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    pa, pb = a.public_key().public_bytes_raw(), b.public_key().public_bytes_raw()
    assert pair_mask_seed(a, pb, b"r1", "A", "B") == pair_mask_seed(b, pa, b"r1", "B", "A")
    assert pair_mask_seed(a, pb, b"r1", "A", "B") != pair_mask_seed(a, pb, b"r2", "A", "B")


def test_low_order_public_key_is_rejected():
    with pytest.raises(CryptoCheckFailed):
        pair_mask_seed(X25519PrivateKey.generate(), bytes(32), b"r", "A", "B")


# -- graph ----------------------------------------------------------------------------------------
def test_harary_graph_regular_symmetric_and_seeded():
    ids = [f"s{i}" for i in range(11)]
    g = neighbourhoods(ids, 4, b"seed")
    assert all(len(v) == 4 and k not in v for k, v in g.items())
    assert all(k in g[p] for k, v in g.items() for p in v)
    assert g == neighbourhoods(ids, 4, b"seed")
    assert any(neighbourhoods(ids, 4, bytes([i])) != g for i in range(5))
    complete = neighbourhoods(ids, 10, b"seed")
    assert all(len(v) == 10 for v in complete.values())
    assert sorted(share_points(ids).values()) == list(range(1, 12))


def test_lagrange_cache_gives_the_same_secret():
    secret = secrets.token_bytes(32)
    shares = split(secret, 3, [2, 4, 7, 9], secrets)
    cache: dict = {}
    subset = [shares[2], shares[7], shares[9]]
    assert combine(subset, 32, cache) == secret
    assert len(cache) == 1
    other = split(secrets.token_bytes(32), 3, [2, 4, 7, 9], secrets)
    assert combine([other[2], other[7], other[9]], 32, cache) == combine(
        [other[2], other[7], other[9]], 32
    )
    assert len(cache) == 1


def test_connectivity_of_survivor_subgraphs():
    ids = [f"s{i}" for i in range(8)]
    g = neighbourhoods(ids, 2, b"ring")  # a ring
    assert is_connected(g, ids)
    first = sorted(ids)[0]
    cut = set(ids) - g[first]  # remove both ring neighbours of `first`: it is isolated
    assert not is_connected(g, cut)
    assert not is_connected(g, [])


def test_reusable_expander_matches_one_shot_expansion():
    seeds = [secrets.token_bytes(32) for _ in range(3)]
    for dtype in ("uint32", "uint64"):
        prg = MaskExpander(257, dtype)
        for seed in seeds:
            np.testing.assert_array_equal(prg.expand(seed), expand_mask(seed, 257, dtype))
    with pytest.raises(ValueError):
        MaskExpander(4, "int32")
