"""FHIR R4 ingestion: same rows as the CSV export of the same run; malformed bundles; no names."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import FHIR, FHIR_CSV
from privehr.ehr.deid import bundle_label
from privehr.ehr.errors import EhrEncodingError, EhrFhirError
from privehr.ehr.store import ingest, open_store

SECRET = bytes(range(100, 132))
# Codes the CSV exporter writes as observations but FHIR carries elsewhere (Patient extensions).
CSV_ONLY_OBS = ("QALY", "DALY", "QOLS")


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory):
    """The FHIR sample and its CSV twin, ingested under the same label and secret."""
    d = tmp_path_factory.mktemp("both")
    fs, cs = d / "fhir.duckdb", d / "csv.duckdb"
    sf = ingest(FHIR, fs, site="run-2024-04-27", secret=SECRET)
    sc = ingest(FHIR_CSV, cs, site="run-2024-04-27", secret=SECRET)
    con = open_store(cs)
    con.execute(f"ATTACH '{fs}' AS f (READ_ONLY)")
    yield con, sf, sc
    con.close()


def _rows(con, sql: str) -> tuple[list, list]:
    pids = "(SELECT patient_id FROM f.patients)"
    a = sorted(con.execute(sql.format(db="f.", pids=pids)).fetchall(), key=repr)
    b = sorted(con.execute(sql.format(db="", pids=pids)).fetchall(), key=repr)
    return a, b


def test_fhir_patients_are_found_in_csv_twin_with_same_pseudonyms(both_ways):
    con, sf, _ = both_ways
    assert sf.n_patients == 6 and sf.kind == "fhir"
    a, b = _rows(con, "SELECT * EXCLUDE (source) FROM {db}patients WHERE patient_id IN {pids}")
    assert len(a) == 6 and a == b  # birth/death dates, sex, race, ethnicity, state, zip3, primary org


@pytest.mark.parametrize(
    ("table", "cols"),
    [
        ("conditions", "*"),
        ("procedures", "*"),
        ("immunizations", "*"),
        ("medications", "patient_id, encounter_id, start, code, description"),  # FHIR has no stop
        # FHIR ActCode AMB covers the CSV's wellness/ambulatory/outpatient/urgentcare.
        ("encounters", "encounter_id, patient_id, start, stop, code, description, organization_id, "
                       "provider_id, reason_code, CASE WHEN encounter_class IN ('wellness', "
                       "'outpatient', 'urgentcare') THEN 'ambulatory' ELSE encounter_class END"),
    ],
)  # fmt: skip
def test_same_rows_both_ways(both_ways, table, cols):
    con, _, _ = both_ways
    a, b = _rows(con, f"SELECT {cols} FROM {{db}}{table} WHERE patient_id IN {{pids}}")
    assert len(a) > 10 and a == b


def test_same_observations_both_ways(both_ways):
    con, _, _ = both_ways
    key = "patient_id, encounter_id, date, code, category, description"
    sql = (f"SELECT {key}, value_num, value_text, units FROM {{db}}observations "
           f"WHERE patient_id IN {{pids}} AND code NOT IN {CSV_ONLY_OBS}")  # fmt: skip
    a, b = _rows(con, sql)
    assert len(a) == len(b) > 1000
    assert [r[:6] for r in a] == [r[:6] for r in b]
    for fa, cb in zip(a, b, strict=True):
        if fa[6] is None:
            assert fa[7] == cb[7]  # same text value
        else:
            # the CSV exporter rounds to one decimal (income: to 4 significant digits in FHIR)
            assert cb[6] is not None and abs(fa[6] - cb[6]) <= 0.05 + 1e-4 * abs(cb[6])
            assert fa[8] == cb[8]  # same units for numeric values


def test_blood_pressure_panel_becomes_component_rows(both_ways):
    con, _, _ = both_ways
    codes = dict(con.execute("SELECT code, count(*) FROM f.observations GROUP BY code").fetchall())
    assert "85354-9" not in codes and codes["8480-6"] == codes["8462-4"] > 0


def test_conditional_references_are_resolved(both_ways):
    con, _, _ = both_ways
    (n, no_org, no_prov, orphan), = con.execute(
        """SELECT count(*), count(*) - count(organization_id), count(*) - count(provider_id),
                  count(*) FILTER (WHERE organization_id NOT IN (SELECT organization_id FROM f.organizations))
           FROM f.encounters"""
    ).fetchall()
    assert n == 175 and (no_org, no_prov, orphan) == (0, 0, 0)


def test_no_bundle_file_name_or_patient_name_in_store_or_summary(both_ways):
    con, sf, _ = both_ways
    stems = [p.stem for p in FHIR.glob("*.json")]
    names = {part for s in stems for part in s.split("_")[:-1]}  # e.g. Temika453, Wuckert783
    text = json.dumps(sf.to_dict())
    for t in ("patients", "encounters", "conditions", "observations", "medications",
              "procedures", "immunizations", "organizations", "rejected", "ingest_counts"):  # fmt: skip
        text += "\n".join(map(repr, con.execute(f"SELECT * FROM f.{t}").fetchall()))
    assert names and not [n for n in names if n in text]
    assert not [s for s in stems if s in text]


def _bundle(entries: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": f"urn:uuid:{r.get('id', i)}", "resource": r} for i, r in enumerate(entries)]}  # fmt: skip


PATIENT = {"resourceType": "Patient", "id": "pat-1", "birthDate": "1990-02-03", "gender": "male",
           "name": [{"family": "Secretname99", "given": ["Hidden12"]}],
           "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-12-3456"}],
           "address": [{"line": ["7 Privet Drive"], "city": "Smalltown", "state": "MA", "postalCode": "01234"}]}  # fmt: skip
ENC = {"resourceType": "Encounter", "id": "enc-1", "class": {"code": "EMER"},
       "period": {"start": "2020-03-01T09:00:00-05:00", "end": "2020-03-01T10:00:00-05:00"},
       "subject": {"reference": "urn:uuid:pat-1", "display": "Hidden12 Secretname99"},
       "type": [{"coding": [{"code": "50849002", "display": "Emergency, room"}]}]}  # fmt: skip


def test_small_bundle_maps_fields_and_rejects_dangling_refs(tmp_path):
    d = tmp_path / "fhir"
    d.mkdir()
    cond_ok = {"resourceType": "Condition", "subject": {"reference": "urn:uuid:pat-1"},
               "encounter": {"reference": "urn:uuid:enc-1"}, "onsetDateTime": "2020-03-01T23:30:00-05:00",
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1234"}]}}  # fmt: skip
    cond_bad = {**cond_ok, "subject": {"reference": "urn:uuid:nobody"}}
    name = "Hidden12_Secretname99_pat-1.json"
    (d / name).write_text(json.dumps(_bundle([PATIENT, ENC, cond_ok, cond_bad])))
    store = tmp_path / "s.duckdb"
    s = ingest(d, store, secret=SECRET)
    con = open_store(store)
    assert con.execute("SELECT sex, state, zip3 FROM patients").fetchall() == [("M", "MA", "012")]
    (start, klass, desc), = con.execute("SELECT CAST(start AS VARCHAR), encounter_class, description FROM encounters").fetchall()
    assert (start, klass, desc) == ("2020-03-01 14:00:00", "emergency", "Emergency  room")  # UTC; CSV text form
    # condition onset keeps the local calendar date (what the CSV exporter writes)
    assert con.execute("SELECT CAST(start AS VARCHAR) FROM conditions").fetchall() == [("2020-03-01",)]
    assert con.execute("SELECT file, line, field, reason FROM rejected").fetchall() == [
        (bundle_label(name), 3, "PATIENT", "dangling patient reference")]
    assert s.tables["conditions"].rows_read == 2 and s.tables["conditions"].rows_rejected == 1
    dump = repr(con.execute("SELECT * FROM patients").fetchall()) + json.dumps(s.to_dict())
    for secret in ("Secretname99", "Hidden12", "999-12-3456", "Privet", "Smalltown", "01234", "pat-1"):
        assert secret not in dump
    con.close()


def test_malformed_json_names_bundle_by_hash(tmp_path):
    d = tmp_path / "fhir"
    d.mkdir()
    name = "Hidden12_Secretname99_pat-1.json"
    (d / name).write_text(json.dumps(_bundle([PATIENT]))[:-20])
    with pytest.raises(EhrFhirError) as ei:
        ingest(d, tmp_path / "s.duckdb", secret=SECRET)
    msg = str(ei.value)
    assert ei.value.file == bundle_label(name) and "invalid JSON" in msg and "line 1" in msg
    assert "Secretname99" not in msg and "Hidden12" not in msg


def test_entry_without_resource_names_entry_index_and_field(tmp_path):
    d = tmp_path / "fhir"
    d.mkdir()
    b = _bundle([PATIENT, ENC])
    b["entry"].append({"fullUrl": "urn:uuid:x"})
    (d / "Hidden12_Secretname99_pat-1.json").write_text(json.dumps(b))
    with pytest.raises(EhrFhirError) as ei:
        ingest(d, tmp_path / "s.duckdb", secret=SECRET)
    assert (ei.value.line, ei.value.field) == (2, "resource")
    not_bundle = tmp_path / "fhir2"
    not_bundle.mkdir()
    (not_bundle / "x.json").write_text(json.dumps(PATIENT))
    with pytest.raises(EhrFhirError, match="not a FHIR Bundle"):
        ingest(not_bundle, tmp_path / "s2.duckdb", secret=SECRET)


def test_non_utf8_bundle_is_a_clear_error(tmp_path):
    d = tmp_path / "fhir"
    d.mkdir()
    (d / "b.json").write_bytes(json.dumps(_bundle([PATIENT])).replace("Hidden12", "Jos\xe9").encode("latin-1"))
    with pytest.raises(EhrEncodingError, match="UTF-8"):
        ingest(d, tmp_path / "s.duckdb", secret=SECRET)


def test_patient_bundles_without_information_bundles_still_load(tmp_path):
    d = tmp_path / "fhir"
    d.mkdir()
    one = next(p for p in sorted(FHIR.glob("*.json")) if "Information" not in p.name)
    shutil.copy(one, d / one.name)
    s = ingest(d, tmp_path / "s.duckdb", secret=SECRET)
    con = open_store(tmp_path / "s.duckdb")
    (orgs, provs), = con.execute("SELECT count(organization_id), count(provider_id) FROM encounters").fetchall()
    assert s.n_patients == 1 and orgs == s.tables["encounters"].rows_stored and provs == 0
    assert any("not resolvable" in n for n in s.notes)
    con.close()
