"""Staged raw rows -> validated, pseudonymised rows in the store (shared by CSV and FHIR).

Both readers (``ingest_csv``, ``ingest_fhir``) leave one TEMP table ``stg_<table>`` per
table they found, with the canonical Synthea-CSV column names of ``CANON`` (all VARCHAR,
NULL when the source has no such column) plus ``_file`` and ``_line``. Identifying columns
are never staged. This module checks every row in SQL (vectorised, no per-row Python),
sends each bad row to ``rejected`` with file/line/field/reason (never its content) and
writes the good rows with keyed pseudonyms and shifted dates. Pseudonyms are computed once
per *distinct* raw id in Python (HMAC from the stdlib) and joined in.

A row is rejected for the first failing check, in this order: missing required value, bad
date/timestamp, non-numeric value where the row says it is numeric, duplicate id, dangling
patient reference, dangling encounter reference. Rows of a rejected patient therefore end
up rejected as dangling: nothing is dropped without a trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from privehr.ehr.deid import (
    Pseudonymizer,
    identifying_observation_sql,
    state_sql,
    zip3_sql,
)

# Canonical staged columns per table (Synthea CSV names; the newest layout wins).
CANON: dict[str, tuple[str, ...]] = {
    "patients": ("Id", "BIRTHDATE", "DEATHDATE", "GENDER", "RACE", "ETHNICITY", "STATE", "ZIP"),
    "encounters": (
        "Id", "START", "STOP", "PATIENT", "ORGANIZATION", "PROVIDER", "ENCOUNTERCLASS",
        "CODE", "DESCRIPTION", "REASONCODE",
    ),
    "conditions": ("START", "STOP", "PATIENT", "ENCOUNTER", "SYSTEM", "CODE", "DESCRIPTION"),
    "observations": (
        "DATE", "PATIENT", "ENCOUNTER", "CATEGORY", "CODE", "DESCRIPTION", "VALUE", "UNITS",
        "TYPE",
    ),
    "medications": ("START", "STOP", "PATIENT", "ENCOUNTER", "CODE", "DESCRIPTION"),
    "procedures": ("START", "STOP", "PATIENT", "ENCOUNTER", "SYSTEM", "CODE", "DESCRIPTION"),
    "immunizations": ("DATE", "PATIENT", "ENCOUNTER", "CODE", "DESCRIPTION"),
    "organizations": ("Id", "NAME", "CITY", "STATE"),
}  # fmt: skip

# Load order: patients first (everything joins to them), then encounters (others join to them).
LOAD_ORDER = (
    "patients",
    "encounters",
    "organizations",
    "conditions",
    "observations",
    "medications",
    "procedures",
    "immunizations",
)
EVENT_DATE = {  # the column giving each clinical table's date range
    "encounters": "start",
    "conditions": "start",
    "observations": "date",
    "medications": "start",
    "procedures": "start",
    "immunizations": "date",
}

Rejection = tuple[str, str, "int | None", str, str]  # table, file, line, field, reason


@dataclass
class Staged:
    """What a reader hands to ``load``: which stg_ tables exist and what it saw on the way."""

    kind: str  # "csv" or "fhir"
    format_version: str
    tables: list[str] = field(default_factory=list)
    read_rejects: list[Rejection] = field(default_factory=list)  # rows the reader could not split
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TableCount:
    rows_read: int
    rows_stored: int
    rows_rejected: int


_SYSTEMS = {
    "http://snomed.info/sct": "SNOMED-CT",
    "snomed-ct": "SNOMED-CT",
    "http://loinc.org": "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/cvx": "CVX",
}


def _blank(col: str) -> str:
    return f"nullif(trim({col}), '') IS NULL"


def _bad_ts(col: str) -> str:
    return f"(NOT {_blank(col)} AND try_cast({col} AS TIMESTAMPTZ) IS NULL)"


def _bad_date(col: str) -> str:
    return f"(NOT {_blank(col)} AND try_cast({col} AS DATE) IS NULL)"


def _ts(col: str, shift: str = "_shift") -> str:
    # Offsets (FHIR '-04:00', CSV 'Z') are normalised to UTC; the session runs in UTC.
    return f"timezone('UTC', try_cast({col} AS TIMESTAMPTZ)) + to_days({shift})"


def _date(col: str, shift: str = "_shift") -> str:
    # Date-only fields keep the calendar date as written (the CSV exporter writes the local
    # date, which is what FHIR's local-offset timestamp says too).
    return f"try_cast({col} AS DATE) + {shift}"


def _system(col: str) -> str:
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _SYSTEMS.items())
    return f"CASE WHEN {_blank(col)} THEN 'SNOMED-CT' ELSE CASE lower(trim({col})) {cases} ELSE trim({col}) END END"


def _text(col: str) -> str:
    return f"nullif(trim({col}), '')"


# Per table: ordered checks (field, SQL condition meaning "bad", reason).
_REQ = "missing required value"
_CHECKS: dict[str, list[tuple[str, str, str]]] = {
    "patients": [
        ("Id", _blank("Id"), _REQ),
        ("BIRTHDATE", _blank("BIRTHDATE"), _REQ),
        ("BIRTHDATE", _bad_date("BIRTHDATE"), "bad date"),
        ("DEATHDATE", _bad_date("DEATHDATE"), "bad date"),
        ("Id", "_dup > 1", "duplicate id"),
    ],
    "encounters": [
        ("Id", _blank("Id"), _REQ),
        ("PATIENT", _blank("PATIENT"), _REQ),
        ("START", _blank("START"), _REQ),
        ("START", _bad_ts("START"), "bad timestamp"),
        ("STOP", _bad_ts("STOP"), "bad timestamp"),
        ("Id", "_dup > 1", "duplicate id"),
        ("PATIENT", "_pid IS NULL", "dangling patient reference"),
    ],
    "organizations": [
        ("Id", _blank("Id"), _REQ),
        ("Id", "_dup > 1", "duplicate id"),
    ],
}
for _t, _d in (
    ("conditions", "START"),
    ("medications", "START"),
    ("procedures", "START"),
    ("observations", "DATE"),
    ("immunizations", "DATE"),
):
    _is_date = _t == "conditions"
    _checks = [
        ("PATIENT", _blank("PATIENT"), _REQ),
        (_d, _blank(_d), _REQ),
        ("CODE", _blank("CODE"), _REQ),
        (_d, _bad_date(_d) if _is_date else _bad_ts(_d), "bad date" if _is_date else "bad timestamp"),
    ]
    if _t != "observations" and _t != "immunizations":
        _checks.append(
            ("STOP", _bad_date("STOP") if _is_date else _bad_ts("STOP"),
             "bad date" if _is_date else "bad timestamp")
        )  # fmt: skip
    if _t == "observations":
        _checks.append(
            ("VALUE",
             "(lower(trim(TYPE)) = 'numeric' AND try_cast(VALUE AS DOUBLE) IS NULL)",
             "non-numeric value where TYPE is numeric")
        )  # fmt: skip
    _checks += [
        ("PATIENT", "_pid IS NULL", "dangling patient reference"),
        ("ENCOUNTER", f"(NOT {_blank('ENCOUNTER')} AND _eid IS NULL)", "dangling encounter reference"),
    ]
    _CHECKS[_t] = _checks

# Stored columns per table, as SQL over chk_<table> (s.* plus _pid, _eid, _shift, maps).
_INSERT: dict[str, str] = {
    "encounters": f"""_eid, _pid, {_ts('START')}, {_ts('STOP')},
        lower(trim(ENCOUNTERCLASS)), {_text('CODE')}, {_text('DESCRIPTION')},
        _org, _prov, {_text('REASONCODE')}""",
    "conditions": f"""_pid, _eid, {_date('START')}, {_date('STOP')}, {_system('SYSTEM')},
        trim(CODE), {_text('DESCRIPTION')}""",
    "observations": f"""_pid, _eid, {_ts('DATE')}, {_text('CATEGORY')}, trim(CODE),
        {_text('DESCRIPTION')}, _num,
        CASE WHEN _num IS NULL AND NOT _ident THEN {_text('VALUE')} END,
        {_text('UNITS')}""",
    "medications": f"""_pid, _eid, {_ts('START')}, {_ts('STOP')}, trim(CODE),
        {_text('DESCRIPTION')}""",
    "procedures": f"""_pid, _eid, {_ts('START')}, {_ts('STOP')}, {_system('SYSTEM')},
        trim(CODE), {_text('DESCRIPTION')}""",
    "immunizations": f"""_pid, _eid, {_ts('DATE')}, trim(CODE), {_text('DESCRIPTION')}""",
}


def _case(checks: list[tuple[str, str, str]], pick: int) -> str:
    whens = " ".join(f"WHEN {cond} THEN '{item[pick]}'" for item in checks for cond in (item[1],))
    return f"CASE {whens} END"


def _register_map(con, name: str, df: pd.DataFrame) -> None:
    con.register(f"_df_{name}", df)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _df_{name}")  # noqa: S608 (identifiers from allowlists, values bound)
    con.unregister(f"_df_{name}")


def _id_map(con, name: str, pz: Pseudonymizer, source: str, raws: list[str]) -> None:
    df = pd.DataFrame({"raw": pd.Series(raws, dtype=object)})
    df["pseudo"] = pz.pseudonyms(source, raws)
    _register_map(con, name, df)


def _distinct(con, sql: str) -> list[str]:
    return [r[0] for r in con.execute(sql).fetchall()]


def _check(con, table: str, select_extra: str, joins: str, dup_key: str | None) -> None:
    checks = _CHECKS[table]
    dup = (
        f", row_number() OVER (PARTITION BY {dup_key} ORDER BY _file, _line) AS _dup"
        if dup_key
        else ""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE chk_{table} AS
        SELECT *, {_case(checks, 0)} AS _field, {_case(checks, 2)} AS _reason FROM (
            SELECT s.*{dup}{select_extra} FROM stg_{table} s {joins}
        )"""  # noqa: S608 (identifiers from allowlists, values bound)
    )


def load(
    con,
    staged: Staged,
    source: str,
    pz: Pseudonymizer,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, TableCount], list[Rejection]]:
    """Validate and write every staged table; return per-table counts and all rejections.

    Runs inside the caller's transaction; the caller has already removed ``source``'s old
    rows. Empty maps are created for absent tables so joins stay valid.
    """
    con.execute("SET TimeZone = 'UTC'")
    present = set(staged.tables)
    counts: dict[str, TableCount] = {}
    todo = [t for t in LOAD_ORDER if t in present]
    for i, table in enumerate(todo):
        if table == "patients":
            _check(con, "patients", "", "", "Id")
            ok = _distinct(con, "SELECT Id FROM chk_patients WHERE _reason IS NULL")
            df = pd.DataFrame({"raw": pd.Series(ok, dtype=object)})
            df["pid"] = pz.pseudonyms(source, ok)
            df["shift"] = pd.Series(pz.date_shifts(source, ok), dtype="int32")
            _register_map(con, "pmap", df)
        elif table == "encounters":
            _check(
                con,
                "encounters",
                ", p.pid AS _pid, p.shift AS _shift",
                "LEFT JOIN pmap p ON p.raw = s.PATIENT",
                "Id",
            )
            ok = _distinct(con, "SELECT Id FROM chk_encounters WHERE _reason IS NULL")
            _id_map(con, "emap", pz, source, ok)
            orgs = "SELECT DISTINCT trim(ORGANIZATION) FROM chk_encounters WHERE _reason IS NULL"
            if "organizations" in present:
                orgs += " UNION SELECT DISTINCT trim(Id) FROM stg_organizations"
            _id_map(con, "omap", pz, source, [o for o in _distinct(con, orgs) if o])
            provs = "SELECT DISTINCT trim(PROVIDER) FROM chk_encounters WHERE _reason IS NULL"
            _id_map(con, "prmap", pz, source, [o for o in _distinct(con, provs) if o])
            _insert_encounters(con)
        elif table == "organizations":
            if "encounters" not in present:  # pragma: no cover - encounters are required
                _id_map(con, "omap", pz, source, _distinct(con, "SELECT DISTINCT Id FROM stg_organizations"))
            _check(con, "organizations", ", o.pseudo AS _org", "LEFT JOIN omap o ON o.raw = trim(s.Id)", "trim(Id)")
            con.execute(
                f"""INSERT INTO organizations SELECT _org, ?, {_text('NAME')}, {_text('CITY')},
                {state_sql('STATE')} FROM chk_organizations WHERE _reason IS NULL""",  # noqa: S608 (identifiers from allowlists, values bound)
                [source],
            )
        else:
            extra = ", p.pid AS _pid, p.shift AS _shift, e.pseudo AS _eid"
            if table == "observations":
                # A value that parses as a number is stored as one whatever TYPE says
                # (CSV marks some numeric survey answers 'text'; FHIR gives a Quantity).
                ident = identifying_observation_sql("CODE", "DESCRIPTION")
                extra += (
                    f", {ident} AS _ident"
                    f", CASE WHEN NOT {ident} THEN try_cast(VALUE AS DOUBLE) END AS _num"
                )
            joins = "LEFT JOIN pmap p ON p.raw = s.PATIENT LEFT JOIN emap e ON e.raw = s.ENCOUNTER"
            _check(con, table, extra, joins, None)
            con.execute(f"INSERT INTO {table} SELECT {_INSERT[table]} FROM chk_{table} WHERE _reason IS NULL")  # noqa: S608 (identifiers from allowlists, values bound)
            if table == "observations":
                n_ident = con.execute(
                    "SELECT count(*) FROM chk_observations WHERE _reason IS NULL AND _ident "
                    "AND nullif(trim(VALUE), '') IS NOT NULL"
                ).fetchall()[0][0]
                if n_ident:
                    staged.notes.append(
                        f"observations: {n_ident} identifying value(s) dropped (e.g. LOINC "
                        "56799-0 Address); the rows are kept without a value"
                    )  # noqa: S608 (identifiers from allowlists, values bound)
        if table == "patients":
            continue  # written after encounters, once primary organizations are known
        counts[table] = _count(con, table, staged)
        if progress is not None:
            progress(table, i + 1, len(todo))
    _insert_patients(con, source, "encounters" in present)
    counts["patients"] = _count(con, "patients", staged)
    if progress is not None:
        progress("patients", len(todo), len(todo))
    for table in todo:
        con.execute(
            """INSERT INTO rejected SELECT ?, ?, _file, _line, _field, _reason
            FROM chk_""" + table + " WHERE _reason IS NOT NULL",  # noqa: S608 (identifiers from allowlists, values bound)
            [source, table],
        )
    if staged.read_rejects:
        con.executemany(
            "INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?)",
            [[source, t, f, ln, fd, r] for t, f, ln, fd, r in staged.read_rejects],
        )
    rejections = list(staged.read_rejects)
    for table in todo:
        rejections += [
            (table, f, ln, fd, r)
            for f, ln, fd, r in con.execute(
                f"SELECT _file, _line, _field, _reason FROM chk_{table} "  # noqa: S608 (identifiers from allowlists, values bound)
                "WHERE _reason IS NOT NULL ORDER BY _file, _line LIMIT 1000"
            ).fetchall()
        ]
    for table in todo:
        con.execute(f"DROP TABLE IF EXISTS chk_{table}")
    return {t: counts[t] for t in LOAD_ORDER if t in counts}, rejections


def _insert_encounters(con) -> None:
    con.execute(
        """CREATE OR REPLACE TEMP TABLE chk_encounters AS
        SELECT c.*, e.pseudo AS _eid, o.pseudo AS _org, pr.pseudo AS _prov
        FROM chk_encounters c
        LEFT JOIN emap e ON e.raw = c.Id AND c._reason IS NULL
        LEFT JOIN omap o ON o.raw = trim(c.ORGANIZATION)
        LEFT JOIN prmap pr ON pr.raw = trim(c.PROVIDER)"""
    )
    con.execute(f"INSERT INTO encounters SELECT {_INSERT['encounters']} FROM chk_encounters WHERE _reason IS NULL")  # noqa: S608 (identifiers from allowlists, values bound)
    # primary organization = the one with most encounters (ties: latest visit, then id).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE primary_org AS
        SELECT _pid AS pid, _org AS org FROM chk_encounters
        WHERE _reason IS NULL AND _org IS NOT NULL
        GROUP BY _pid, _org
        QUALIFY row_number() OVER (PARTITION BY _pid ORDER BY count(*) DESC,
                                   max(try_cast(START AS TIMESTAMPTZ)) DESC, _org) = 1"""
    )


def _insert_patients(con, source: str, have_encounters: bool) -> None:
    prim = "LEFT JOIN primary_org po ON po.pid = m.pid" if have_encounters else ""
    org = "po.org" if have_encounters else "NULL"
    con.execute(
        f"""INSERT INTO patients SELECT m.pid, ?, {_date('c.BIRTHDATE', 'm.shift')},
            {_date('c.DEATHDATE', 'm.shift')},
            CASE upper(trim(c.GENDER)) WHEN 'M' THEN 'M' WHEN 'F' THEN 'F' END,
            {_text('c.RACE')}, {_text('c.ETHNICITY')}, {state_sql('c.STATE')},
            {zip3_sql('c.ZIP')}, {org}
        FROM chk_patients c JOIN pmap m ON m.raw = c.Id {prim}
        WHERE c._reason IS NULL""",  # noqa: S608 (identifiers from allowlists, values bound)
        [source],
    )


def _count(con, table: str, staged: Staged) -> TableCount:
    read, rej = con.execute(
        f"SELECT count(*), count(_reason) FROM chk_{table}"  # noqa: S608 (identifiers from allowlists, values bound)
    ).fetchall()[0]
    extra = sum(1 for r in staged.read_rejects if r[0] == table)
    return TableCount(read + extra, read - rej, rej + extra)
