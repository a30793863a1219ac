from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from privehr.secure.he import CoordinatorAggregator, KeyHolder, SiteEncryptor
from privehr.secure.he.backend import CkksParams, default_backend
from privehr.secure.he.ceremony import (
    CeremonyRecord,
    check_security,
    load_context,
    run_ceremony,
    sha256_hex,
)
from privehr.secure.he.errors import (
    ContextMismatchError,
    DecryptionUnavailableError,
    HeError,
    HeParameterError,
)


def test_params_validation_collects_every_problem():
    with pytest.raises(HeParameterError) as info:
        CkksParams(poly_modulus_degree=1000, coeff_mod_bit_sizes=(60,), scale_bits=70)
    assert len(info.value.problems) == 3
    assert "poly_modulus_degree=1000" in str(info.value)


def test_params_refuse_insecure_modulus():
    with pytest.raises(HeParameterError, match="128-bit security"):
        CkksParams(poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 40, 40, 40, 60))


def test_params_roundtrip():
    p = CkksParams(poly_modulus_degree=16384, coeff_mod_bit_sizes=(60, 40, 40, 60))
    assert CkksParams.from_dict(p.to_dict()) == p
    assert p.slot_count == 8192 and p.multiplicative_levels == 2


def test_public_context_holds_no_secret_key(ceremony):
    _, public, sha = ceremony
    assert sha == sha256_hex(public)
    ctx = load_context(public, sha)
    assert not default_backend().has_secret_key(ctx)


def test_coordinator_cannot_decrypt(ceremony):
    holder, public, sha = ceremony
    site = SiteEncryptor(public, holder.record, site_id="s1")
    update = site.encrypt(np.arange(10.0), 1.0, round_id="r")
    coordinator_ctx = load_context(public, sha)
    be = default_backend()
    ct = be.ciphertext_from_bytes(coordinator_ctx, update.chunks[0])
    with pytest.raises(DecryptionUnavailableError):
        be.decrypt(coordinator_ctx, ct)
    # Not even through TenSEAL directly: the public context has no secret key at all.
    with pytest.raises(ValueError, match="secret"):
        ts.ckks_vector_from(ts.context_from(public), update.chunks[0]).decrypt()
    # The key holder can, which shows the ciphertext itself was fine.
    holder_ctx = holder._ctx
    decrypted = be.decrypt(holder_ctx, be.ciphertext_from_bytes(holder_ctx, update.chunks[0]))
    np.testing.assert_allclose(decrypted[:10], np.arange(10.0), atol=1e-6)


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def test_tenseal_alone_accepts_a_tampered_context_but_we_refuse_it(ceremony):
    holder, public, sha = ceremony
    accepted = None
    for offset in range(len(public) // 2, len(public) // 2 + 64):
        tampered = _flip(public, offset)
        try:
            ts.context_from(tampered)  # TenSEAL parses many corruptions without complaint
        except Exception:
            continue
        accepted = tampered
        break
    assert accepted is not None, "expected TenSEAL to accept some single-bit corruption"
    with pytest.raises(ContextMismatchError, match="pinned"):
        load_context(accepted, sha)
    with pytest.raises(ContextMismatchError):
        SiteEncryptor(accepted, holder.record, site_id="s1")
    with pytest.raises(ContextMismatchError):
        CoordinatorAggregator(accepted, sha, length=5, round_id="r")


def test_context_of_another_ceremony_is_refused(ceremony):
    holder, public, sha = ceremony
    _, other_public, other_sha = KeyHolder.create(holder_id="impostor")
    assert other_sha != sha
    with pytest.raises(ContextMismatchError):
        SiteEncryptor(other_public, holder.record, site_id="s1")
    with pytest.raises(ContextMismatchError):
        CoordinatorAggregator(other_public, sha, length=5, round_id="r")
    with pytest.raises(HeParameterError, match="64-hex"):
        load_context(public, "abc")


def test_context_carrying_a_secret_key_is_refused(ceremony):
    holder, _, _ = ceremony
    secret = default_backend().serialize_context(holder._ctx, secret_key=True)
    with pytest.raises(HeError, match="SECRET"):
        load_context(secret, sha256_hex(secret))


def test_key_holder_reload_checks_the_pin(ceremony):
    holder, public, sha = ceremony
    again = KeyHolder.from_secret_bytes(
        holder.to_secret_bytes(), holder.record, decrypted_rounds=["r1"]
    )
    assert again.public.sha256 == sha and again.decrypted_rounds_ == {"r1"}
    assert again.record.token_public_key == holder.record.token_public_key
    _, _, other_record = run_ceremony(CkksParams(), "other")
    with pytest.raises(ContextMismatchError):
        KeyHolder.from_secret_bytes(holder.to_secret_bytes(), other_record)


def test_ceremony_record_roundtrip_and_version(ceremony):
    holder, _, sha = ceremony
    data = holder.record.to_dict()
    assert CeremonyRecord.from_dict(data) == holder.record
    assert data["context_sha256"] == sha and data["holder_id"] == "site-a"
    assert len(bytes.fromhex(data["token_public_key"])) == 32
    assert CeremonyRecord.from_dict(data).sha256() == holder.record.sha256()
    with pytest.raises(HeParameterError, match="version"):
        CeremonyRecord.from_dict({**data, "version": 99})


class _WeakRingBackend:
    """Reports an insecure ring, as a crafted context would."""

    def __init__(self, n, bits):
        self.n, self.bits = n, bits

    def slot_count(self, ctx):
        return self.n // 2

    def coeff_modulus_bits(self, ctx):
        return self.bits


def test_contexts_below_128_bit_security_are_refused(ceremony):
    _, public, sha = ceremony
    be = default_backend()
    check_security(be, load_context(public, sha))  # ours passes
    assert be.coeff_modulus_bits(load_context(public, sha)) == 160
    with pytest.raises(HeParameterError, match="128-bit"):
        check_security(_WeakRingBackend(8192, 219), None)
    with pytest.raises(HeParameterError, match="N=2048"):
        check_security(_WeakRingBackend(2048, 54), None)


def test_key_holder_save_is_private_and_reloads(ceremony, tmp_path):
    import stat

    holder, _, sha = ceremony
    path = tmp_path / "keyholder.secret"
    holder.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = KeyHolder.load(path, holder.record, min_sites=3)
    assert again.public.sha256 == sha and again.min_sites == 3


def test_roster_entries_must_be_ed25519_keys():
    with pytest.raises(HeParameterError, match=r"roster\['s1'\]"):
        KeyHolder.create(roster={"s1": b"short"})
