"""Staged rows -> validated, pseudonymised rows in the store (shared by CSV and FHIR).

Both readers (``ingest_csv``, ``ingest_fhir``) leave one TEMP table or view ``stg_<table>``
per table they found, in the staged form of ``ingest_rules.staged_items``: the canonical
Synthea-CSV columns of ``CANON`` (VARCHAR, NULL when the source has no such column) with
date/timestamp columns already parsed into ``_t_<COL>`` plus ``_blank_<COL>`` flags, and
``_file``/``_line``. Identifying columns are never staged. This module checks every row in
SQL (vectorised, no per-row Python), sends each bad row to ``rejected`` with
file/line/field/reason (never its content) and writes the good rows with keyed pseudonyms
and shifted dates. Pseudonyms are computed once per *distinct* raw id in Python (HMAC from
the stdlib) and joined in.

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
from privehr.ehr.ingest_rules import (
    CHECKS,
    case_sql,
    insert_sql,
    ok_sql,
    shifted,
    text,
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
    # table -> deferred staging step (CSV reads a table only when the loader needs it)
    pending: dict[str, Callable[[], None]] = field(default_factory=dict)

    def ensure(self, table: str) -> None:
        """Run the deferred staging of ``table`` if it has not run yet."""
        step = self.pending.pop(table, None)
        if step is not None:
            step()


@dataclass(frozen=True)
class TableCount:
    rows_read: int
    rows_stored: int
    rows_rejected: int


def _register_map(con, name: str, df: pd.DataFrame) -> None:
    con.register(f"_df_{name}", df)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _df_{name}")  # noqa: S608 (identifiers from allowlists, values bound)
    con.unregister(f"_df_{name}")


def _id_map(con, name: str, pz: Pseudonymizer, source: str, raws: list[str],
            *, trim: bool = False) -> None:  # fmt: skip
    """TEMP table ``name(raw, pseudo)``, filled in chunks to bound Python memory.

    ``trim``: ``raws`` are values as written, keyed as such, pseudonymised without their
    surrounding spaces (values that are only spaces are left out). Joining on the column
    itself costs less than on ``trim(column)``, which copies every string (measured 0.26
    CPU s per join on 700k encounters, with a 40-row map).
    """
    if trim:
        raws = [r for r in raws if r.strip(" ")]
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (raw VARCHAR, pseudo VARCHAR)")
    for i in range(0, len(raws), _CHUNK):
        chunk = raws[i : i + _CHUNK]
        keyed = [r.strip(" ") for r in chunk] if trim else chunk
        df = pd.DataFrame({"raw": pd.Series(chunk, dtype=object),
                           "pseudo": pd.Series(pz.pseudonyms(source, keyed), dtype=object)})  # fmt: skip
        con.register("_df_idmap", df)
        con.execute(f"INSERT INTO {name} SELECT raw, pseudo FROM _df_idmap")  # noqa: S608 (identifiers from allowlists, values bound)
        con.unregister("_df_idmap")


_CHUNK = 250_000


def _distinct(con, sql: str) -> list[str]:
    return [r[0] for r in con.execute(sql).fetchall()]


def _check(con, table: str, select_extra: str, joins: str, dup_key: str | None, *,
           materialize: bool) -> int:
    """chk_<table>: staged rows + joined pseudonyms + ``_bad``.

    ``materialize``: a TABLE where several statements read it (patients, encounters,
    organizations: id maps, inserts; ``rej_<table>`` is then made here), else a VIEW that
    the insert reads, and the rejects only when the insert wrote fewer rows than were staged
    (``_rejects``): a staged table joined again costs less than a third copy of every row
    (measured on 1.6M observation rows: ~0.1 CPU s per join pass against ~1.2 CPU s for a
    copy), and a clean table needs no second pass at all. ``_bad`` is the negated fast
    AND-chain. A duplicate id is any row but the first (by file, line) of its id: found with a
    GROUP BY (parallel), not a window over every row (a sort, measured ~0.6 s per 176k
    encounters on one core). Returns the number of staged rows.
    """
    dup = ""
    if dup_key:
        # ids seen twice, found first by their 64-bit hash (an integer GROUP BY; the exact
        # string GROUP BY then only sees the few candidates): 0.2 against 0.6 CPU s per
        # 700k encounters
        joins += f""" LEFT JOIN (
            SELECT {dup_key} AS k, min((_file, _line)) AS first FROM stg_{table}
            WHERE hash({dup_key}) IN (SELECT h FROM (SELECT hash({dup_key}) AS h FROM stg_{table})
                                      GROUP BY h HAVING count(*) > 1)
            GROUP BY ALL HAVING count(*) > 1) d ON d.k = {dup_key}"""  # noqa: S608 (identifiers from allowlists, values bound)
        dup = ", CASE WHEN d.k IS NOT NULL AND (s._file, s._line) <> d.first THEN 2 ELSE 1 END AS _dup"
    kind = "TABLE" if materialize else "VIEW"
    con.execute(
        f"""CREATE OR REPLACE TEMP {kind} chk_{table} AS
        SELECT *, (NOT {ok_sql(table)}) AS _bad FROM (
            SELECT s.*{dup}{select_extra} FROM stg_{table} s {joins}
        )"""  # noqa: S608 (identifiers from allowlists, values bound)
    )
    n = con.execute(f"SELECT count(*) FROM stg_{table}").fetchall()[0][0]  # noqa: S608 (identifiers from allowlists, values bound)
    if materialize:
        _rejects(con, table)
        if table != "organizations":  # stg_organizations is read again later
            _release(con, table)
    return n


def _rejects(con, table: str, n_bad: int | None = None, extra: str = "") -> None:
    """rej_<table>: each bad row of chk_<table> with its first failing check spelled out
    (a CASE per row cost more than the joins, so only rejected rows get one). ``n_bad``:
    the number of bad rows when known (0 skips the pass over chk_<table>)."""
    where = "_bad" if n_bad != 0 else "false"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE rej_{table} AS
        SELECT _file, _line, {case_sql(CHECKS[table], 0)} AS _field,
               {case_sql(CHECKS[table], 2)} AS _reason{extra}
        FROM chk_{table} WHERE {where}"""  # noqa: S608 (identifiers from allowlists, values bound)
    )
    if n_bad:
        got = con.execute(f"SELECT count(*) FROM rej_{table}").fetchall()[0][0]  # noqa: S608 (identifiers from allowlists, values bound)
        if got != n_bad:  # the rows stored and the rows rejected must add up to those read
            raise RuntimeError(f"{table}: {got} rejected rows found, {n_bad} expected")


def _release(con, table: str) -> None:
    names = [f"stg_{table}", f"raw_{table}"]
    views = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE temporary AND view_name IN (?, ?)", names
    ).fetchall()
    for (v,) in views:
        con.execute(f"DROP VIEW {v}")
    tables = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary AND table_name IN (?, ?)", names
    ).fetchall()
    for (t,) in tables:
        con.execute(f"DROP TABLE {t}")


def load(
    con,
    staged: Staged,
    source: str,
    pz: Pseudonymizer,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, TableCount], list[Rejection]]:
    """Validate and write every staged table; return per-table counts and all rejections.

    Runs inside the caller's transaction; the caller has already removed ``source``'s old
    rows. ``progress(table, done, total)`` is called after each table. Temp tables and
    views it creates are left for the caller to drop (``store._drop_staging``).
    """
    con.execute("SET TimeZone = 'UTC'")
    shift = "_shift" if pz.max_shift_days else None
    present = set(staged.tables)
    todo = [t for t in LOAD_ORDER if t in present]
    counts: dict[str, TableCount] = {}
    read: dict[str, int] = {}

    def done(table: str) -> None:
        counts[table] = _count(con, table, staged, read[table])
        if progress is not None:
            progress(table, len(counts), len(todo))

    # patients: checks, then the pseudonym/date-shift map of every valid patient
    staged.ensure("patients")
    read["patients"] = _check(con, "patients", "", "", "Id", materialize=True)
    ok = _distinct(con, "SELECT Id FROM chk_patients WHERE NOT _bad")
    df = pd.DataFrame({"raw": pd.Series(ok, dtype=object)})
    df["pid"] = pz.pseudonyms(source, ok)
    df["shift"] = pd.Series(pz.date_shifts(source, ok), dtype="int32")
    _register_map(con, "pmap", df)

    # encounters: checks, id maps (encounter, organization, clinician), insert
    staged.ensure("encounters")
    read["encounters"] = _check(con, "encounters", ", p.pid AS _pid, p.shift AS _shift",
                                "LEFT JOIN pmap p ON p.raw = s.PATIENT", "Id",
                                materialize=True)  # fmt: skip
    _id_map(con, "emap", pz, source,
            _distinct(con, "SELECT Id FROM chk_encounters WHERE NOT _bad"))  # fmt: skip
    orgs = "SELECT DISTINCT ORGANIZATION FROM chk_encounters WHERE NOT _bad"
    if "organizations" in present:
        staged.ensure("organizations")
        orgs += " UNION SELECT DISTINCT Id FROM stg_organizations"
    _id_map(con, "omap", pz, source, [o for o in _distinct(con, orgs) if o], trim=True)
    provs = "SELECT DISTINCT PROVIDER FROM chk_encounters WHERE NOT _bad"
    _id_map(con, "prmap", pz, source, [o for o in _distinct(con, provs) if o], trim=True)
    con.execute(
        f"""INSERT INTO encounters SELECT {insert_sql('encounters', shift)} FROM (
            SELECT c.*, e.pseudo AS _eid, o.pseudo AS _org, pr.pseudo AS _prov
            FROM chk_encounters c JOIN emap e ON e.raw = c.Id
            LEFT JOIN omap o ON o.raw = c.ORGANIZATION
            LEFT JOIN prmap pr ON pr.raw = c.PROVIDER
            WHERE NOT c._bad)"""  # noqa: S608 (identifiers from allowlists, values bound)
    )
    done("encounters")

    if "organizations" in present:
        read["organizations"] = _check(con, "organizations", ", o.pseudo AS _org",
                                       "LEFT JOIN omap o ON o.raw = s.Id", "trim(Id)",
                                       materialize=True)  # fmt: skip
        con.execute(
            f"""INSERT INTO organizations SELECT _org, ?, {text('NAME')}, {text('CITY')},
            {state_sql('STATE')} FROM chk_organizations WHERE NOT _bad""",  # noqa: S608 (identifiers from allowlists, values bound)
            [source],
        )
        done("organizations")

    joins = "LEFT JOIN pmap p ON p.raw = s.PATIENT LEFT JOIN emap e ON e.raw = s.ENCOUNTER"
    for table in todo:
        if table in ("patients", "encounters", "organizations"):
            continue
        staged.ensure(table)
        extra = ", p.pid AS _pid, p.shift AS _shift, e.pseudo AS _eid"
        if table == "observations":
            # A value that parses as a number is stored as one whatever TYPE says (CSV marks
            # some numeric survey answers 'text'; FHIR gives a Quantity). Identifying values
            # (e.g. the PRAPARE address) are dropped, the row kept.
            # The rule is applied to the few distinct (code, description) pairs; every row
            # of a matching code is then treated as identifying (errs on the safe side).
            # The pairs go to a table first: in one statement (even a MATERIALIZED CTE)
            # DuckDB pushes the regex below the DISTINCT onto every row (measured 0.3 CPU s
            # per 1.6M rows, against 0.06 s for the DISTINCT alone).
            con.execute(
                """CREATE OR REPLACE TEMP TABLE _obs_pairs AS
                SELECT DISTINCT CODE, DESCRIPTION FROM stg_observations"""
            )
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _ident_codes AS SELECT DISTINCT CODE AS code
                FROM _obs_pairs WHERE {identifying_observation_sql('CODE', 'DESCRIPTION')}"""  # noqa: S608 (identifiers from allowlists, values bound)
            )
            ident = "coalesce(s.CODE IN (SELECT code FROM _ident_codes), false)"
            extra += f", {ident} AS _ident"
        rej_extra = ", _ident AND VALUE <> '' AS _ident_value" if table == "observations" else ""
        read[table] = _check(con, table, extra, joins, None, materialize=False)
        stored = con.execute(
            f"INSERT INTO {table} SELECT {insert_sql(table, shift)} "  # noqa: S608 (identifiers from allowlists, values bound)
            f"FROM chk_{table} WHERE NOT _bad"
        ).fetchall()[0][0]
        _rejects(con, table, read[table] - stored, rej_extra)
        if table == "observations":
            # identifying values among stored rows = among staged rows - among rejected rows
            # (a third pass over chk_observations' joins cost 0.25 CPU s per 1.6M rows)
            n_ident = con.execute(
                """SELECT (SELECT count(*) FROM stg_observations WHERE VALUE <> ''
                           AND CODE IN (SELECT code FROM _ident_codes))
                        - (SELECT count(*) FROM rej_observations WHERE _ident_value)"""
            ).fetchall()[0][0]
            if n_ident:
                staged.notes.append(
                    f"observations: {n_ident} identifying value(s) dropped (e.g. LOINC "
                    "56799-0 Address); the rows are kept without a value"
                )
        _release(con, table)
        done(table)

    _insert_patients(con, source, shift)
    done("patients")
    rejections = _record_rejections(con, staged, source, todo)
    return {t: counts[t] for t in LOAD_ORDER if t in counts}, rejections


def _record_rejections(con, staged: Staged, source: str, todo: list[str]) -> list[Rejection]:
    for table in todo:
        con.execute(
            "INSERT INTO rejected SELECT ?, ?, _file, _line, _field, _reason "  # noqa: S608 (identifiers from allowlists, values bound)
            f"FROM rej_{table}",
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
                f"SELECT _file, _line, _field, _reason FROM rej_{table} "  # noqa: S608 (identifiers from allowlists, values bound)
                "ORDER BY _file, _line LIMIT 1000"
            ).fetchall()
        ]
    return rejections


def _insert_patients(con, source: str, shift: str | None) -> None:
    """Write valid patients with their primary organization (most encounters; ties: latest
    visit, then id), computed from the encounters just stored."""
    birth = shifted("BIRTHDATE", "date", "m.shift" if shift else None).replace("_t_", "c._t_")
    death = shifted("DEATHDATE", "date", "m.shift" if shift else None).replace("_t_", "c._t_")
    con.execute(
        f"""INSERT INTO patients SELECT m.pid, ?, {birth}, {death},
            CASE upper(trim(c.GENDER)) WHEN 'M' THEN 'M' WHEN 'F' THEN 'F' END,
            {text('c.RACE')}, {text('c.ETHNICITY')}, {state_sql('c.STATE')},
            {zip3_sql('c.ZIP')}, po.org
        FROM chk_patients c JOIN pmap m ON m.raw = c.Id
        LEFT JOIN (
            SELECT patient_id AS pid, organization_id AS org FROM encounters
            WHERE patient_id IN (SELECT pid FROM pmap) AND organization_id IS NOT NULL
            GROUP BY patient_id, organization_id
            QUALIFY row_number() OVER (PARTITION BY patient_id
                    ORDER BY count(*) DESC, max(start) DESC, organization_id) = 1
        ) po ON po.pid = m.pid
        WHERE NOT c._bad""",  # noqa: S608 (identifiers from allowlists, values bound)
        [source],
    )


def _count(con, table: str, staged: Staged, read: int) -> TableCount:
    rej = con.execute(f"SELECT count(*) FROM rej_{table}").fetchall()[0][0]  # noqa: S608 (identifiers from allowlists, values bound)
    extra = sum(1 for r in staged.read_rejects if r[0] == table)
    return TableCount(read + extra, read - rej, rej + extra)
