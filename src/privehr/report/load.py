"""Read a run directory: the only input of the report and the slides.

Why a run directory alone: a report must be reproducible by anyone holding the run's files,
without access to any site's store or to the process that ran the study. Everything shown is
read here; nothing is recomputed from patients' data. The privacy ledgers are read through
:class:`privehr.privacy.ledger.PrivacyLedger` (never parsed by hand) so the report and the
ledger agree on what a release is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privehr.privacy.errors import LedgerError
from privehr.privacy.ledger import LedgerEntry, PrivacyLedger

LEDGER_SUFFIX = ".ledger.jsonl"


class ReportInputError(ValueError):
    """The run directory lacks a file the report needs, or a file is not what it should be."""

    def __init__(self, field_name: str, value: Any, rule: str, fix: str) -> None:
        super().__init__(f"{field_name}={value!r}: {rule}. Fix: {fix}")
        self.field_name, self.value, self.rule, self.fix = field_name, value, rule, fix


@dataclass(frozen=True)
class SiteLedger:
    """One site's ledger as read from ``stores/<site>.duckdb.ledger.jsonl``."""

    site: str
    path: Path
    entries: tuple[LedgerEntry, ...]
    shared_patient_factor: int
    delta: float


@dataclass(frozen=True)
class RunData:
    """Everything the report reads from a run directory (immutable once loaded)."""

    run_dir: Path
    metrics: dict[str, Any]
    rounds: tuple[dict[str, Any], ...] = ()
    ledgers: dict[str, SiteLedger] = field(default_factory=dict)
    resolved_config: dict[str, Any] | None = None
    ledger_errors: dict[str, str] = field(default_factory=dict)

    @property
    def configs(self) -> list[dict[str, Any]]:
        return list(self.metrics.get("configs", []))

    @property
    def study_id(self) -> str:
        return str(self.metrics.get("study", {}).get("id", ""))

    def config_index(self, name: str) -> int:
        for i, c in enumerate(self.configs):
            if c.get("name") == name:
                return i
        raise KeyError(name)


def _json_constant(token: str) -> float:
    # metrics.json may carry Infinity for a budget of ∞ (config.resolved.json does).
    return {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}[token]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise ReportInputError(str(path), f"line {exc.lineno}", "is not valid JSON",
                               "re-run the study to rewrite the file") from None


def _read_rounds(path: Path) -> tuple[dict[str, Any], ...]:
    if not path.is_file():
        return ()
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise ReportInputError(str(path), f"line {lineno}", "is not a JSON object",
                                   "re-run the study (rounds.jsonl is rewritten)") from None
    return tuple(rows)


def _site_of(path: Path) -> str:
    name = path.name[: -len(LEDGER_SUFFIX)]
    return name[: -len(".duckdb")] if name.endswith(".duckdb") else name


def read_ledgers(run_dir: Path, sites: list[str]) -> tuple[dict[str, SiteLedger], dict[str, str]]:
    """Ledgers of the study's sites under ``RUN_DIR/stores``, and why any could not be read.

    Missing ledgers are skipped (a run may not ship its stores); unreadable ones are reported,
    never silently dropped, so the report can say so.
    """
    out: dict[str, SiteLedger] = {}
    errors: dict[str, str] = {}
    stores = run_dir / "stores"
    if not stores.is_dir():
        return out, errors
    wanted = set(sites)
    for path in sorted(stores.glob(f"*{LEDGER_SUFFIX}")):
        if path.stat().st_size == 0:
            continue
        site = _site_of(path)
        if site not in wanted:
            continue
        try:
            ledger = PrivacyLedger(path)
            entries = tuple(ledger.entries())
        except (LedgerError, OSError, ValueError) as exc:
            errors[site] = f"{type(exc).__name__}: {exc}"
            continue
        out[site] = SiteLedger(site=site, path=path, entries=entries,
                               shared_patient_factor=ledger.shared_patient_factor,
                               delta=ledger.delta)
    return out, errors


def load_run(run_dir: Path | str) -> RunData:
    """Read ``metrics.json`` (required), ``rounds.jsonl``, ``config.resolved.json`` and ledgers."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise ReportInputError("run_dir", str(run_dir), "must contain metrics.json",
                               "point at a directory written by `privehr study` or `privehr demo`")
    metrics = _read_json(metrics_path)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("configs"), list):
        raise ReportInputError("metrics.json", type(metrics).__name__,
                               "must be an object with a 'configs' list",
                               "re-run the study with this privehr version")
    resolved_path = run_dir / "config.resolved.json"
    resolved = _read_json(resolved_path) if resolved_path.is_file() else None
    sites = [s["site"] for s in metrics.get("sites", [])]
    ledgers, errors = read_ledgers(run_dir, sites)
    return RunData(run_dir=run_dir, metrics=metrics, rounds=_read_rounds(run_dir / "rounds.jsonl"),
                   ledgers=ledgers, resolved_config=resolved, ledger_errors=errors)
