"""Ingest throughput and peak memory vs a plain ``pandas.read_csv`` of the same files.

    python -m bench.ingest                 # bundled exports + load generator at 20k patients
    python -m bench.ingest --patients 0    # bundled exports only
    python -m bench.ingest --patients 100000 --json out.json

Each measurement runs in a fresh child process, so its peak RSS (``resource.getrusage``,
``ru_maxrss``) belongs to that step alone. "ingest" is the whole ``privehr.ehr.store.ingest``
call (UTF-8 check, parse, validate, pseudonymise, write, commit into a new DuckDB file);
"pandas" only reads the same table files with ``pandas.read_csv(dtype=str)`` and does
nothing else. ratio = pandas seconds / ingest seconds (> 1: ingest is faster).

LOAD GENERATOR: ``--patients N`` replicates the patients of one real export
(``data/synthea/fhir-sample/csv``, newest layout, ~330 observations per patient) with fresh
ids (md5 of id and replica number) and per-replica shifted dates until N patients exist.
Its output measures speed only; it is never used for any utility or privacy claim.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "synthea"
TABLES = ("patients", "encounters", "conditions", "observations", "medications", "procedures",
          "immunizations", "organizations")  # fmt: skip
ID_COLS = {"Id", "PATIENT", "ENCOUNTER"}
DATE_COLS = {"BIRTHDATE", "DEATHDATE", "START", "STOP", "DATE"}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """User + system CPU seconds of this process, all threads (robust to a busy machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _files(src: Path) -> list[Path]:
    out = []
    for t in TABLES:
        for ext in (".csv", ".csv.gz"):
            if (src / f"{t}{ext}").exists():
                out.append(src / f"{t}{ext}")
    return out


# --- child steps (run in a fresh interpreter) -----------------------------------------------


def _child_ingest(sources: list[str], workdir: str, memory_limit: str) -> dict:
    from privehr.ehr.store import ingest

    store = Path(workdir) / "bench.duckdb"
    for p in (store, store.with_name(store.name + ".secret"), store.with_name(store.name + ".wal")):
        p.unlink(missing_ok=True)
    rows = obs = 0
    t0, c0 = time.perf_counter(), _cpu_s()
    for s in sources:
        summ = ingest(s, store, site=Path(s).name, date_shift_days=30, memory_limit=memory_limit)
        rows += sum(c.rows_read for c in summ.tables.values())
        obs += summ.tables["observations"].rows_read if "observations" in summ.tables else 0
    secs = time.perf_counter() - t0
    return {"seconds": secs, "cpu_s": _cpu_s() - c0, "rows": rows, "observation_rows": obs, "peak_rss_mb": _peak_mb(),
            "store_mb": store.stat().st_size / 2**20}  # fmt: skip


def _child_pandas(sources: list[str]) -> dict:
    import pandas as pd

    rows = obs = 0
    t0, c0 = time.perf_counter(), _cpu_s()
    for s in sources:
        for f in _files(Path(s)):
            n = len(pd.read_csv(f, dtype=str, keep_default_na=False))
            rows += n
            if f.name.startswith("observations"):
                obs += n
    return {"seconds": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0, "rows": rows,
            "observation_rows": obs, "peak_rss_mb": _peak_mb()}  # fmt: skip


def _run_child(kind: str, sources: list[str], workdir: str, memory_limit: str = "2GB") -> dict:
    cmd = [sys.executable, "-m", "bench.ingest", "--child", kind, "--workdir", workdir,
           "--memory-limit", memory_limit, *sources]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- load generator ---------------------------------------------------------------------------


def generate(base: Path, n_patients: int, out: Path) -> dict:
    """LOAD GENERATOR: replicate ``base``'s patients (fresh ids, shifted dates) to n_patients."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    n_base = con.execute(
        "SELECT count(*) FROM read_csv(?, header = true, all_varchar = true)",
        [str(_files(base)[0])],
    ).fetchall()[0][0]
    reps = -(-n_patients // n_base)
    counts = {}
    for f in _files(base):
        table = f.name.split(".")[0]
        cols = [c[0] for c in con.execute(
            "SELECT * FROM read_csv(?, header = true, all_varchar = true) LIMIT 0", [str(f)]
        ).description]  # fmt: skip
        k = "1" if table == "organizations" else reps
        items = []
        for c in cols:
            q = f'"{c}"'
            if c in ID_COLS and table != "organizations":
                items.append(f"CASE WHEN {q} = '' THEN '' ELSE md5({q} || '#' || r.k) END AS {q}")
            elif c in DATE_COLS:
                shift = "CAST((r.k * 37) % 730 - 365 AS INTEGER)"
                items.append(
                    f"CASE WHEN coalesce({q}, '') = '' THEN '' "
                    f"WHEN length({q}) = 10 THEN strftime(CAST({q} AS DATE) + {shift}, '%Y-%m-%d') "
                    f"ELSE strftime(timezone('UTC', CAST({q} AS TIMESTAMPTZ)) + to_days({shift}), "
                    f"'%Y-%m-%dT%H:%M:%SZ') END AS {q}"
                )
            else:
                items.append(q)
        dest = out / f"{table}.csv"
        con.execute(
            f"""COPY (SELECT {', '.join(items)} FROM read_csv(?, header = true, all_varchar = true)
                CROSS JOIN range({k}) r(k)) TO '{dest}' (HEADER, DELIMITER ',')""",  # noqa: S608
            [str(f)],
        )
        counts[table] = con.execute(
            "SELECT count(*) FROM read_csv(?, header = true, all_varchar = true)", [str(dest)]
        ).fetchall()[0][0]
    con.close()
    return counts


# --- driver -----------------------------------------------------------------------------------


def _r(x: float, nd: int | None = None) -> float | int | None:
    if x != x:  # NaN: step not run
        return None
    return round(x, nd) if nd is not None else round(x)


def _row(label: str, ing: dict, pd_: dict) -> dict:
    return {
        "dataset": label,
        "rows": ing["rows"],
        "observation_rows": ing["observation_rows"],
        "ingest_s": round(ing["seconds"], 2),
        "ingest_rows_per_s": round(ing["rows"] / ing["seconds"]),
        "ingest_obs_rows_per_s": round(ing["observation_rows"] / ing["seconds"]),
        "ingest_cpu_s": round(ing["cpu_s"], 1),
        "ingest_rows_per_cpu_s": round(ing["rows"] / ing["cpu_s"]),
        "ingest_peak_rss_mb": round(ing["peak_rss_mb"]),
        "store_mb": round(ing["store_mb"], 1),
        "pandas_s": _r(pd_["seconds"], 2),
        "pandas_rows_per_s": _r(pd_["rows"] / pd_["seconds"]),
        "pandas_cpu_s": _r(pd_["cpu_s"], 1),
        "pandas_peak_rss_mb": _r(pd_["peak_rss_mb"]),
        "ratio_pandas_over_ingest": _r(pd_["seconds"] / ing["seconds"], 2),
        "cpu_ratio_pandas_over_ingest": _r(pd_["cpu_s"] / ing["cpu_s"], 2),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=20000, help="load-generator size (0: skip)")
    ap.add_argument("--json", type=Path, help="write the raw numbers here")
    ap.add_argument("--workdir", type=str, default=None,
                    help="keep generated data here (reused if present) instead of a temp dir")
    ap.add_argument("--skip-bundled", action="store_true", help="only the load generator")
    ap.add_argument("--no-pandas", action="store_true",
                    help="skip the pandas baseline for the load generator (its RAM grows fast)")
    ap.add_argument("--memory-limit", default="2GB", help="ingest(memory_limit=...) (DuckDB)")
    ap.add_argument("--child", choices=("ingest", "pandas", "generate"), help=argparse.SUPPRESS)
    ap.add_argument("sources", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        if a.child == "generate":
            res = generate(DATA / "fhir-sample" / "csv", a.patients, Path(a.sources[0]))
        elif a.child == "ingest":
            res = _child_ingest(a.sources, a.workdir, a.memory_limit)
        else:
            res = _child_pandas(a.sources)
        print(json.dumps(res))
        return
    work = Path(a.workdir or tempfile.mkdtemp(prefix="privehr-bench-ingest-"))
    results = []
    try:
        real = sorted(str(p) for p in (DATA / "pool").iterdir() if p.is_dir())
        real += [str(DATA / "ma-113-synthea-v2.5"), str(DATA / "fhir-sample" / "csv")]
        if not a.skip_bundled:
            results.append(_row(f"bundled CSV exports ({len(real)} sources)",
                                _run_child("ingest", real, str(work), a.memory_limit),
                                _run_child("pandas", real, str(work))))  # fmt: skip
        if a.patients > 0:
            gen = work / f"loadgen-{a.patients}"
            t0 = time.perf_counter()
            if (gen / "observations.csv").exists():  # reuse an earlier generator run
                counts = {"patients": len((gen / "patients.csv").read_text().splitlines()) - 1}
            else:
                # in a child too: Linux carries a process's peak RSS over into the children
                # it starts, so a generator run in this process would inflate their peaks
                cmd = [sys.executable, "-m", "bench.ingest", "--child", "generate",
                       "--patients", str(a.patients), str(gen)]  # fmt: skip
                out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT / "src")})  # fmt: skip
                counts = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"LOAD GENERATOR: {counts} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            ing = _run_child("ingest", [str(gen)], str(work), a.memory_limit)
            if a.no_pandas:
                pd_ = {"seconds": float("nan"), "cpu_s": float("nan"), "rows": ing["rows"],
                       "peak_rss_mb": float("nan")}  # fmt: skip
            else:
                pd_ = _run_child("pandas", [str(gen)], str(work))
            results.append(_row(f"LOAD GENERATOR {counts['patients']} patients", ing, pd_))
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    cols = list(results[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
