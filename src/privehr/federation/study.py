"""A study: ingest each export into its site's store, build the task, run the grid, write RUN_DIR.

The study runner is the simulation harness: it owns every site's data only to hand each site
object its *own* tensors; coordinator and sites then talk through bytes alone. Centralised
training (pooled rows) exists here purely as the non-private upper bound and is labelled so.
"""

from __future__ import annotations

import glob
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from privehr.federation.config import StudyConfig
from privehr.federation.site import SiteData

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass
class PreparedSite:
    name: str
    store: Path
    data: SiteData
    n_patients: int  # patients in the site's store (site size)
    prevalence: float  # outcome prevalence among the task's examples
    cohort_patients: int = 0  # patients with at least one example in the task


@dataclass
class PreparedStudy:
    config: StudyConfig
    sites: list[PreparedSite]
    feature_names: list[str]
    excluded: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    outside: dict[str, Any] = field(default_factory=dict)  # TaskData of sites left out


def resolve_exports(patterns: list[str], base: Path) -> list[Path]:
    out: list[Path] = []
    for pat in patterns:
        full = pat if Path(pat).is_absolute() else str(base / pat)
        matches = sorted(Path(p) for p in glob.glob(full) if Path(p).is_dir())
        if not matches:
            raise FileNotFoundError(f"data.exports entry {pat!r} matched no directory (looked in {base})")
        out.extend(matches)
    return out


def prepare(cfg: StudyConfig, run_dir: Path, base: Path, progress: Progress | None = None) -> PreparedStudy:
    """Ingest (each export into its own store), build the task at each site, split train/test."""
    from privehr.ehr.features import build_task_data
    from privehr.ehr.store import ingest, open_store
    from privehr.ehr.tasks import get_task
    from privehr.learning.split import patient_split

    exports = resolve_exports(cfg.data.exports, base)
    store_dir = Path(cfg.data.store_dir)
    store_dir = store_dir if store_dir.is_absolute() else run_dir / store_dir
    store_dir.mkdir(parents=True, exist_ok=True)
    task = get_task(cfg.study.task)
    spec = None  # the default clinical vocabulary shipped with the package
    timings: dict[str, float] = {"ingest": 0.0, "task": 0.0}
    sites: list[PreparedSite] = []
    excluded: list[dict[str, Any]] = []
    outside: dict[str, Any] = {}
    names: list[str] | None = None
    for i, export in enumerate(exports):
        name = export.name
        store = store_dir / f"{name}.duckdb"
        t0 = time.perf_counter()
        fp = _fingerprint(export)
        if _stored_fingerprint(store, name) != fp:
            ingest(export, store, site=name)
        t1 = time.perf_counter()
        con = open_store(store)
        try:
            con.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [f"fingerprint:{name}", fp])
            td = build_task_data(con, task, spec)
            order = np.lexsort((td.index_date, td.patient_id))  # row order independent of the query plan
            td = td.subset(order) if not np.array_equal(order, np.arange(len(order))) else td
            store_patients = int(con.execute("SELECT count(*) FROM patients").fetchone()[0])
        finally:
            con.close()
        timings["ingest"] += t1 - t0
        timings["task"] += time.perf_counter() - t1
        if progress:
            progress("prepare", i + 1, len(exports))
        n_pat = store_patients
        if n_pat < cfg.study.min_site_patients or len(np.unique(td.y)) < 2:
            why = (f"{n_pat} patients < minimum {cfg.study.min_site_patients}"
                   if n_pat < cfg.study.min_site_patients else "only one outcome class in the task's cohort")
            excluded.append({"site": name, "patients": n_pat, "reason": why})
            outside[name] = td  # kept for demos that need a site outside the federation
            continue
        names = names or list(td.feature_names)
        if list(td.feature_names) != names:
            raise RuntimeError(f"site {name}: feature names differ from the other sites (FeatureSpec mismatch)")
        tr, te = patient_split(td.patient_id, td.y, test_frac=cfg.study.test_fraction, seed=cfg.study.seed + i)
        test = td.subset(te)
        data = SiteData(
            X_train=td.X[tr].astype(np.float64), y_train=td.y[tr].astype(np.float64), pid_train=td.patient_id[tr],
            X_test=test.X.astype(np.float64), y_test=test.y.astype(np.float64), pid_test=test.patient_id,
            groups_test={k: np.asarray(v) for k, v in test.groups.items()},
        )
        sites.append(PreparedSite(name, store, data, n_pat, float(np.mean(td.y)), int(len(np.unique(td.patient_id)))))
    if len(sites) < 1:
        raise RuntimeError("no site is large enough for this task; lower study.min_site_patients or add data")
    return PreparedStudy(cfg, sites, names or [], excluded, timings, outside)


def _fingerprint(export: Path) -> str:
    """Names, sizes and mtimes of an export's files: re-ingest only when the export changed."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(export.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _stored_fingerprint(store: Path, name: str) -> str | None:
    if not store.exists():
        return None
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        row = con.execute("SELECT value FROM store_meta WHERE key = ?", [f"fingerprint:{name}"]).fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return row[0] if row else None


def site_delta(n_patients: int) -> float:
    """δ ≤ min(1e-5, 1/(10 n)) — never 1/n, which permits releasing one record outright."""
    return min(1e-5, 1.0 / (10.0 * max(n_patients, 1)))


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_default), encoding="utf-8")


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
