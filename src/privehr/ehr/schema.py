"""The normalised, de-identified local store: one DuckDB file per site.

This module is the contract between ingestion (which writes the store) and tasks/features
(which read it). Everything in these tables has already crossed the de-identification door:
patient and encounter ids are keyed pseudonyms (HMAC under a key derived from the site
secret), direct identifiers (names, SSN, licence, passport, member ids, address, coordinates,
phone, city/county/FIPS, ZIP beyond 3 digits) were never written. Dates are kept (shifted per
patient when configured), so the store is a HIPAA *limited data set*, not Safe Harbor.

Compatibility: columns are only ever added (nullable), never renamed or re-purposed, so an
older store stays readable. ``STORE_SCHEMA_VERSION`` is recorded in ``store_meta``.
"""

from __future__ import annotations

STORE_SCHEMA_VERSION = 1

# Clinical tables every later stage reads. ``source`` names the export a row came from
# (ids are unique only within one export, so pseudonyms are keyed by (source, raw id)).
TABLES: dict[str, str] = {
    "patients": """
        patient_id     VARCHAR PRIMARY KEY,  -- keyed pseudonym
        source         VARCHAR NOT NULL,     -- export/source label (not a patient attribute)
        birthdate      DATE NOT NULL,
        deathdate      DATE,
        sex            VARCHAR,              -- 'M' / 'F' / NULL
        race           VARCHAR,
        ethnicity      VARCHAR,
        state          VARCHAR,              -- coarsest geography kept
        zip3           VARCHAR,              -- first 3 ZIP digits; NULL for empty/00000/non-US
        primary_org_id VARCHAR               -- organization with most encounters (site assignment)
    """,
    "encounters": """
        encounter_id    VARCHAR NOT NULL,    -- keyed pseudonym
        patient_id      VARCHAR NOT NULL,
        start           TIMESTAMP NOT NULL,
        stop            TIMESTAMP,
        encounter_class VARCHAR,             -- ambulatory, emergency, inpatient, wellness, ...
        code            VARCHAR,
        description     VARCHAR,
        organization_id VARCHAR,             -- v2.5: from PROVIDER; later: ORGANIZATION
        provider_id     VARCHAR,             -- clinician; NULL in v2.5
        reason_code     VARCHAR
    """,
    "conditions": """
        patient_id   VARCHAR NOT NULL,
        encounter_id VARCHAR,
        start        DATE NOT NULL,
        stop         DATE,
        system       VARCHAR,                -- 'SNOMED-CT' when the export does not say
        code         VARCHAR NOT NULL,
        description  VARCHAR
    """,
    "observations": """
        patient_id   VARCHAR NOT NULL,
        encounter_id VARCHAR,
        date         TIMESTAMP NOT NULL,
        category     VARCHAR,
        code         VARCHAR NOT NULL,       -- LOINC
        description  VARCHAR,
        value_num    DOUBLE,                 -- numeric value when the row is numeric
        value_text   VARCHAR,                -- otherwise the text value
        units        VARCHAR
    """,
    "medications": """
        patient_id   VARCHAR NOT NULL,
        encounter_id VARCHAR,
        start        TIMESTAMP NOT NULL,
        stop         TIMESTAMP,
        code         VARCHAR NOT NULL,       -- RxNorm
        description  VARCHAR
    """,
    "procedures": """
        patient_id   VARCHAR NOT NULL,
        encounter_id VARCHAR,
        start        TIMESTAMP NOT NULL,     -- v2.5 DATE column lands here
        stop         TIMESTAMP,
        system       VARCHAR,
        code         VARCHAR NOT NULL,
        description  VARCHAR
    """,
    "immunizations": """
        patient_id   VARCHAR NOT NULL,
        encounter_id VARCHAR,
        date         TIMESTAMP NOT NULL,
        code         VARCHAR NOT NULL,       -- CVX
        description  VARCHAR
    """,
    "organizations": """
        organization_id VARCHAR PRIMARY KEY, -- keyed pseudonym of the org id
        source          VARCHAR NOT NULL,
        name            VARCHAR,             -- facility name (not patient data)
        city            VARCHAR,             -- facility city, used to group orgs into sites
        state           VARCHAR
    """,
    # Bookkeeping. A rejected row is described, never copied: file/table, line, field, reason.
    "rejected": """
        source     VARCHAR NOT NULL,
        table_name VARCHAR NOT NULL,
        file       VARCHAR NOT NULL,         -- file name inside the export (FHIR: bundle hash)
        line       BIGINT,                   -- 1-based physical line (CSV) or entry index (FHIR)
        field      VARCHAR,
        reason     VARCHAR NOT NULL
    """,
    "ingest_counts": """
        source      VARCHAR NOT NULL,
        table_name  VARCHAR NOT NULL,
        rows_read   BIGINT NOT NULL,
        rows_stored BIGINT NOT NULL,
        rows_rejected BIGINT NOT NULL
    """,
    "store_meta": """
        key   VARCHAR PRIMARY KEY,
        value VARCHAR
    """,
}

CLINICAL_TABLES = (
    "patients",
    "encounters",
    "conditions",
    "observations",
    "medications",
    "procedures",
    "immunizations",
)
REQUIRED_SOURCE_TABLES = ("patients", "encounters", "conditions")


def create_all(con) -> None:  # con: duckdb.DuckDBPyConnection
    """Create every table if absent (idempotent, so re-ingest into an existing store works)."""
    for name, cols in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({cols})")
    con.execute(
        "INSERT OR REPLACE INTO store_meta VALUES ('schema_version', ?)",
        [str(STORE_SCHEMA_VERSION)],
    )
