"""Shared, expensive HE fixtures: one key ceremony per test session."""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.secure.he import KeyHolder

_rounds = itertools.count()


@pytest.fixture
def round_id() -> str:
    """A fresh round id: the session key holder decrypts each round at most once."""
    return f"round-{next(_rounds)}"


@pytest.fixture(scope="session")
def ceremony() -> tuple[KeyHolder, bytes, str]:
    """(key_holder, public_context_bytes, pinned_sha256) at the default N=8192 parameters,
    no roster (honest-but-curious coordinator)."""
    return KeyHolder.create(holder_id="site-a", min_sites=2)


@pytest.fixture(scope="session")
def site_keys() -> dict[str, Ed25519PrivateKey]:
    return {f"site-{i}": Ed25519PrivateKey.generate() for i in range(4)}


@pytest.fixture(scope="session")
def roster_ceremony(site_keys) -> tuple[KeyHolder, bytes, str]:
    """A key holder that checks a roster of site signing keys (lying coordinator)."""
    roster = {sid: key.public_key() for sid, key in site_keys.items()}
    roster["site-3"] = site_keys["site-3"].public_key().public_bytes_raw()  # raw form works too
    return KeyHolder.create(holder_id="site-0", min_sites=2, roster=roster)
