from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from privehr.secure.he.contribution import (
    TOKEN_SLOTS,
    draw_tokens,
    open_tokens,
    seal_tokens,
)
from privehr.secure.he.errors import CiphertextError

BIND = {"round_id": "r7", "site_id": "site-1", "context_sha256": "ab" * 32}


def test_tokens_are_fresh_on_the_grid_and_in_range():
    draws = np.stack([draw_tokens() for _ in range(200)])
    assert draws.shape == (200, TOKEN_SLOTS)
    assert np.all(np.abs(draws) <= 2.0**10)
    assert np.array_equal(draws * 2**20, np.round(draws * 2**20))
    assert len(np.unique(draws)) > 790  # 800 draws from 2^31 values: collisions are rare


def test_seal_opens_only_for_the_key_holder_and_the_bound_context():
    key = X25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    tokens = draw_tokens()
    sealed = seal_tokens(tokens, pub, **BIND)
    np.testing.assert_array_equal(open_tokens(sealed, key, **BIND), tokens)
    for field, value in (("round_id", "r8"), ("site_id", "site-2"), ("context_sha256", "cd" * 32)):
        with pytest.raises(CiphertextError, match="contribution proof rejected"):
            open_tokens(sealed, key, **{**BIND, field: value})
    with pytest.raises(CiphertextError):
        open_tokens(sealed, X25519PrivateKey.generate(), **BIND)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(CiphertextError):
        open_tokens(tampered, key, **BIND)
    assert seal_tokens(tokens, pub, **BIND) != sealed  # ephemeral key and nonce are fresh
