"""De-identification at the door: keyed pseudonyms, per-patient date shifts, coarse geography.

What this protects against: someone who obtains the store (or anything derived from it)
cannot read a patient's name, SSN, licence, passport, member id, address, coordinates,
phone, city/county/FIPS or ZIP beyond 3 digits, because those fields are never selected
from the raw export (the CSV and FHIR readers whitelist columns; nothing else is copied).
Patient, encounter, organization and clinician ids are replaced by keyed pseudonyms, so a
raw Synthea UUID cannot be looked up without the site secret.

What it does *not* protect: the store keeps (optionally shifted) dates, sex, race,
ethnicity, state and ZIP3, so it is a HIPAA *limited data set*, not Safe Harbor. Whoever
holds the site secret can recompute pseudonyms from raw ids (that is the point: re-ingest
stays stable) and undo date shifts. Ages above 89 are capped where age is computed
(features), not here.

Keys: two independent 32-byte keys are derived from the site secret with HKDF-SHA256 and
distinct labels, so learning the date shift of a patient tells nothing about the pseudonym
key and vice versa.

Pseudonym = hex(HMAC-SHA256(k_pseudonym, len(source) || source || raw_id))[:32] (128 bits).
The source label is part of the message because Synthea ids are unique only within one
export (runs with the same seed repeat them).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PSEUDONYM_LABEL = b"privehr/pseudonym/v1"
DATE_SHIFT_LABEL = b"privehr/date-shift/v1"
PSEUDONYM_HEX_CHARS = 32  # 128 bits: collisions are negligible for any realistic site

SECRET_BYTES = 32


def derive_key(secret: bytes, label: bytes) -> bytes:
    """HKDF-SHA256(secret, info=label) -> 32 bytes. Distinct labels give independent keys."""
    if len(secret) < 16:
        raise ValueError(
            f"site secret has {len(secret)} bytes; at least 16 are required. "
            "Fix: let site_secret() create it (32 random bytes)"
        )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


def _message(source: str, raw: str) -> bytes:
    src = source.encode("utf-8")
    # Length prefix keeps (source, raw) unambiguous whatever characters either contains.
    return len(src).to_bytes(4, "big") + src + raw.encode("utf-8")


class Pseudonymizer:
    """Keyed pseudonyms and per-patient date shifts for one site secret.

    Settings in the constructor, no other state: two instances built from the same secret
    give identical outputs, which is what makes re-ingest idempotent and lets a CSV and a
    FHIR export of the same run land on the same patient ids.
    """

    def __init__(self, secret: bytes, *, max_shift_days: int = 0) -> None:
        if max_shift_days < 0:
            raise ValueError(
                f"date_shift_days={max_shift_days} is negative; it is the largest shift in "
                "days (a patient is moved by a keyed amount in [-d, +d]). Fix: pass 0 or more"
            )
        self._pseudo = hmac.new(derive_key(secret, PSEUDONYM_LABEL), digestmod=hashlib.sha256)
        self._shift = hmac.new(derive_key(secret, DATE_SHIFT_LABEL), digestmod=hashlib.sha256)
        self.max_shift_days = max_shift_days

    def pseudonym(self, source: str, raw: str) -> str:
        h = self._pseudo.copy()
        h.update(_message(source, raw))
        return h.hexdigest()[:PSEUDONYM_HEX_CHARS]

    def pseudonyms(self, source: str, raws: Iterable[str]) -> list[str]:
        """Pseudonyms for many raw ids (called once per distinct id, not per row)."""
        base = self._pseudo
        prefix = _message(source, "")
        out = []
        for raw in raws:
            h = base.copy()
            h.update(prefix + raw.encode("utf-8"))
            out.append(h.hexdigest()[:PSEUDONYM_HEX_CHARS])
        return out

    def date_shifts(self, source: str, raw_patient_ids: Iterable[str]) -> list[int]:
        """Keyed shift in days, uniform on [-d, d] (d = max_shift_days); all 0 when d = 0."""
        d = self.max_shift_days
        if d == 0:
            return [0 for _ in raw_patient_ids]
        prefix = _message(source, "")
        out = []
        for raw in raw_patient_ids:
            h = self._shift.copy()
            h.update(prefix + raw.encode("utf-8"))
            # 64 bits modulo (2d+1): bias below 2^-40 for any d we accept.
            out.append(int.from_bytes(h.digest()[:8], "big") % (2 * d + 1) - d)
        return out


# Observations whose *value* identifies the patient (Synthea's PRAPARE survey writes the
# street address as LOINC 56799-0). The row is kept (the question was answered), the value
# is dropped. The description pattern catches variants we have not seen yet.
IDENTIFYING_OBSERVATION_CODES = ("56799-0", "45401-7", "54125-0")  # address, postal code, name
IDENTIFYING_OBSERVATION_PATTERN = r"(?i)\b(address|postal code|zip code|phone|telephone|e-?mail)\b"


def identifying_observation_sql(code: str, description: str) -> str:
    codes = ", ".join(f"'{c}'" for c in IDENTIFYING_OBSERVATION_CODES)
    return (
        f"({code} IN ({codes}) OR "
        f"coalesce(regexp_matches({description}, '{IDENTIFYING_OBSERVATION_PATTERN}'), false))"
    )


def bundle_label(file_name: str) -> str:
    """How a FHIR bundle is named anywhere we write: its file name carries patient names."""
    return "bundle-" + hashlib.sha256(file_name.encode("utf-8")).hexdigest()[:12]


# SQL expression (DuckDB) for ZIP3 from a raw ZIP column: only a US 5-digit ZIP (optionally
# ZIP+4) that is not 00000 keeps its first 3 digits; anything else becomes NULL.
def zip3_sql(col: str) -> str:
    return (
        f"CASE WHEN regexp_full_match(trim({col}), '[0-9]{{5}}(-?[0-9]{{4}})?') "
        f"AND left(trim({col}), 5) <> '00000' THEN left(trim({col}), 3) END"
    )


US_STATES: dict[str, str] = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL",
    "indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
    "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI",
    "minnesota": "MN", "mississippi": "MS", "missouri": "MO", "montana": "MT",
    "nebraska": "NE", "nevada": "NV", "new hampshire": "NH", "new jersey": "NJ",
    "new mexico": "NM", "new york": "NY", "north carolina": "NC", "north dakota": "ND",
    "ohio": "OH", "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA",
    "rhode island": "RI", "south carolina": "SC", "south dakota": "SD", "tennessee": "TN",
    "texas": "TX", "utah": "UT", "vermont": "VT", "virginia": "VA", "washington": "WA",
    "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY", "puerto rico": "PR",
    "guam": "GU", "american samoa": "AS", "u.s. virgin islands": "VI",
    "northern mariana islands": "MP",
}  # fmt: skip


def state_sql(col: str) -> str:
    """SQL: US state as its 2-letter code (CSV patients say 'Massachusetts', FHIR says 'MA')."""
    cases = " ".join(f"WHEN '{name}' THEN '{code}'" for name, code in US_STATES.items())
    return (
        f"CASE lower(trim({col})) {cases} "
        f"ELSE CASE WHEN regexp_full_match(trim({col}), '[A-Za-z]{{2}}') "
        f"THEN upper(trim({col})) ELSE nullif(trim({col}), '') END END"
    )
