"""Contract every CKKS backend must meet; parametrised over the backends privehr ships."""

from __future__ import annotations

import numpy as np
import pytest

from privehr.secure.he.backend import CkksBackend, CkksParams
from privehr.secure.he.errors import CiphertextError, DecryptionUnavailableError
from privehr.secure.he.tenseal_backend import TenSealBackend

BACKENDS = [TenSealBackend()]


@pytest.fixture(scope="module", params=BACKENDS, ids=lambda b: b.name)
def keyed(request):
    be = request.param
    ctx = be.create_context(CkksParams())
    public = be.load_context(be.serialize_context(ctx, secret_key=False))
    return be, ctx, public


def test_is_a_ckks_backend(keyed):
    be, ctx, public = keyed
    assert isinstance(be, CkksBackend)
    assert be.has_secret_key(ctx) and not be.has_secret_key(public)
    assert be.slot_count(public) == 4096 and be.multiplicative_levels(public) == 1
    assert be.scale(public) == 2.0**40 and be.coeff_modulus_bits(public) == 160
    assert not be.has_relin_keys(public)


def test_roundtrip_add_and_plain_ops(keyed):
    be, ctx, public = keyed
    rng = np.random.default_rng(0)
    x, y, p = rng.normal(size=(3, 100))
    cx = be.ciphertext_from_bytes(public, be.ciphertext_to_bytes(be.encrypt(public, x)))
    cy = be.encrypt(public, y)
    assert be.size(cx) == 100
    assert be.ciphertext_form(public, cx) == (2, 1, 2.0**40)
    s = be.add(cx, cy)
    assert be.ciphertext_form(public, s) == (2, 1, 2.0**40)  # additions keep the fresh form
    m = be.add_plain(be.multiply_plain(s, p), p)
    assert be.ciphertext_form(public, m)[1] == 0  # a plaintext product costs a level
    secret_view = be.ciphertext_from_bytes(ctx, be.ciphertext_to_bytes(m))
    np.testing.assert_allclose(be.decrypt(ctx, secret_view), (x + y) * p + p, atol=1e-5)
    scal = be.ciphertext_from_bytes(ctx, be.ciphertext_to_bytes(be.add_scalar(
        be.multiply_scalar(cx, 0.5), 2.0)))
    np.testing.assert_allclose(be.decrypt(ctx, scal), 0.5 * x + 2.0, atol=1e-5)


def test_public_context_cannot_decrypt_and_garbage_is_opaque(keyed):
    be, ctx, public = keyed
    ct = be.encrypt(public, np.ones(4))
    with pytest.raises(DecryptionUnavailableError):
        be.decrypt(public, ct)
    with pytest.raises(CiphertextError) as info:
        be.ciphertext_from_bytes(public, b"\x00" * 64)
    assert str(info.value) == "ciphertext rejected"
    with pytest.raises(CiphertextError):
        be.add(ct, be.encrypt(public, np.ones(5)))  # size mismatch
