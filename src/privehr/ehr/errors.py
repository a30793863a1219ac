"""Errors raised while reading an EHR export: each one says where, what, and what to do.

Every input error carries the file (for FHIR bundles: a short hash of the file name, because
Synthea puts patient names in bundle file names), the line (CSV: 1-based physical line; FHIR:
0-based ``entry`` index), the field, a message and a fix. None of them ever quotes a cell
value: a value may be an identifier, and errors end up in logs and terminals.

The subclasses tell the user what they can do:

- ``EhrSourceError``    the export as a whole is unusable (empty dir, missing required table).
- ``EhrColumnError``    a required column is missing from a table's header.
- ``EhrEncodingError``  a file is not UTF-8, or a gzip stream is truncated/corrupt: re-export.
- ``EhrFhirError``      a FHIR bundle is not valid JSON or not a Bundle of resources.
- ``EhrStrictError``    ``strict=True`` and some rows were rejected (the store is unchanged).
"""

from __future__ import annotations


class EhrError(Exception):
    """Base class of every error raised by ``privehr.ehr`` ingestion."""


class EhrInputError(EhrError):
    """A problem in the input, located by file, line and field, with a fix.

    ``str(err)`` reads ``<file>, line <n>, field <f>: <message>. Fix: <fix>`` (parts that are
    unknown are left out), so a CLI can print it as is.
    """

    def __init__(
        self,
        file: str | None,
        line: int | None,
        field: str | None,
        message: str,
        fix: str,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file is not None:
            where.append(str(self.file))
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field}")
        head = ", ".join(where)
        text = f"{head}: {self.message}" if head else self.message
        return f"{text}. Fix: {self.fix}"


class EhrSourceError(EhrInputError):
    """The source directory cannot be ingested as a whole (empty, unknown layout, no table)."""


class EhrColumnError(EhrInputError):
    """A table lacks a column the store needs; names the file and the column."""


class EhrEncodingError(EhrInputError):
    """A file is not UTF-8 or its gzip stream is truncated or corrupt."""


class EhrFhirError(EhrInputError):
    """A FHIR bundle is malformed (invalid JSON, not a Bundle, entry without a resource)."""


class EhrStrictError(EhrError):
    """Raised by ``ingest(..., strict=True)`` when any row was rejected; nothing was written.

    ``rejections`` holds (table, file, line, field, reason) tuples, never row contents.
    """

    def __init__(self, source: str, rejections: list[tuple[str, str, int | None, str, str]]):
        self.source = source
        self.rejections = rejections
        shown = "; ".join(
            f"{t} {f} line {ln} field {fd}: {r}" for t, f, ln, fd, r in rejections[:5]
        )
        more = f" (and {len(rejections) - 5} more)" if len(rejections) > 5 else ""
        super().__init__(
            f"strict mode: {len(rejections)} row(s) of source {source!r} were rejected: "
            f"{shown}{more}. Fix: correct those rows in the export, or ingest without --strict "
            "and inspect the 'rejected' table"
        )
