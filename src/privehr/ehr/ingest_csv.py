"""Read a Synthea CSV export directory into staging tables (any format version, by header).

Versions differ (see each ``PROVENANCE.md``); this reader looks only at the header of each
file, never at a version string, so an unseen version that follows the same rules loads too:

- encounters without ``ORGANIZATION`` (v2.5): ``PROVIDER`` holds the organization id and the
  clinician is unknown; with ``ORGANIZATION`` (3.x): ``PROVIDER`` is the clinician.
- procedures ``DATE`` (v2.5) or ``START,STOP`` (3.x); observations with/without ``CATEGORY``;
  conditions/procedures with/without ``SYSTEM``; dates ``YYYY-MM-DD`` or ISO with ``Z``.
- ``.csv`` or ``.csv.gz``, LF or CRLF, optional UTF-8 BOM.

Only whitelisted columns are staged (``CANON``); identifying columns are parsed by DuckDB's
CSV reader but never selected, so they do not reach any table. Each table is read once, by
DuckDB's parallel CSV reader, straight into its staged form (dates parsed, blank flags:
``ingest_rules.staged_items``); the copy's row order gives the line numbers. A line that cannot be split
into the header's columns is reported (file, physical line, reason), never copied.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import zlib
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from privehr.ehr.errors import EhrColumnError, EhrEncodingError, EhrSourceError
from privehr.ehr.ingest_load import CANON, Staged
from privehr.ehr.ingest_rules import staged_items
from privehr.ehr.schema import REQUIRED_SOURCE_TABLES

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": ("Id", "BIRTHDATE"),
    "encounters": ("Id", "START", "PATIENT"),
    "conditions": ("START", "PATIENT", "CODE"),
    "observations": ("DATE", "PATIENT", "CODE", "VALUE"),
    "medications": ("START", "PATIENT", "CODE"),
    "procedures": ("START", "PATIENT", "CODE"),  # START may come from DATE (v2.5)
    "immunizations": ("DATE", "PATIENT", "CODE"),
    "organizations": ("Id",),
}
# Never selected, whatever the table: direct identifiers and geography finer than the state.
IDENTIFYING = frozenset(
    ["SSN", "DRIVERS", "PASSPORT", "PREFIX", "FIRST", "MIDDLE", "LAST", "SUFFIX", "MAIDEN", "BIRTHPLACE", "ADDRESS", "COUNTY", "FIPS", "LAT", "LON", "PHONE", "MEMBERID", "OWNER_NAME", "UDI"]
)
# CSV read buffer: 64 MiB instead of DuckDB's default. The staged copy keeps file order
# (its rowids give the line numbers), and DuckDB merges the reader's batches in order; with
# larger batches there is less to merge (measured: the staging of 1.6M observation rows took
# ~1.1 instead of ~1.6 CPU s and ~30% less wall time; no cost on small files).
_BUFFER = 1 << 26
_REASONS = {
    "MISSING COLUMNS": "too few columns",
    "TOO MANY COLUMNS": "too many columns",
    "UNQUOTED VALUE": "malformed quoting",
    "LINE SIZE OVER MAXIMUM": "line too long",
}


def table_files(src: Path) -> dict[str, Path]:
    """Map table name -> file for every ``<table>.csv`` / ``<table>.csv.gz`` in ``src``."""
    found: dict[str, Path] = {}
    for p in sorted(src.iterdir()):
        name = p.name
        if not p.is_file():
            continue
        if name.lower().endswith(".csv.gz"):
            table = name[: -len(".csv.gz")].lower()
        elif name.lower().endswith(".csv"):
            table = name[: -len(".csv")].lower()
        else:
            continue
        if table in found:
            raise EhrSourceError(
                name, None, None,
                f"table {table!r} is present twice ({found[table].name} and {name})",
                "keep one file per table (either .csv or .csv.gz)",
            )  # fmt: skip
        found[table] = p
    return found


def is_csv_export(src: Path) -> bool:
    return any(t == "patients" for t in table_files(src))


def read_header(path: Path) -> list[str]:
    """First line of a (possibly gzipped) CSV as column names; clear errors for bad files."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            line = fh.readline()
    except (OSError, EOFError, zlib.error) as exc:
        raise EhrEncodingError(
            path.name, None, None,
            f"cannot be read as gzip ({type(exc).__name__})",
            "re-compress the file with gzip (check it with `gzip -t`) or ship it uncompressed",
        ) from None  # fmt: skip
    if not line.strip():
        raise EhrColumnError(
            path.name, 1, None, "file is empty: no header line",
            "re-export the table; a table without rows still needs its header line",
        )  # fmt: skip
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise EhrEncodingError(
            path.name, 1, None, "header is not UTF-8",
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        ) from None  # fmt: skip
    cols = next(csv.reader([text.rstrip("\r\n")]))
    return [c.strip() for c in cols]


def check_utf8(path: Path, chunk: int = 1 << 22) -> None:
    """Raise ``EhrEncodingError`` (with the line) unless the whole file is valid UTF-8.

    DuckDB validates only the columns a query reads; a latin-1 name in a column we drop
    would pass unnoticed, yet it means the export is not what it claims to be. Pure-ASCII
    blocks (nearly all of a Synthea export) are recognised by ``bytes.isascii`` (~10x faster
    than decoding) and lines are counted only to name the line of an error (measured: the
    decode-and-count of every block took ~0.6 CPU s per 450 MB).
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    dec = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        with opener(path, "rb") as fh:
            while block := fh.read(chunk):
                pending = len(dec.getstate()[0])  # bytes of a character split by the read
                if pending or not block.isascii():
                    try:
                        dec.decode(block)
                    except UnicodeDecodeError as exc:
                        line = _line_at(opener, path, offset - pending + exc.start)
                        raise EhrEncodingError(
                            path.name, line, None, "not UTF-8",
                            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
                        ) from None  # fmt: skip
                offset += len(block)
            dec.decode(b"", final=True)
    except (OSError, EOFError, zlib.error) as exc:
        raise EhrEncodingError(
            path.name, None, None,
            f"the file cannot be read to its end (truncated or corrupt gzip: {type(exc).__name__})",
            "re-export or re-compress the file (check it with `gzip -t`)",
        ) from None  # fmt: skip
    except UnicodeDecodeError:
        raise EhrEncodingError(
            path.name, _line_at(opener, path, offset), None,
            "not UTF-8 (file ends inside a character)",
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        ) from None  # fmt: skip


def _line_at(opener, path: Path, pos: int, chunk: int = 1 << 22) -> int:
    """1-based line holding byte ``pos`` of the (decompressed) file: read again, on error only."""
    lines = 0
    with opener(path, "rb") as fh:
        while pos > 0 and (block := fh.read(min(chunk, pos))):
            lines += block.count(b"\n")
            pos -= len(block)
    return lines + 1


def _columns_sql(header: list[str]) -> tuple[str, list[str]]:
    seen: dict[str, int] = {}
    names = []
    for c in header:
        n = seen.get(c, 0)
        seen[c] = n + 1
        names.append(c if n == 0 else f"{c}__{n}")
    body = ", ".join("'" + n.replace("'", "''") + "': 'VARCHAR'" for n in names)
    return "{" + body + "}", names


def _select_list(table: str, header: list[str], notes: list[str], fname: str) -> list[str]:
    """SQL select items producing CANON[table] from a file with this header."""
    have = set(header)
    source_of = {c: c for c in CANON[table] if c in have}
    if table == "procedures" and "START" not in have and "DATE" in have:
        source_of["START"] = "DATE"
    if table == "encounters" and "ORGANIZATION" not in have and "PROVIDER" in have:
        source_of["ORGANIZATION"] = "PROVIDER"
        source_of.pop("PROVIDER")
        notes.append(
            "encounters: no ORGANIZATION column (v2.5 layout): PROVIDER read as the "
            "organization id, clinician unknown"
        )
    for req in REQUIRED_COLUMNS.get(table, ()):
        if req not in source_of:
            extra = " (or DATE)" if (table, req) == ("procedures", "START") else ""
            raise EhrColumnError(
                fname, 1, req,
                f"required column {req}{extra} is missing from the header of table {table}",
                f"re-export {table} with a {req} column (Synthea CSV exporter layout)",
            )  # fmt: skip
    used = set(source_of.values())
    finer = {"CITY"} if table == "patients" else set()
    dropped = sorted(c for c in header if c in IDENTIFYING or c in finer)
    ignored = sorted(c for c in header if c not in used and c not in dropped)
    if dropped:
        notes.append(f"{table}: identifying columns dropped at the door: {', '.join(dropped)}")
    if table == "patients" and "ZIP" in used:
        notes.append("patients: ZIP reduced to its first 3 digits (zip3)")
    if ignored:
        notes.append(f"{table}: columns not used: {', '.join(ignored)}")
    return [
        f'"{source_of[c]}" AS "{c}"' if c in source_of else f'NULL::VARCHAR AS "{c}"'
        for c in CANON[table]
    ]


def detect_version(headers: dict[str, list[str]]) -> str:
    """A label for the summary, derived from headers (the loader never branches on it)."""
    pat = set(headers.get("patients", []))
    enc = set(headers.get("encounters", []))
    cond = set(headers.get("conditions", []))
    if "ORGANIZATION" not in enc:
        return "synthea-csv v2.5 layout (encounters.PROVIDER = organization)"
    if "MIDDLE" in pat and "SYSTEM" in cond:
        return "synthea-csv 3.x ~2025 layout (MIDDLE + SYSTEM)"
    if "MIDDLE" in pat:
        return "synthea-csv 3.x mid-2024 layout (MIDDLE, no SYSTEM)"
    if "FIPS" in pat:
        return "synthea-csv 3.1-era layout (FIPS, no MIDDLE)"
    return "synthea-csv, unrecognised layout (read by header)"


def _physical_lines(n_rows: int, bad_lines: np.ndarray) -> np.ndarray:
    """Physical line of each parsed row, given the physical lines the reader skipped."""
    k = np.arange(n_rows, dtype=np.int64)
    bad = np.sort(bad_lines.astype(np.int64))
    g = k + 2
    for _ in range(len(bad) + 1):
        nxt = k + 2 + np.searchsorted(bad, g, side="right")
        if np.array_equal(nxt, g):
            break
        g = nxt
    return g


def stage_csv(con, src: Path) -> Staged:
    """Create ``stg_<table>`` TEMP views for every table the store uses."""
    files = table_files(src)
    missing = [t for t in REQUIRED_SOURCE_TABLES if t not in files]
    if missing:
        raise EhrSourceError(
            src.name, None, None,
            f"required table(s) missing: {', '.join(t + '.csv' for t in missing)}",
            "export patients, encounters and conditions (as .csv or .csv.gz) into this directory",
        )  # fmt: skip
    staged = Staged(kind="csv", format_version="")
    headers: dict[str, list[str]] = {}
    # Every header, column and byte is checked before anything is read into DuckDB; tables
    # are then read one at a time, when the loader reaches them (peak memory ~ one table).
    for table, path in files.items():
        if table not in CANON:
            continue
        header = read_header(path)
        check_utf8(path)
        headers[table] = header
        columns, names = _columns_sql(header)
        items = _select_list(table, names, staged.notes, path.name)
        staged.tables.append(table)
        staged.pending[table] = partial(_stage_file, con, table, path, columns, items, staged)
    staged.format_version = detect_version(headers)
    staged.ensure("patients")
    if con.execute("SELECT count(*) FROM raw_patients").fetchall()[0][0] == 0:
        raise EhrSourceError(
            files["patients"].name, 2, None, "the patients table has a header but no rows",
            "re-export with at least one patient (Synthea -p N)",
        )  # fmt: skip
    unused = sorted(t for t in files if t not in CANON)
    if unused:
        staged.notes.append(f"tables not used: {', '.join(unused)}")
    absent = sorted(t for t in CANON if t not in files)
    if absent:
        staged.notes.append(f"optional tables absent: {', '.join(absent)}")
    return staged


def _stage_file(con, table: str, path: Path, columns: str, items: list[str], staged: Staged) -> None:
    fname = path.name
    con.execute("DROP TABLE IF EXISTS _rej_errors")
    con.execute("DROP TABLE IF EXISTS _rej_scans")
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE raw_{table} AS
            SELECT {', '.join(staged_items(table, CANON[table]))} FROM (
            SELECT {', '.join(items)}
            FROM read_csv(?, header = true, auto_detect = false, columns = {columns},
                          delim = ',', quote = '"', escape = '"', store_rejects = true,
                          rejects_table = '_rej_errors', rejects_scan = '_rej_scans',
                          buffer_size = {_BUFFER}))""",  # noqa: S608 (identifiers from allowlists, values bound)
            [str(path)],
        )
    except duckdb.IOException as exc:
        raise EhrEncodingError(
            fname, None, None,
            "the file cannot be read to its end (truncated or corrupt gzip stream)"
            if "gzip" in str(exc).lower() else "the file cannot be read",
            "re-export or re-compress the file (check it with `gzip -t`)",
        ) from None  # fmt: skip
    rej = con.execute(
        "SELECT line, error_type, column_name FROM _rej_errors ORDER BY line"
    ).fetchall()
    enc = [r for r in rej if "ENCODING" in r[1].upper() or "UNICODE" in r[1].upper()]
    if enc:
        raise EhrEncodingError(
            fname, int(enc[0][0]), enc[0][2], f"not UTF-8 ({len(enc)} line(s) affected)",
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        )  # fmt: skip
    bad_lines = sorted({int(r[0]) for r in rej})
    for line in bad_lines:
        kinds = sorted({r[1] for r in rej if int(r[0]) == line})
        reason = "; ".join(_REASONS.get(k, "unparsable line") for k in kinds)
        staged.read_rejects.append((table, fname, line, None, reason))
    lit = fname.replace("'", "''")
    # rowid follows insertion (= file) order; inside a transaction a new temp table's rowids
    # start at a large offset, so lines count from the table's smallest rowid.
    base = f"(SELECT min(rowid) FROM raw_{table})"  # noqa: S608 (identifiers from allowlists)
    if table != "patients" and con.execute(f"SELECT count(*) FROM raw_{table}").fetchall()[0][0] == 0:  # noqa: S608 (identifiers from allowlists, values bound)
        staged.notes.append(f"{table}: header only (0 rows)")
    if not bad_lines:
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW stg_{table} AS
            SELECT *, '{lit}' AS _file, rowid - {base} + 2 AS _line FROM raw_{table}"""  # noqa: S608 (identifiers from allowlists, values bound)
        )
        return
    n = con.execute(f"SELECT count(*) FROM raw_{table}").fetchall()[0][0]  # noqa: S608 (identifiers from allowlists, values bound)
    lines = pd.DataFrame({"k": np.arange(n), "line": _physical_lines(n, np.array(bad_lines))})
    con.register("_df_lines", lines)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE stg_{table} AS
        SELECT r.*, '{lit}' AS _file, l.line AS _line FROM
        (SELECT *, rowid - {base} AS _k FROM raw_{table}) r JOIN _df_lines l ON l.k = r._k"""  # noqa: S608 (identifiers from allowlists, values bound)
    )
    con.unregister("_df_lines")
