"""Read a directory of Synthea FHIR R4 bundles into the same staging tables as the CSV reader.

Each resource is mapped to the Synthea-CSV column it corresponds to, so a patient exported
both ways yields the same rows (``fhir-sample/csv`` is the CSV export of the run that wrote
``fhir-sample``). What it takes to get there:

- timestamps keep their local offset here and are normalised to UTC by the loader, like the
  CSV's ``Z``; date-only fields (condition onset/abatement, birth/death) keep the local
  calendar date, which is what the CSV exporter writes;
- a blood-pressure panel (``component`` values, no value of its own) becomes one row per
  component, as in the CSV; QALY/DALY/QOLS rows exist only in the CSV export;
- text is brought to the CSV exporter's form (it writes each comma as a space);
- ``Organization?identifier=...|<id>`` and ``Practitioner?identifier=...us-npi|<npi>``
  references are resolved with the ``hospitalInformation*``/``practitionerInformation*``
  bundles (any bundle holding Organization/Practitioner resources is used);
- encounter classes are FHIR v3 ActCodes (``AMB`` covers the CSV's wellness, ambulatory,
  outpatient and urgent care) and are stored in the CSV vocabulary.

De-identification: only whitelisted fields are read. ``Patient.identifier`` (MRN, SSN,
licence, passport), names, telecom, address lines, the ``mothersMaidenName`` and
``birthPlace`` extensions, and every ``*.display`` of a reference (Synthea repeats the
patient's and clinician's names there) are never touched. Bundle file names contain patient
names: a bundle is referred to only by ``bundle_label`` (a short sha256 of its name).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from privehr.ehr.deid import bundle_label
from privehr.ehr.errors import EhrEncodingError, EhrFhirError
from privehr.ehr.ingest_load import CANON, Staged
from privehr.ehr.ingest_rules import staged_items

_FIX = "re-export the bundle from Synthea (exporter.fhir.export = true) or remove it"
_CLASS = {
    "AMB": "ambulatory", "EMER": "emergency", "IMP": "inpatient", "ACUTE": "inpatient",
    "NONAC": "inpatient", "HH": "home", "VR": "virtual", "OBSENC": "outpatient",
    "SS": "outpatient", "PRENC": "ambulatory", "FLD": "ambulatory",
}  # fmt: skip
_RACE = {
    "2106-3": "white", "2054-5": "black", "2028-9": "asian", "1002-5": "native",
    "2076-8": "hawaiian", "2131-1": "other",
}  # fmt: skip
_ETHNICITY = {"2135-2": "hispanic", "2186-5": "nonhispanic"}
_NPI = "http://hl7.org/fhir/sid/us-npi"
_FLUSH_EVERY = 200  # bundles per staging flush (bounded memory on big directories)


def is_fhir_dir(src: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() == ".json" for p in src.iterdir())


def _csv_text(s) -> str | None:
    if s is None:
        return None
    return str(s).replace(",", " ")


def _coding(cc) -> dict:
    if isinstance(cc, dict):
        codings = cc.get("coding")
        if isinstance(codings, list) and codings and isinstance(codings[0], dict):
            c = dict(codings[0])
            if "display" not in c and "text" in cc:
                c["display"] = cc["text"]
            return c
        if "text" in cc:
            return {"display": cc["text"]}
    return {}


def _ref(ref, urls: dict[str, str]) -> str | None:
    """Resource id behind a reference (urn:uuid, Type/id or conditional ?identifier=sys|v)."""
    if not isinstance(ref, dict):
        return None
    r = ref.get("reference")
    if not isinstance(r, str) or not r:
        return None
    if r in urls:
        return urls[r]
    if "?identifier=" in r:
        ident = r.split("?identifier=", 1)[1]
        if ident.startswith(_NPI + "|"):
            return "npi:" + ident.split("|", 1)[1]
        return ident.split("|", 1)[-1]
    if r.startswith("urn:uuid:"):
        return r[len("urn:uuid:") :]
    return r.rsplit("/", 1)[-1]


def _ext(res: dict, suffix: str) -> dict | None:
    for e in res.get("extension") or []:
        if isinstance(e, dict) and str(e.get("url", "")).endswith(suffix):
            return e
    return None


def _omb(res: dict, suffix: str, table: dict[str, str]) -> str | None:
    e = _ext(res, suffix)
    if e is None:
        return None
    for sub in e.get("extension") or []:
        if sub.get("url") == "ombCategory":
            code = (sub.get("valueCoding") or {}).get("code")
            return table.get(code, (sub.get("valueCoding") or {}).get("display"))
    return None


def _first(res: dict, key: str) -> dict:
    v = res.get(key)
    if isinstance(v, list):
        return v[0] if v and isinstance(v[0], dict) else {}
    return v if isinstance(v, dict) else {}


def _value(obj: dict) -> tuple[str | None, str | None, str | None]:
    """(VALUE, UNITS, TYPE) of an Observation or one of its components."""
    if "valueQuantity" in obj:
        q = obj["valueQuantity"] or {}
        v = q.get("value")
        return (None if v is None else str(v), q.get("unit") or q.get("code"), "numeric")
    if "valueCodeableConcept" in obj:
        return (_csv_text(_coding(obj["valueCodeableConcept"]).get("display")), None, "text")
    for k in ("valueString", "valueBoolean", "valueInteger", "valueDateTime"):
        if k in obj:
            return (_csv_text(obj[k]), None, "numeric" if k == "valueInteger" else "text")
    return (None, None, None)


class _Collector:
    """Accumulates canonical rows per table; flushes them into stg_ tables in batches.

    Rows are staged in the loader's form (``ingest_rules.staged_items``: dates parsed, blank
    flags), the same as the CSV reader's, so ``ingest_load`` has one path for both.
    """

    def __init__(self, con) -> None:
        self.con = con
        self.rows: dict[str, list[tuple]] = {t: [] for t in CANON}
        self.created: set[str] = set()
        self.ignored: Counter[str] = Counter()
        self.org_ident: dict[str, str] = {}
        self.npi: dict[str, str] = {}

    def add(self, table: str, values: dict, file: str, line: int) -> None:
        self.rows[table].append(tuple(values.get(c) for c in CANON[table]) + (file, line))

    def flush(self) -> None:
        for table, rows in self.rows.items():
            if not rows and table in self.created:
                continue
            df = pd.DataFrame(rows, columns=[*CANON[table], "_file", "_line"], dtype=object)
            df["_line"] = df["_line"].astype("int64")
            self.con.register("_df_fhir", df)
            cols = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in CANON[table])
            body = (f"SELECT {', '.join(staged_items(table, CANON[table]))}, _file, _line FROM "  # noqa: S608 (identifiers from allowlists, values bound)
                    f"(SELECT {cols}, CAST(_file AS VARCHAR) AS _file, _line FROM _df_fhir)")  # fmt: skip
            if table in self.created:
                self.con.execute(f"INSERT INTO stg_{table} {body}")
            else:
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE stg_{table} AS {body}")
                self.created.add(table)
            self.con.unregister("_df_fhir")
            rows.clear()


def _load_json(path: Path, label: str) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except UnicodeDecodeError:
        raise EhrEncodingError(
            label, None, None, "bundle is not UTF-8 encoded JSON", _FIX
        ) from None
    except json.JSONDecodeError as exc:
        raise EhrFhirError(
            label, None, None,
            f"invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})", _FIX,
        ) from None  # fmt: skip
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise EhrFhirError(label, None, "resourceType", "not a FHIR Bundle", _FIX)
    if not isinstance(data.get("entry", []), list):
        raise EhrFhirError(label, None, "entry", "Bundle.entry is not a list", _FIX)
    return data


def _bundle(col: _Collector, data: dict, label: str) -> None:
    entries = data.get("entry", [])
    urls: dict[str, str] = {}
    meds: dict[str, dict] = {}
    for i, e in enumerate(entries):
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            field = "resource" if not isinstance(res, dict) else "resource.resourceType"
            raise EhrFhirError(label, i, field, "entry has no resource with a resourceType", _FIX)
        if isinstance(e.get("fullUrl"), str) and isinstance(res.get("id"), str):
            urls[e["fullUrl"]] = res["id"]
            if res["resourceType"] == "Medication":
                meds[e["fullUrl"]] = res
    for i, e in enumerate(entries):
        res = e["resource"]
        rt = res["resourceType"]
        handler = _HANDLERS.get(rt)
        if handler is None:
            col.ignored[rt] += 1
            continue
        handler(col, res, urls, meds, label, i)


def _patient(col, res, urls, meds, label, i) -> None:
    addr = _first(res, "address")
    gender = {"male": "M", "female": "F"}.get(str(res.get("gender", "")).lower())
    col.add("patients", {
        "Id": res.get("id"), "BIRTHDATE": res.get("birthDate"),
        "DEATHDATE": res.get("deceasedDateTime"), "GENDER": gender,
        "RACE": _omb(res, "us-core-race", _RACE), "ETHNICITY": _omb(res, "us-core-ethnicity", _ETHNICITY),
        "STATE": addr.get("state"), "ZIP": addr.get("postalCode"),
    }, label, i)  # fmt: skip


def _encounter(col, res, urls, meds, label, i) -> None:
    period = res.get("period") or {}
    typ = _coding(_first(res, "type"))
    prov = None
    for p in res.get("participant") or []:
        prov = _ref((p or {}).get("individual"), urls)
        if prov:
            break
    klass = (res.get("class") or {}).get("code")
    col.add("encounters", {
        "Id": res.get("id"), "START": period.get("start"), "STOP": period.get("end"),
        "PATIENT": _ref(res.get("subject"), urls),
        "ORGANIZATION": _ref(res.get("serviceProvider"), urls), "PROVIDER": prov,
        "ENCOUNTERCLASS": _CLASS.get(klass, klass), "CODE": typ.get("code"),
        "DESCRIPTION": _csv_text(typ.get("display")),
        "REASONCODE": _coding(_first(res, "reasonCode")).get("code"),
    }, label, i)  # fmt: skip


def _common(res, urls, subject="subject") -> dict:
    return {"PATIENT": _ref(res.get(subject), urls), "ENCOUNTER": _ref(res.get("encounter"), urls)}


def _condition(col, res, urls, meds, label, i) -> None:
    c = _coding(res.get("code"))
    col.add("conditions", {
        **_common(res, urls), "START": res.get("onsetDateTime") or res.get("recordedDate"),
        "STOP": res.get("abatementDateTime"), "SYSTEM": c.get("system"), "CODE": c.get("code"),
        "DESCRIPTION": _csv_text(c.get("display")),
    }, label, i)  # fmt: skip


def _observation(col, res, urls, meds, label, i) -> None:
    date = res.get("effectiveDateTime") or (res.get("effectivePeriod") or {}).get("start")
    base = {**_common(res, urls), "DATE": date,
            "CATEGORY": _coding(_first(res, "category")).get("code")}  # fmt: skip
    value = _value(res)
    comps = res.get("component")
    if value == (None, None, None) and isinstance(comps, list) and comps:
        for comp in comps:
            c = _coding((comp or {}).get("code"))
            v, u, t = _value(comp or {})
            col.add("observations", {**base, "CODE": c.get("code"),
                    "DESCRIPTION": _csv_text(c.get("display")), "VALUE": v, "UNITS": u,
                    "TYPE": t}, label, i)  # fmt: skip
        return
    c = _coding(res.get("code"))
    col.add("observations", {**base, "CODE": c.get("code"),
            "DESCRIPTION": _csv_text(c.get("display")), "VALUE": value[0],
            "UNITS": value[1], "TYPE": value[2]}, label, i)  # fmt: skip


def _medication(col, res, urls, meds, label, i) -> None:
    if "medicationCodeableConcept" in res:
        c = _coding(res["medicationCodeableConcept"])
    else:
        ref = (res.get("medicationReference") or {}).get("reference")
        c = _coding((meds.get(ref) or {}).get("code"))
    col.add("medications", {
        **_common(res, urls), "START": res.get("authoredOn"), "STOP": None,
        "CODE": c.get("code"), "DESCRIPTION": _csv_text(c.get("display")),
    }, label, i)  # fmt: skip


def _procedure(col, res, urls, meds, label, i) -> None:
    c = _coding(res.get("code"))
    period = res.get("performedPeriod") or {}
    col.add("procedures", {
        **_common(res, urls), "START": res.get("performedDateTime") or period.get("start"),
        "STOP": period.get("end"), "SYSTEM": c.get("system"), "CODE": c.get("code"),
        "DESCRIPTION": _csv_text(c.get("display")),
    }, label, i)  # fmt: skip


def _immunization(col, res, urls, meds, label, i) -> None:
    c = _coding(res.get("vaccineCode"))
    col.add("immunizations", {
        **_common(res, urls, "patient"), "DATE": res.get("occurrenceDateTime"),
        "CODE": c.get("code"), "DESCRIPTION": _csv_text(c.get("display")),
    }, label, i)  # fmt: skip


def _organization(col, res, urls, meds, label, i) -> None:
    addr = _first(res, "address")
    rid = res.get("id")
    for ident in res.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value") and rid:
            col.org_ident[str(ident["value"])] = rid
    col.add("organizations", {"Id": rid, "NAME": res.get("name"), "CITY": addr.get("city"),
                              "STATE": addr.get("state")}, label, i)  # fmt: skip


def _practitioner(col, res, urls, meds, label, i) -> None:
    for ident in res.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == _NPI and res.get("id"):
            col.npi[str(ident.get("value"))] = res["id"]


_HANDLERS = {
    "Patient": _patient, "Encounter": _encounter, "Condition": _condition,
    "Observation": _observation, "MedicationRequest": _medication, "Procedure": _procedure,
    "Immunization": _immunization, "Organization": _organization,
    "Practitioner": _practitioner,
}  # fmt: skip


def stage_fhir(con, src: Path) -> Staged:
    """Create ``stg_<table>`` TEMP tables from every ``*.json`` bundle in ``src``."""
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() == ".json")
    col = _Collector(con)
    for n, path in enumerate(files, 1):
        label = bundle_label(path.name)
        _bundle(col, _load_json(path, label), label)
        if n % _FLUSH_EVERY == 0:
            col.flush()
    col.flush()
    staged = Staged(kind="fhir", format_version="fhir-r4 bundles (Synthea)")
    staged.tables = [t for t in CANON if con.execute(f"SELECT count(*) FROM stg_{t}").fetchall()[0][0] > 0  # noqa: S608 (identifiers from allowlists, values bound)
                     or t in ("patients", "encounters", "conditions")]  # fmt: skip
    _resolve(con, col, staged)
    staged.notes.append(f"{len(files)} bundle(s) read; bundles are named by sha256 prefix only")
    if col.ignored:
        listed = ", ".join(f"{k} {v}" for k, v in sorted(col.ignored.items()))
        staged.notes.append(f"FHIR resource types not used: {listed}")
    staged.notes.append(
        "FHIR: Patient.identifier, names, telecom, address lines, mothersMaidenName and "
        "birthPlace extensions and reference display strings are never read"
    )
    return staged


def _resolve(con, col: _Collector, staged: Staged) -> None:
    """Resolve conditional Organization/Practitioner references to resource ids."""
    orgs = pd.DataFrame(list(col.org_ident.items()), columns=["ident", "id"], dtype=object)
    npis = pd.DataFrame([("npi:" + k, v) for k, v in col.npi.items()], columns=["ref", "id"],
                        dtype=object)  # fmt: skip
    con.register("_df_orgs", orgs)
    con.register("_df_npi", npis)
    con.execute(
        """UPDATE stg_encounters SET ORGANIZATION = m.id FROM _df_orgs m
        WHERE stg_encounters.ORGANIZATION = m.ident"""
    )
    con.execute(
        """UPDATE stg_encounters SET PROVIDER = m.id FROM _df_npi m
        WHERE stg_encounters.PROVIDER = m.ref"""
    )
    unresolved = con.execute(
        "SELECT count(*) FROM stg_encounters WHERE PROVIDER LIKE 'npi:%'"
    ).fetchall()[0][0]
    if unresolved:
        con.execute("UPDATE stg_encounters SET PROVIDER = NULL WHERE PROVIDER LIKE 'npi:%'")
        staged.notes.append(
            f"{unresolved} encounter clinician reference(s) not resolvable (no "
            "practitionerInformation bundle): provider_id left empty"
        )
    con.unregister("_df_orgs")
    con.unregister("_df_npi")
