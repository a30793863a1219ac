"""Shared fixtures for ingestion tests: bundled data locations and tiny hand-written exports."""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import pytest

DATA = Path(__file__).parents[2] / "data" / "synthea"
FHIR = DATA / "fhir-sample"
FHIR_CSV = FHIR / "csv"
MA113 = DATA / "ma-113-synthea-v2.5"


def bundled_exports() -> list[Path]:
    """Every bundled export: each pool dir, the v2.5 export, the FHIR sample and its CSV twin."""
    pool = sorted(p for p in (DATA / "pool").iterdir() if p.is_dir())
    return [*pool, MA113, FHIR, FHIR_CSV]


# A minimal 3.x-layout export (header names as Synthea writes them).
PATIENTS_H = (
    "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,PREFIX,FIRST,MIDDLE,LAST,SUFFIX,MAIDEN,MARITAL,"
    "RACE,ETHNICITY,GENDER,BIRTHPLACE,ADDRESS,CITY,STATE,COUNTY,FIPS,ZIP,LAT,LON,"
    "HEALTHCARE_EXPENSES,HEALTHCARE_COVERAGE,INCOME"
)
ENCOUNTERS_H = (
    "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,PAYER,ENCOUNTERCLASS,CODE,DESCRIPTION,"
    "BASE_ENCOUNTER_COST,TOTAL_CLAIM_COST,PAYER_COVERAGE,REASONCODE,REASONDESCRIPTION"
)
CONDITIONS_H = "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION"
OBSERVATIONS_H = "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE"


def patient_row(pid: str, birth: str = "1980-01-02", zip_: str = "02139", ssn: str = "999-11-2222",
                first: str = "Ada123", last: str = "Lovelace456", gender: str = "F") -> str:
    return (
        f"{pid},{birth},,{ssn},S999,X111X,Ms.,{first},,{last},,,M,white,nonhispanic,{gender},"
        f"Boston  Massachusetts  US,12 Main Street,Cambridge,Massachusetts,Middlesex County,"
        f"25017,{zip_},42.1,-71.1,100.0,200.0,50000"
    )


def encounter_row(eid: str, pid: str, start: str = "2020-01-01T10:00:00Z", org: str = "org1",
                  prov: str = "prov1", klass: str = "wellness") -> str:
    return (
        f"{eid},{start},{start},{pid},{org},{prov},pay1,{klass},162673000,"
        "General examination,100.0,100.0,0.0,,"
    )


def condition_row(pid: str, eid: str, start: str = "2020-01-01", code: str = "44054006") -> str:
    return f"{start},,{pid},{eid},http://snomed.info/sct,{code},Diabetes"


def write_table(d: Path, name: str, header: str, rows: list[str], *, gz: bool = False,
                crlf: bool = False) -> Path:
    nl = "\r\n" if crlf else "\n"
    text = nl.join([header, *rows]) + nl
    if gz:
        p = d / f"{name}.csv.gz"
        p.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        p = d / f"{name}.csv"
        p.write_bytes(text.encode("utf-8"))
    return p


@pytest.fixture
def tiny_export(tmp_path: Path):
    """Factory: a small valid 3.x export in tmp_path/<name>, tables overridable."""

    def make(name: str = "tiny", *, patients: list[str] | None = None,
             encounters: list[str] | None = None, conditions: list[str] | None = None,
             observations: list[str] | None = None, crlf: bool = False) -> Path:
        d = tmp_path / name
        d.mkdir()
        write_table(d, "patients", PATIENTS_H,
                    patients if patients is not None else [patient_row("p1"), patient_row("p2", ssn="999-33-4444")],
                    crlf=crlf)
        write_table(d, "encounters", ENCOUNTERS_H,
                    encounters if encounters is not None else [encounter_row("e1", "p1"), encounter_row("e2", "p2")],
                    crlf=crlf)
        write_table(d, "conditions", CONDITIONS_H,
                    conditions if conditions is not None else [condition_row("p1", "e1")], crlf=crlf)
        if observations is not None:
            write_table(d, "observations", OBSERVATIONS_H, observations, crlf=crlf)
        return d

    return make


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="session")
def all_ingested(tmp_path_factory):
    """Every bundled export ingested into one store (with a date shift), logs captured.

    Returns (store path, {label: summary}, log text).
    """
    from privehr.ehr.store import ingest

    store = tmp_path_factory.mktemp("all") / "site.duckdb"
    handler = _Collect()
    root = logging.getLogger("privehr")
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        summaries = {}
        for src in bundled_exports():
            label = "fhir-sample-csv" if src == FHIR_CSV else src.name
            summaries[label] = ingest(src, store, site=label, date_shift_days=30)
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    assert os.path.exists(store)
    return store, summaries, "\n".join(handler.lines)
