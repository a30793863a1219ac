"""Keyed pseudonyms, date shifts, coarse geography and the site secret."""

from __future__ import annotations

import os

import duckdb
import pytest

from privehr.ehr.deid import (
    DATE_SHIFT_LABEL,
    PSEUDONYM_LABEL,
    Pseudonymizer,
    bundle_label,
    derive_key,
    state_sql,
    zip3_sql,
)
from privehr.ehr.store import secret_path, site_secret

SECRET = os.urandom(32)


def test_hkdf_labels_give_distinct_keys_and_match_rfc5869_recipe():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    k1, k2 = derive_key(SECRET, PSEUDONYM_LABEL), derive_key(SECRET, DATE_SHIFT_LABEL)
    assert len(k1) == len(k2) == 32 and k1 != k2
    ref = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PSEUDONYM_LABEL).derive(SECRET)
    assert k1 == ref
    with pytest.raises(ValueError, match="at least 16"):
        derive_key(b"short", PSEUDONYM_LABEL)


def test_pseudonym_is_hmac_of_source_and_raw_id():
    import hashlib
    import hmac

    pz = Pseudonymizer(SECRET)
    p = pz.pseudonym("site-a", "1234")
    key = derive_key(SECRET, PSEUDONYM_LABEL)
    msg = len(b"site-a").to_bytes(4, "big") + b"site-a" + b"1234"
    assert p == hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]
    assert pz.pseudonyms("site-a", ["1234", "5678"]) == [p, pz.pseudonym("site-a", "5678")]
    assert Pseudonymizer(SECRET).pseudonym("site-a", "1234") == p  # stable
    assert pz.pseudonym("site-b", "1234") != p  # namespaced by source
    assert pz.pseudonym("site-a1", "234") != p  # (source, id) boundary is unambiguous
    assert Pseudonymizer(os.urandom(32)).pseudonym("site-a", "1234") != p  # keyed


def test_date_shifts_are_keyed_bounded_and_spread():
    ids = [f"p{i}" for i in range(500)]
    assert set(Pseudonymizer(SECRET).date_shifts("s", ids)) == {0}
    pz = Pseudonymizer(SECRET, max_shift_days=7)
    shifts = pz.date_shifts("s", ids)
    assert min(shifts) == -7 and max(shifts) == 7 and len(set(shifts)) == 15
    assert shifts == Pseudonymizer(SECRET, max_shift_days=7).date_shifts("s", ids)
    assert shifts != Pseudonymizer(os.urandom(32), max_shift_days=7).date_shifts("s", ids)
    with pytest.raises(ValueError, match="negative"):
        Pseudonymizer(SECRET, max_shift_days=-1)


def test_bundle_label_hides_the_file_name():
    lab = bundle_label("Temika453_Wuckert783_b37f7960.json")
    assert lab.startswith("bundle-") and "Temika" not in lab and len(lab) == 19


@pytest.mark.parametrize(
    ("raw", "want"),
    [("02139", "021"), ("02139-1234", "021"), ("021391234", "021"), ("00000", None), ("", None),
     (None, None), ("1234", None), ("SW1A 1AA", None), (" 90210 ", "902")],
)  # fmt: skip
def test_zip3_rule(raw, want):
    assert duckdb.sql(f"SELECT {zip3_sql('z')} FROM (SELECT ?::VARCHAR AS z)", params=[raw]).fetchall() == [(want,)]


@pytest.mark.parametrize(
    ("raw", "want"),
    [("Massachusetts", "MA"), ("MA", "MA"), ("ma", "MA"), ("new york", "NY"), ("", None),
     ("Ontario", "Ontario")],
)  # fmt: skip
def test_state_is_two_letter_code(raw, want):
    assert duckdb.sql(f"SELECT {state_sql('s')} FROM (SELECT ?::VARCHAR AS s)", params=[raw]).fetchall() == [(want,)]


def test_site_secret_created_once_private_and_checked(tmp_path):
    store = tmp_path / "a.duckdb"
    s1 = site_secret(store)
    assert len(s1) == 32 and site_secret(store) == s1
    p = secret_path(store)
    assert p.name == "a.duckdb.secret" and (p.stat().st_mode & 0o777) == 0o600
    p.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        site_secret(store)
    p.chmod(0o600)
    p.write_bytes(b"x" * 5)
    with pytest.raises(ValueError, match="expected 32"):
        site_secret(store)
