"""The site's local store: open it, keep its secret, ingest exports into it, describe it.

``ingest`` is the one entry point the CLI calls (``privehr ingest SOURCE --store ...``). It
detects a Synthea CSV export directory or a directory of Synthea FHIR R4 bundles, stages the
whitelisted fields, validates every row, and replaces everything previously ingested under
the same source label in one transaction (re-ingest never duplicates; a failed or strict-
mode-refused ingest leaves the store as it was).

The store is a HIPAA *limited data set* (dates kept, optionally shifted per patient), not
Safe Harbor; see ``privehr.ehr.deid`` for what is and is not protected. The site secret
(``<store>.secret``, 32 random bytes, mode 0600) keys pseudonyms and date shifts; it never
leaves the site and is never logged. Losing it means a re-ingest produces new pseudonyms.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from privehr.ehr import schema
from privehr.ehr.deid import SECRET_BYTES, Pseudonymizer
from privehr.ehr.errors import EhrSourceError, EhrStrictError
from privehr.ehr.ingest_csv import is_csv_export, stage_csv
from privehr.ehr.ingest_fhir import is_fhir_dir, stage_fhir
from privehr.ehr.ingest_load import CANON, EVENT_DATE, TableCount, load

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def open_store(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the DuckDB store with every table of ``schema``.

    The session time zone is UTC: every timestamp in the store is UTC.
    """
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    schema.create_all(con)
    return con


def secret_path(store_path: str | Path) -> Path:
    p = Path(store_path)
    return p.with_name(p.name + ".secret")


def site_secret(store_path: str | Path) -> bytes:
    """Load ``<store>.secret`` or create it (32 bytes from ``os.urandom``, mode 0600).

    Refuses a secret file of the wrong size or one readable by group/others, because a
    pseudonym is only as private as this key.
    """
    path = secret_path(store_path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(SECRET_BYTES))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(
            f"site secret {path.name} has mode {oct(mode)}; it must be readable by its owner "
            f"only. Fix: chmod 600 {path}"
        )
    data = path.read_bytes()
    if len(data) != SECRET_BYTES:
        raise ValueError(
            f"site secret {path.name} holds {len(data)} bytes, expected {SECRET_BYTES}. Fix: "
            "restore the original file from backup (a new secret changes every pseudonym)"
        )
    return data


@dataclass
class IngestSummary:
    """What one ``ingest`` call did; ``to_dict()`` is JSON-able (for ``--json``).

    Per table: rows_read = rows_stored + rows_rejected. Notes list ignored tables/columns
    and identifying columns dropped (names only, never values or FHIR file names).
    """

    source: str
    kind: str
    format_version: str
    tables: dict[str, TableCount]
    n_patients: int
    date_min: str | None
    date_max: str | None
    date_shift_days: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tables"] = {t: asdict(c) for t, c in self.tables.items()}
        d["rows_rejected_total"] = sum(c.rows_rejected for c in self.tables.values())
        return d


def _label(source: Path, site: str | None) -> str:
    label = site if site is not None else source.resolve().name
    if not label or not label.strip():
        raise EhrSourceError(
            str(source), None, "site", "the source label is empty",
            "pass --site NAME (the label under which this export's rows are stored)",
        )  # fmt: skip
    return label.strip()


def detect_kind(source: Path) -> str:
    """'csv' (a Synthea CSV export) or 'fhir' (a directory of bundles); clear error otherwise."""
    if not source.is_dir():
        raise EhrSourceError(
            str(source), None, None, "is not a directory",
            "pass the directory of a Synthea CSV export or of FHIR bundles",
        )  # fmt: skip
    if is_csv_export(source):
        return "csv"
    if is_fhir_dir(source):
        return "fhir"
    if not any(source.iterdir()):
        raise EhrSourceError(
            source.name, None, None, "the directory is empty",
            "point to a Synthea output directory (output/csv or output/fhir)",
        )  # fmt: skip
    raise EhrSourceError(
        source.name, None, None,
        "neither a Synthea CSV export (no patients.csv[.gz]) nor FHIR bundles (no *.json)",
        "point to a Synthea output directory (output/csv or output/fhir)",
    )  # fmt: skip


def _drop_staging(con) -> None:
    for (name, kind) in con.execute(
        """SELECT table_name, table_type FROM information_schema.tables
        WHERE table_schema = 'main' AND table_catalog = 'temp'"""
    ).fetchall():
        what = "VIEW" if kind == "VIEW" else "TABLE"
        con.execute(f'DROP {what} IF EXISTS temp.main."{name}"')


def _delete_source(con, label: str) -> None:
    pids = "SELECT patient_id FROM patients WHERE source = ?"
    for t in ("encounters", "conditions", "observations", "medications", "procedures",
              "immunizations"):  # fmt: skip
        con.execute(f"DELETE FROM {t} WHERE patient_id IN ({pids})", [label])  # noqa: S608 (identifiers from allowlists, values bound)
    for t in ("patients", "organizations", "rejected", "ingest_counts"):
        con.execute(f"DELETE FROM {t} WHERE source = ?", [label])  # noqa: S608 (identifiers from allowlists, values bound)


def _date_range(con, where_pid: str, params: list) -> tuple[str | None, str | None]:
    parts = " UNION ALL ".join(
        f"SELECT min(CAST({c} AS DATE)) lo, max(CAST({c} AS DATE)) hi FROM {t} WHERE {where_pid}"  # noqa: S608 (identifiers from allowlists, values bound)
        for t, c in EVENT_DATE.items()
    )
    lo, hi = con.execute(f"SELECT min(lo), max(hi) FROM ({parts})", params * len(EVENT_DATE)).fetchall()[0]  # noqa: S608 (identifiers from allowlists, values bound)
    return (str(lo) if lo else None, str(hi) if hi else None)


def ingest(
    source: str | Path,
    store: str | Path,
    *,
    site: str | None = None,
    strict: bool = False,
    date_shift_days: int = 0,
    progress: Progress | None = None,
    secret: bytes | None = None,
    memory_limit: str | None = "2GB",
) -> IngestSummary:
    """Load one export directory into ``store``; replace that source's earlier rows.

    ``site`` is the source label (default: the directory name). ``date_shift_days`` > 0
    moves each patient's dates by a keyed amount in [-d, d]. ``progress(table, done, total)``
    is called after each table. ``secret`` overrides ``<store>.secret`` (tests, key
    rotation); by default the store's own secret is loaded or created. ``memory_limit``
    caps DuckDB's memory for this ingest (it spills staging tables to ``<store>.tmp``
    beyond it); ``None`` keeps DuckDB's default (80% of RAM).
    """
    src = Path(source)
    kind = detect_kind(src)
    label = _label(src, site)
    pz = Pseudonymizer(secret if secret is not None else site_secret(store),
                       max_shift_days=date_shift_days)  # fmt: skip
    con = open_store(store)
    try:
        if memory_limit is not None:
            con.execute("SET memory_limit = ?", [memory_limit])
        # DuckDB would turn a column read only through try_cast into a typed CSV column, and
        # a value that does not convert would then vanish into the reader's rejects instead
        # of being rejected with its field and reason.
        con.execute("SET disabled_optimizers = 'type_pushdown'")
        _drop_staging(con)
        staged = stage_csv(con, src) if kind == "csv" else stage_fhir(con, src)
        con.begin()
        try:
            _delete_source(con, label)
            counts, rejections = load(con, staged, label, pz, progress)
            if strict and rejections:
                raise EhrStrictError(label, rejections)
            for t, c in counts.items():
                con.execute(
                    "INSERT INTO ingest_counts VALUES (?, ?, ?, ?, ?)",
                    [label, t, c.rows_read, c.rows_stored, c.rows_rejected],
                )
            con.execute(
                "INSERT OR REPLACE INTO store_meta VALUES (?, ?)",
                [f"source:{label}:date_shift_days", str(date_shift_days)],
            )
            n_pat = con.execute("SELECT count(*) FROM patients WHERE source = ?", [label]).fetchall()[0][0]
            lo, hi = _date_range(con, "patient_id IN (SELECT patient_id FROM patients WHERE source = ?)", [label])
            con.commit()
        except BaseException:
            con.rollback()
            raise
    finally:
        _drop_staging(con)
        con.close()
    summary = IngestSummary(
        source=label, kind=kind, format_version=staged.format_version, tables=counts,
        n_patients=int(n_pat), date_min=lo, date_max=hi, date_shift_days=date_shift_days,
        notes=staged.notes,
    )  # fmt: skip
    logger.info(
        "ingested source %s (%s): %d patients, %d rows stored, %d rejected",
        label, kind, n_pat,
        sum(c.rows_stored for c in counts.values()),
        sum(c.rows_rejected for c in counts.values()),
    )  # fmt: skip
    return summary


def describe(con) -> dict:
    """Counts per table, number of patients, sources and date range of a whole store."""
    tables = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in CANON}  # noqa: S608 (identifiers from allowlists, values bound)
    tables["rejected"] = con.execute("SELECT count(*) FROM rejected").fetchall()[0][0]
    sources = dict(
        con.execute("SELECT source, count(*) FROM patients GROUP BY source ORDER BY source").fetchall()
    )
    lo, hi = _date_range(con, "TRUE", [])
    return {
        "schema_version": schema.STORE_SCHEMA_VERSION,
        "tables": tables,
        "n_patients": tables["patients"],
        "sources": sources,
        "date_min": lo,
        "date_max": hi,
    }
