"""CSV ingestion: layouts by header, rejections with file/line/field, clear errors, re-ingest."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from conftest import (
    CONDITIONS_H,
    ENCOUNTERS_H,
    MA113,
    OBSERVATIONS_H,
    PATIENTS_H,
    condition_row,
    encounter_row,
    patient_row,
    write_table,
)
from privehr.ehr.errors import (
    EhrColumnError,
    EhrEncodingError,
    EhrInputError,
    EhrSourceError,
    EhrStrictError,
)
from privehr.ehr.ingest_csv import check_utf8
from privehr.ehr.store import describe, ingest, open_store

SECRET = bytes(range(32))


def q(store: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = open_store(store)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_valid_export_loads_and_reconciles(tiny_export, tmp_path):
    src = tiny_export()
    store = tmp_path / "s.duckdb"
    s = ingest(src, store, secret=SECRET)
    assert s.kind == "csv" and s.source == "tiny" and s.n_patients == 2
    assert s.tables["patients"].rows_stored == 2
    assert s.tables["encounters"].rows_stored == 2
    assert s.tables["conditions"].rows_stored == 1
    for c in s.tables.values():
        assert c.rows_read == c.rows_stored + c.rows_rejected
    (sex, state, zip3, org), = q(store, "SELECT sex, state, zip3, primary_org_id FROM patients LIMIT 1")
    assert (sex, state, zip3) == ("F", "MA", "021")
    assert org is not None and len(org) == 32
    (cls, start), = q(store, "SELECT encounter_class, CAST(start AS VARCHAR) FROM encounters LIMIT 1")
    assert cls == "wellness" and start == "2020-01-01 10:00:00"
    assert q(store, "SELECT system FROM conditions") == [("SNOMED-CT",)]
    json.dumps(s.to_dict())  # JSON-able
    assert describe(open_store(store))["n_patients"] == 2


def test_reingest_replaces_instead_of_duplicating(tiny_export, tmp_path):
    src = tiny_export()
    store = tmp_path / "s.duckdb"
    ingest(src, store, secret=SECRET)
    ingest(src, store, secret=SECRET)
    assert q(store, "SELECT count(*) FROM patients") == [(2,)]
    assert q(store, "SELECT count(*) FROM encounters") == [(2,)]
    assert q(store, "SELECT count(*) FROM ingest_counts WHERE table_name = 'patients'") == [(1,)]
    # a second label is kept apart and gets different pseudonyms (ids are per export)
    ingest(src, store, secret=SECRET, site="other")
    assert q(store, "SELECT count(DISTINCT patient_id) FROM patients") == [(4,)]


def test_v25_layout_provider_is_organization_and_procedures_date(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    write_table(d, "patients",
                "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,PREFIX,FIRST,LAST,SUFFIX,MAIDEN,MARITAL,"
                "RACE,ETHNICITY,GENDER,BIRTHPLACE,ADDRESS,CITY,STATE,COUNTY,ZIP,LAT,LON,"
                "HEALTHCARE_EXPENSES,HEALTHCARE_COVERAGE",
                ["p1,1970-05-05,,999-1,,,,Bo1,Ek2,,,,white,hispanic,M,X,1 Road,Town,Massachusetts,C,00000,1,2,3,4"])
    write_table(d, "encounters",
                "Id,START,STOP,PATIENT,PROVIDER,PAYER,ENCOUNTERCLASS,CODE,DESCRIPTION,"
                "BASE_ENCOUNTER_COST,TOTAL_CLAIM_COST,PAYER_COVERAGE,REASONCODE,REASONDESCRIPTION",
                ["e1,2001-01-01T00:00:00Z,2001-01-01T01:00:00Z,p1,orgA,pay,ambulatory,1,x,1,1,1,,",
                 "e2,2002-01-01T00:00:00Z,2002-01-01T01:00:00Z,p1,orgA,pay,ambulatory,1,x,1,1,1,,"])
    write_table(d, "conditions", "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION",
                ["2001-01-01,,p1,e1,123,thing"], gz=True)
    write_table(d, "procedures", "DATE,PATIENT,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,REASONCODE,REASONDESCRIPTION",
                ["2001-01-01,p1,e1,777,proc,1,,"])
    write_table(d, "observations", "DATE,PATIENT,ENCOUNTER,CODE,DESCRIPTION,VALUE,UNITS,TYPE",
                ["2001-01-01,p1,e1,8302-2,Height,50.5,cm,numeric", "2001-01-01,p1,,72166-2,Smoking,Never smoker,,text"])
    write_table(d, "organizations", "Id,NAME,ADDRESS,CITY,STATE,ZIP,LAT,LON,PHONE,REVENUE,UTILIZATION",
                ["orgA,Clinic A,5 Road,Springfield,MA,01101,1,2,555,0,1"])
    store = tmp_path / "s.duckdb"
    s = ingest(d, store, secret=SECRET)
    assert "v2.5" in s.format_version
    (org, prov), = set(q(store, "SELECT organization_id, provider_id FROM encounters"))
    assert prov is None
    assert q(store, "SELECT primary_org_id FROM patients") == [(org,)]
    assert q(store, "SELECT organization_id, name, city, state FROM organizations") == [(org, "Clinic A", "Springfield", "MA")]
    assert q(store, "SELECT CAST(start AS VARCHAR), stop, code FROM procedures") == [("2001-01-01 00:00:00", None, "777")]
    assert q(store, "SELECT zip3, state FROM patients") == [(None, "MA")]  # 00000 -> NULL
    rows = sorted(q(store, "SELECT code, category, value_num, value_text, encounter_id IS NULL FROM observations"))
    assert rows == [("72166-2", None, None, "Never smoker", True), ("8302-2", None, 50.5, None, False)]
    assert any("no ORGANIZATION column" in n for n in s.notes)


def test_crlf_gzip_and_unknown_columns_and_tables_are_noted(tiny_export, tmp_path):
    src = tiny_export(crlf=True)
    # re-write encounters gzipped with an extra unknown column, add an unknown table
    (src / "encounters.csv").unlink()
    write_table(src, "encounters", ENCOUNTERS_H + ",NEW_COLUMN",
                [encounter_row("e1", "p1") + ",z", encounter_row("e2", "p2") + ",z"], gz=True, crlf=True)
    write_table(src, "brand_new_table", "A,B", ["1,2"])
    s = ingest(src, tmp_path / "s.duckdb", secret=SECRET)
    assert s.tables["encounters"].rows_stored == 2
    assert any("NEW_COLUMN" in n and n.startswith("encounters") for n in s.notes)
    assert any("brand_new_table" in n for n in s.notes)


def test_rejections_name_file_line_field_and_reconcile(tiny_export, tmp_path):
    src = tiny_export(
        patients=[patient_row("p1"), patient_row("p2", birth="1980-13-45"), patient_row("p1", ssn="999-55-6666")],
        encounters=[encounter_row("e1", "p1"), encounter_row("e2", "p2"), encounter_row("e3", "ghost"),
                    "e4,2020-01-01T00:00:00Z,p1",  # too few columns (line 5)
                    encounter_row("e5", "p1", start="yesterday")],
        conditions=[condition_row("p1", "e1"), condition_row("p1", "e999"), condition_row("p1", "e1", code="")],
        observations=["2020-01-01T10:00:00Z,p1,e1,vital-signs,8302-2,Height,tall,cm,numeric",
                      "2020-01-01T10:00:00Z,p1,e1,vital-signs,8302-2,Height,170.2,cm,numeric"],
    )
    store = tmp_path / "s.duckdb"
    s = ingest(src, store, secret=SECRET)
    for c in s.tables.values():
        assert c.rows_read == c.rows_stored + c.rows_rejected
    assert s.tables["patients"].rows_rejected == 2
    assert s.tables["encounters"].rows_rejected == 4
    got = set(q(store, "SELECT table_name, file, line, field, reason FROM rejected"))
    assert got == {
        ("patients", "patients.csv", 3, "BIRTHDATE", "bad date"),
        ("patients", "patients.csv", 4, "Id", "duplicate id"),
        ("encounters", "encounters.csv", 3, "PATIENT", "dangling patient reference"),  # p2 rejected
        ("encounters", "encounters.csv", 4, "PATIENT", "dangling patient reference"),
        ("encounters", "encounters.csv", 5, None, "too few columns"),
        ("encounters", "encounters.csv", 6, "START", "bad timestamp"),  # line kept after a skipped line
        ("conditions", "conditions.csv", 3, "ENCOUNTER", "dangling encounter reference"),
        ("conditions", "conditions.csv", 4, "CODE", "missing required value"),
        ("observations", "observations.csv", 2, "VALUE", "non-numeric value where TYPE is numeric"),
    }
    stored = dict(q(store, "SELECT table_name, rows_stored FROM ingest_counts"))
    for t in ("patients", "encounters", "conditions", "observations"):
        assert stored[t] == q(store, f"SELECT count(*) FROM {t}")[0][0]
    # the rejected table describes rows, it never copies them
    dump = " ".join(str(r) for r in q(store, "SELECT * FROM rejected"))
    assert "999-55-6666" not in dump and "yesterday" not in dump and "ghost" not in dump


def test_strict_mode_refuses_and_leaves_store_unchanged(tiny_export, tmp_path):
    store = tmp_path / "s.duckdb"
    ingest(tiny_export("good"), store, secret=SECRET, site="x")
    before = q(store, "SELECT patient_id FROM patients ORDER BY 1")
    bad = tiny_export("bad", patients=[patient_row("p1"), patient_row("p2"), patient_row("p2")])
    with pytest.raises(EhrStrictError) as ei:
        ingest(bad, store, secret=SECRET, site="x", strict=True)
    msg = str(ei.value)
    assert "duplicate id" in msg and "patients.csv" in msg and "line 4" in msg
    assert q(store, "SELECT patient_id FROM patients ORDER BY 1") == before
    assert q(store, "SELECT count(*) FROM rejected") == [(0,)]
    # without strict the same export loads, with the duplicate recorded
    s = ingest(bad, store, secret=SECRET, site="x")
    assert s.tables["patients"].rows_rejected == 1


def test_empty_directory_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EhrSourceError, match="empty"):
        ingest(tmp_path / "empty", tmp_path / "s.duckdb", secret=SECRET)


def test_missing_required_table_names_it(tiny_export, tmp_path):
    src = tiny_export()
    (src / "conditions.csv").unlink()
    with pytest.raises(EhrSourceError, match=r"conditions\.csv") as ei:
        ingest(src, tmp_path / "s.duckdb", secret=SECRET)
    assert "Fix:" in str(ei.value)


def test_missing_required_column_names_file_and_column(tiny_export, tmp_path):
    src = tiny_export()
    write_table(src, "encounters", ENCOUNTERS_H.replace("START,", "BEGIN,"), [encounter_row("e1", "p1")])
    with pytest.raises(EhrColumnError) as ei:
        ingest(src, tmp_path / "s.duckdb", secret=SECRET)
    assert ei.value.file == "encounters.csv" and ei.value.field == "START"
    assert "encounters.csv" in str(ei.value) and "START" in str(ei.value)


def test_non_utf8_file_is_a_clear_error(tiny_export, tmp_path):
    src = tiny_export()
    raw = (PATIENTS_H + "\n" + patient_row("p1") + "\n" + patient_row("p2", first="Jos\xe9")).encode("latin-1")
    (src / "patients.csv").write_bytes(raw + b"\n")
    with pytest.raises(EhrEncodingError) as ei:
        ingest(src, tmp_path / "s.duckdb", secret=SECRET)
    assert ei.value.file == "patients.csv" and ei.value.line == 3
    assert "UTF-8" in str(ei.value) and "Jos" not in str(ei.value)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 1 << 22])
def test_utf8_check_names_the_line_whatever_the_read_size(tmp_path, chunk):
    """ASCII blocks are skipped and lines counted only on error: a character split by a read,
    a bad byte and a file ending inside a character must still be found on the right line."""
    p = tmp_path / "t.csv"
    good = ("a,b\nJos\u00e9,Zo\u00eb\nx,y\n" * 5).encode()  # 15 lines
    p.write_bytes(good)
    check_utf8(p, chunk)
    for tail, line in ((b"Jos\xe9,x\nok\n", 16), ("\u00e9".encode()[:1], 16), (b"ab\n\xff", 17)):
        p.write_bytes(good + tail)
        with pytest.raises(EhrEncodingError) as ei:
            check_utf8(p, chunk)
        assert ei.value.line == line


def test_truncated_gzip_is_a_clear_error(tiny_export, tmp_path):
    src = tiny_export()
    rows = [encounter_row(f"e{i}", "p1", start=f"2020-01-01T10:{i % 60:02d}:00Z") for i in range(3000)]
    blob = gzip.compress(("\n".join([ENCOUNTERS_H, *rows]) + "\n").encode())
    (src / "encounters.csv").unlink()
    (src / "encounters.csv.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(EhrEncodingError) as ei:
        ingest(src, tmp_path / "s.duckdb", secret=SECRET)
    assert ei.value.file == "encounters.csv.gz" and "gzip" in str(ei.value)


def test_header_only_tables(tiny_export, tmp_path):
    src = tiny_export(conditions=[])
    s = ingest(src, tmp_path / "s.duckdb", secret=SECRET)
    assert s.tables["conditions"].rows_read == 0
    assert "conditions: header only (0 rows)" in s.notes
    src2 = tiny_export("nopat", patients=[])
    with pytest.raises(EhrSourceError, match="header but no rows"):
        ingest(src2, tmp_path / "s2.duckdb", secret=SECRET)
    (src2 / "patients.csv").write_bytes(b"")
    with pytest.raises(EhrColumnError, match="no header"):
        ingest(src2, tmp_path / "s2.duckdb", secret=SECRET)


def test_duplicate_patient_ids_are_rejected_not_merged(tiny_export, tmp_path):
    src = tiny_export(patients=[patient_row("p1"), patient_row("p1", birth="1990-01-01")])
    store = tmp_path / "s.duckdb"
    s = ingest(src, store, secret=SECRET)
    assert s.tables["patients"].rows_rejected == 1 and s.n_patients == 1
    assert q(store, "SELECT CAST(birthdate AS VARCHAR) FROM patients") == [("1980-01-02",)]
    assert q(store, "SELECT line, reason FROM rejected WHERE table_name = 'patients'") == [(3, "duplicate id")]


def test_date_shift_is_per_patient_and_keeps_intervals(tiny_export, tmp_path):
    rows = [patient_row(f"p{i}") for i in range(40)]
    encs = [encounter_row(f"e{i}", f"p{i}", start="2020-06-15T12:00:00Z") for i in range(40)]
    src = tiny_export(patients=rows, encounters=encs, conditions=[condition_row("p0", "e0", start="2020-06-15")])
    plain, shifted = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    ingest(src, plain, secret=SECRET)
    ingest(src, shifted, secret=SECRET, date_shift_days=10)
    gaps = q(shifted, """SELECT date_diff('day', p.birthdate, CAST(e.start AS DATE)),
                         date_diff('day', DATE '1980-01-02', p.birthdate)
                         FROM patients p JOIN encounters e USING (patient_id)""")
    unshifted_gap = q(plain, """SELECT date_diff('day', p.birthdate, CAST(e.start AS DATE))
                               FROM patients p JOIN encounters e USING (patient_id) LIMIT 1""")[0][0]
    assert all(g == unshifted_gap for g, _ in gaps)  # intervals within a patient preserved
    shifts = [s for _, s in gaps]
    assert all(-10 <= s <= 10 for s in shifts) and len(set(shifts)) > 5
    # same ids either way: the shift key is independent of the pseudonym key
    assert q(plain, "SELECT patient_id FROM patients ORDER BY 1") == q(shifted, "SELECT patient_id FROM patients ORDER BY 1")
    (cond_gap,) = q(shifted, """SELECT date_diff('day', CAST(e.start AS DATE), c.start)
                                FROM conditions c JOIN encounters e USING (encounter_id)""")
    assert cond_gap == (0,)


def test_progress_callback_sees_every_table(tiny_export, tmp_path):
    calls = []
    ingest(tiny_export(), tmp_path / "s.duckdb", secret=SECRET, progress=lambda t, d, n: calls.append((t, d, n)))
    assert {c[0] for c in calls} == {"patients", "encounters", "conditions"}
    assert calls[-1][1] == calls[-1][2]


def test_default_secret_file_is_created_private(tiny_export, tmp_path):
    store = tmp_path / "s.duckdb"
    ingest(tiny_export(), store)
    sec = tmp_path / "s.duckdb.secret"
    assert sec.exists() and os.stat(sec).st_mode & 0o777 == 0o600 and len(sec.read_bytes()) == 32


def test_errors_are_input_errors_with_fix():
    e = EhrColumnError("x.csv", 1, "Id", "required column Id is missing", "add it")
    assert isinstance(e, EhrInputError)
    assert str(e) == "x.csv, line 1, field Id: required column Id is missing. Fix: add it"


def test_real_v25_export_counts(tmp_path):
    s = ingest(MA113, tmp_path / "s.duckdb", secret=SECRET)
    # row counts from the export's PROVENANCE.md
    expect = {"patients": 113, "encounters": 5275, "conditions": 760, "observations": 25649,
              "medications": 3530, "procedures": 2949, "immunizations": 1630, "organizations": 183}
    assert {t: c.rows_read for t, c in s.tables.items()} == expect
    assert s.tables["observations"].rows_rejected == 0


def test_observations_without_category_and_header_variants(tiny_export, tmp_path):
    src = tiny_export(observations=[])
    write_table(src, "observations", OBSERVATIONS_H.replace("CATEGORY,", ""),
                ["2020-01-01T10:00:00Z,p1,e1,8302-2,Height,170.2,cm,numeric"])
    write_table(src, "conditions", CONDITIONS_H.replace("SYSTEM,", ""), ["2020-01-01,,p1,e1,44054006,Diabetes"])
    store = tmp_path / "s.duckdb"
    ingest(src, store, secret=SECRET)
    assert q(store, "SELECT category, value_num FROM observations") == [(None, 170.2)]
    assert q(store, "SELECT system, code FROM conditions") == [("SNOMED-CT", "44054006")]


def test_identifying_observation_values_are_dropped(tiny_export, tmp_path):
    # Synthea's PRAPARE survey stores the street address as an observation value.
    src = tiny_export(observations=[
        "2020-01-01T10:00:00Z,p1,e1,survey,56799-0,Address,12 Main Street,,text",
        "2020-01-01T10:00:00Z,p1,e1,survey,99999-9,Home phone number,555-123-4567,,text",
        "2020-01-01T10:00:00Z,p1,e1,survey,71802-3,Housing status,Patient is homeless,,text",
        "2020-01-01T10:00:00Z,p1,e1,survey,12345-6,ZIP code of residence,02139,,numeric",
    ])
    store = tmp_path / "s.duckdb"
    s = ingest(src, store, secret=SECRET)
    rows = sorted(q(store, "SELECT code, value_num, value_text FROM observations"))
    assert rows == [("12345-6", None, None), ("56799-0", None, None),
                    ("71802-3", None, "Patient is homeless"), ("99999-9", None, None)]
    assert any("3 identifying value(s) dropped" in n for n in s.notes)


def test_physical_line_mapping_skips_unsplittable_lines():
    import numpy as np

    from privehr.ehr.ingest_csv import _physical_lines

    # header = line 1; lines 3, 4 and 8 could not be split: parsed rows sit on the others
    got = _physical_lines(6, np.array([8, 3, 4]))
    assert got.tolist() == [2, 5, 6, 7, 9, 10]
    assert _physical_lines(3, np.array([], dtype=np.int64)).tolist() == [2, 3, 4]
