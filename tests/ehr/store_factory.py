"""Hand-built tiny stores for task/feature/site tests (no ingestion needed).

``StoreBuilder`` writes rows straight into a fresh in-memory DuckDB store created with the
fixed schema; ``synthetic_store`` fills one with seeded random patients.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from privehr.ehr import schema
from privehr.ehr.tasks import CodeSet, Cohort, IndexRule, Outcome, Task

HTN = "59621000"
BMI, SBP = "39156-5", "8480-6"


HTN_OUTCOME = Outcome("codes", CodeSet(("conditions",), (HTN,), ("hypertension",)))


def fixed_task(**kw) -> Task:
    """Index 2020-01-01, 365-day look-back and horizon, hypertension outcome, adults."""
    base = dict(name="t", description="test task", index=IndexRule("fixed_date", date="2020-01-01"),
                outcome=HTN_OUTCOME, cohort=Cohort(min_age=18), lookback_days=365,
                horizon_days=365)
    base.update(kw)
    return Task(**base)


def person(b: StoreBuilder, pid: str, birth: str = "1970-01-01", **kw) -> str:
    """A patient seen before the index (2019-06) and after the horizon (2022-01)."""
    b.patient(pid, birth, **kw)
    b.encounter(pid, "2019-06-01T10:00:00")
    b.encounter(pid, "2022-01-01T10:00:00")
    return pid


def d(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


class StoreBuilder:
    def __init__(self, source: str = "site-a", path: str = ":memory:") -> None:
        self.con = duckdb.connect(path)
        schema.create_all(self.con)
        self.source = source
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def patient(self, pid: str, birthdate: str, sex: str | None = "F", race: str = "white",
                ethnicity: str = "nonhispanic", deathdate: str | None = None,
                org: str | None = None, source: str | None = None) -> str:
        self.con.execute(
            "INSERT INTO patients VALUES (?, ?, ?, ?, ?, ?, ?, 'MA', NULL, ?)",
            [pid, source or self.source, d(birthdate), d(deathdate) if deathdate else None,
             sex, race, ethnicity, org])
        return pid

    def encounter(self, pid: str, start: str, cls: str = "wellness", stop: str | None = None,
                  eid: str | None = None, org: str | None = None) -> str:
        eid = eid or self._id("e")
        self.con.execute(
            "INSERT INTO encounters VALUES (?, ?, ?, ?, ?, '0', 'visit', ?, NULL, NULL)",
            [eid, pid, dt.datetime.fromisoformat(start),
             dt.datetime.fromisoformat(stop) if stop else dt.datetime.fromisoformat(start),
             cls, org])
        return eid

    def condition(self, pid: str, start: str, code: str, description: str = "",
                  stop: str | None = None) -> None:
        self.con.execute("INSERT INTO conditions VALUES (?, NULL, ?, ?, 'SNOMED-CT', ?, ?)",
                         [pid, d(start), d(stop) if stop else None, code, description])

    def observation(self, pid: str, date: str, code: str, value: float | None) -> None:
        self.con.execute(
            "INSERT INTO observations VALUES (?, NULL, ?, 'vital-signs', ?, 'obs', ?, ?, 'u')",
            [pid, dt.datetime.fromisoformat(date), code, value,
             None if value is not None else "text"])

    def medication(self, pid: str, start: str, code: str, stop: str | None = None) -> None:
        self.con.execute("INSERT INTO medications VALUES (?, NULL, ?, ?, ?, 'med')",
                         [pid, dt.datetime.fromisoformat(start),
                          dt.datetime.fromisoformat(stop) if stop else None, code])

    def procedure(self, pid: str, start: str, code: str) -> None:
        self.con.execute("INSERT INTO procedures VALUES (?, NULL, ?, NULL, 'SNOMED-CT', ?, 'p')",
                         [pid, dt.datetime.fromisoformat(start), code])

    def organization(self, oid: str, city: str, source: str | None = None) -> None:
        self.con.execute("INSERT INTO organizations VALUES (?, ?, 'Hospital', ?, 'MA')",
                         [oid, source or self.source, city])


def synthetic_store(n: int = 60, seed: int = 0, source: str = "site-a",
                    end_year: int = 2024, builder: StoreBuilder | None = None) -> StoreBuilder:
    """Seeded random adults with yearly visits, vitals, and hypertension at random dates.

    Rows are collected in frames and inserted in bulk (row-by-row inserts are slow).
    """
    rng = np.random.default_rng(seed)
    b = builder or StoreBuilder(source)
    pats, encs, obs, conds = [], [], [], []
    for i in range(n):
        pid = f"{source}-p{i}"
        birth = dt.date(int(rng.integers(1935, 1995)), int(rng.integers(1, 13)), 1)
        pats.append((pid, source, birth, None, str(rng.choice(["F", "M"])),
                     str(rng.choice(["white", "black", "asian"])),
                     str(rng.choice(["hispanic", "nonhispanic"], p=[0.2, 0.8])), "MA", None,
                     None))
        for year in range(end_year - 12, end_year + 1):
            day = dt.datetime(year, int(rng.integers(1, 13)), 15, 9)
            cls = str(rng.choice(["wellness", "ambulatory", "inpatient"], p=[0.6, 0.3, 0.1]))
            encs.append((f"{pid}-e{year}", pid, day, day + dt.timedelta(days=1), cls, "0",
                         "visit", None, None, None))
            if rng.random() < 0.8:
                obs.append((pid, None, day, "vital-signs", BMI, "bmi", float(rng.normal(28, 4)),
                            None, "kg/m2"))
                obs.append((pid, None, day, "vital-signs", SBP, "sbp",
                            float(rng.normal(125, 12)), None, "mm[Hg]"))
        if rng.random() < 0.4:
            year = int(rng.integers(end_year - 12, end_year))
            conds.append((pid, None, dt.date(year, 6, 1), None, "SNOMED-CT", HTN,
                          "Essential hypertension (disorder)"))
    for table, rows in (("patients", pats), ("encounters", encs), ("observations", obs),
                        ("conditions", conds)):
        if rows:
            cols = [r[0] for r in b.con.execute(f"DESCRIBE {table}").fetchall()]
            frame = pd.DataFrame(rows, columns=cols)  # noqa: F841 (read by DuckDB below)
            b.con.execute(f"INSERT INTO {table} SELECT * FROM frame")
    return b
