"""Declarative prediction tasks over the de-identified store.

A :class:`Task` is data, not code: a cohort rule, an index-date rule, a look-back window, a
prediction horizon and an outcome. Sites exchange tasks as dicts (``to_dict``/``from_dict``)
and compare them by ``config_hash()``, so every site of a study builds *the same* task on its
own store; no site ever ships rows to another to agree on a definition.

Time conventions (the leakage boundary, stated once and tested):

- An example's *index date* is a calendar day. Features use only rows dated strictly before
  that day and inside the look-back window ``[index_date - lookback_days, index_date)``.
- The outcome window is ``[index_ts, index_ts + horizon_days)`` where ``index_ts`` is the
  index date at midnight for patient-level rules and the discharge timestamp for
  ``each_encounter`` (so a diagnosis made *at* an index wellness visit is a future outcome,
  never a feature).
- ``exclude_prevalent`` drops patients with an outcome row strictly before the index date.
- ``require_full_followup`` drops examples whose horizon runs past the last record of their
  export (censored), unless the patient died inside the horizon. A death inside the horizon
  without the outcome counts as y=0 (competing risk, not censoring).

Outcome code sets match a row when its code is in ``codes`` **or** its lower-cased
description contains one of ``description_contains`` (lower-case substrings). Codes give
precision; substrings catch the same concept under another code in another Synthea version.

Dates shifted per patient at ingestion (``date_shift_days``) move each patient's timeline as a
whole, so intervals within a patient (look-back, horizon) are exact; calendar anchors (a fixed
date, an export's last encounter) are then only accurate to the shift.

Privacy unit: the patient. Patient-level tasks yield at most one example per patient;
encounter-level tasks (``each_encounter``) yield several, and later stages must clip or cap
per patient (``TaskData.patient_id`` carries the pseudonym for that).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

import pandas as pd

OUTCOME_TABLES = ("conditions", "observations", "medications", "procedures")
INDEX_KINDS = ("fixed_date", "before_data_end", "first_encounter", "each_encounter")
OUTCOME_KINDS = ("codes", "death", "encounter")
TASK_FORMAT_VERSION = 1

# Date column of each outcome table (conditions hold DATEs, the others TIMESTAMPs).
_DATE_COLUMN = {"conditions": "start", "observations": "date", "medications": "start",
                "procedures": "start"}


class TaskValidationError(ValueError):
    """A task definition is invalid; the message lists every problem with its fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid task:\n- " + "\n- ".join(self.problems))


@dataclass(frozen=True)
class CodeSet:
    """Rows of ``tables`` whose code is in ``codes`` or whose description contains a substring."""

    tables: tuple[str, ...] = ("conditions",)
    codes: tuple[str, ...] = ()
    description_contains: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What y=1 means: a code-set row (``codes``), death (``death``) or an encounter of a class
    (``encounter``, e.g. an inpatient readmission; the index encounter itself never counts)."""

    kind: str
    code_set: CodeSet | None = None
    encounter_class: str | None = None


@dataclass(frozen=True)
class IndexRule:
    """How index dates are chosen.

    - ``fixed_date``: one calendar ``date`` (ISO) for every patient.
    - ``before_data_end``: ``days_before_end`` days before the last encounter of the patient's
      export (each export has its own run date; this keeps the horizon inside the data).
    - ``first_encounter``: day of the first ``encounter_class`` encounter at age >=
      ``min_age_years`` (one per patient).
    - ``each_encounter``: discharge of every ``encounter_class`` encounter (encounter-level).
    """

    kind: str
    date: str | None = None
    days_before_end: int | None = None
    encounter_class: str | None = None
    min_age_years: float | None = None


@dataclass(frozen=True)
class Cohort:
    """Who is eligible at the index date (age in years at the index date, [min_age, max_age))."""

    min_age: float = 0.0
    max_age: float | None = None
    exclude_prevalent: bool = True
    require_prior_encounter: bool = True
    require_full_followup: bool = True


@dataclass(frozen=True)
class Task:
    """A declarative prediction task (see the module docstring for the time conventions)."""

    name: str
    description: str
    index: IndexRule
    outcome: Outcome
    cohort: Cohort = field(default_factory=Cohort)
    lookback_days: int = 3 * 365
    horizon_days: int = 5 * 365
    version: int = TASK_FORMAT_VERSION

    def __post_init__(self) -> None:
        problems = _task_problems(self)
        if problems:
            raise TaskValidationError(problems)

    @property
    def level(self) -> str:
        """``"encounter"`` when a patient may yield several examples, else ``"patient"``."""
        return "encounter" if self.index.kind == "each_encounter" else "patient"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        """Rebuild a task from ``to_dict`` output; unknown keys are an error, never ignored."""
        d = dict(data)
        if int(d.get("version", TASK_FORMAT_VERSION)) > TASK_FORMAT_VERSION:
            raise TaskValidationError(
                [f"version={d['version']!r}: this privehr reads Task format <= "
                 f"{TASK_FORMAT_VERSION}; upgrade privehr to load this task"])
        try:
            out = dict(d.pop("outcome"))
            cs = out.pop("code_set", None)
            if cs is not None:
                cs = CodeSet(**{k: tuple(v) for k, v in cs.items()})
            return cls(
                index=IndexRule(**d.pop("index")),
                outcome=Outcome(code_set=cs, **out),
                cohort=Cohort(**d.pop("cohort", {})),
                **d,
            )
        except (KeyError, TypeError) as exc:
            raise TaskValidationError(
                [f"task dict does not match the Task format v{TASK_FORMAT_VERSION}: {exc}; "
                 "build it with Task.to_dict()"]) from exc

    def config_hash(self) -> str:
        """Stable hash of the definition (sites check they run the same task)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _task_problems(t: Task) -> list[str]:
    p: list[str] = []
    if not t.name or not t.name.replace("_", "").isalnum():
        p.append(f"name={t.name!r}: must be a non-empty identifier; use e.g. 'hypertension_onset'")
    for fname in ("lookback_days", "horizon_days"):
        v = getattr(t, fname)
        if not isinstance(v, int) or v <= 0:
            p.append(f"{fname}={v!r}: must be a positive int number of days")
    ix = t.index
    if ix.kind not in INDEX_KINDS:
        p.append(f"index.kind={ix.kind!r}: must be one of {INDEX_KINDS}")
    if ix.kind == "fixed_date":
        try:
            pd.Timestamp(ix.date)
        except (TypeError, ValueError):
            p.append(f"index.date={ix.date!r}: fixed_date needs an ISO date like '2015-01-01'")
    if ix.kind == "before_data_end" and (not isinstance(ix.days_before_end, int)
                                         or ix.days_before_end < 0):
        p.append(f"index.days_before_end={ix.days_before_end!r}: needs an int >= 0")
    if ix.kind in ("first_encounter", "each_encounter") and not ix.encounter_class:
        p.append(f"index.encounter_class={ix.encounter_class!r}: {ix.kind} needs a class, "
                 "e.g. 'wellness' or 'inpatient'")
    o = t.outcome
    if o.kind not in OUTCOME_KINDS:
        p.append(f"outcome.kind={o.kind!r}: must be one of {OUTCOME_KINDS}")
    if o.kind == "codes":
        cs = o.code_set
        if cs is None or not (cs.codes or cs.description_contains):
            p.append("outcome.code_set: a 'codes' outcome needs codes or description_contains")
        else:
            bad = [x for x in cs.tables if x not in OUTCOME_TABLES]
            if bad or not cs.tables:
                p.append(f"outcome.code_set.tables={cs.tables!r}: use a subset of {OUTCOME_TABLES}")
            if any(s != s.lower() or not s for s in cs.description_contains):
                p.append(f"outcome.code_set.description_contains={cs.description_contains!r}: "
                         "substrings must be non-empty and lower-case")
    if o.kind == "encounter" and not o.encounter_class:
        p.append("outcome.encounter_class=None: an 'encounter' outcome needs a class")
    c = t.cohort
    if c.min_age < 0 or (c.max_age is not None and c.max_age <= c.min_age):
        p.append(f"cohort ages [{c.min_age}, {c.max_age}): need 0 <= min_age < max_age")
    return p


def mortality_task(years: int = 5, min_age: float = 18.0) -> Task:
    """All-cause mortality within ``years`` of an index ``years`` before the export's end."""
    days = int(round(years * 365.25))
    return Task(
        name=f"mortality_{years}y",
        description=f"All-cause death within {years} years (adults alive at index).",
        index=IndexRule("before_data_end", days_before_end=days),
        outcome=Outcome("death"),
        cohort=Cohort(min_age=min_age, exclude_prevalent=False),
        lookback_days=3 * 365,
        horizon_days=days,
    )


# Index = 5 years before the export's last encounter, horizon 5 years, look-back 3 years.
# Synthea exports only ~10 years of history (``exporter.years_of_history``), so an index 10
# years back leaves an empty look-back (MA-113: 17 eligible adults instead of ~50). Over the
# pool + MA-113 this yields 1,068 adults / 7.1% hypertension onset, 772 / 12.6% diabetes or
# prediabetes onset, 1,533 / 4.2% deaths, 1,989 discharges / 11.7% readmissions.
_FIVE_YEARS = int(round(5 * 365.25))

BUILTIN_TASKS: Mapping[str, Task] = MappingProxyType({
    "hypertension_onset": Task(
        name="hypertension_onset",
        description="New hypertension diagnosis within 5 years, adults without it at index.",
        index=IndexRule("before_data_end", days_before_end=_FIVE_YEARS),
        outcome=Outcome("codes", CodeSet(("conditions",), ("59621000",), ("hypertension",))),
        cohort=Cohort(min_age=18.0),
        lookback_days=3 * 365,
        horizon_days=_FIVE_YEARS,
    ),
    "diabetes_onset": Task(
        name="diabetes_onset",
        description="New diabetes or prediabetes diagnosis within 5 years, adults without "
                    "either at index.",
        index=IndexRule("before_data_end", days_before_end=_FIVE_YEARS),
        outcome=Outcome("codes", CodeSet(("conditions",),
                                         ("15777000", "714628002", "44054006"),
                                         ("diabetes",))),
        cohort=Cohort(min_age=18.0),
        lookback_days=3 * 365,
        horizon_days=_FIVE_YEARS,
    ),
    "mortality_5y": mortality_task(5),
    "readmission_30d": Task(
        name="readmission_30d",
        description="Another inpatient admission within 30 days of an inpatient discharge "
                    "(one example per discharge; several per patient).",
        index=IndexRule("each_encounter", encounter_class="inpatient"),
        outcome=Outcome("encounter", encounter_class="inpatient"),
        cohort=Cohort(min_age=18.0, exclude_prevalent=False),
        lookback_days=365,
        horizon_days=30,
    ),
})


def get_task(name: str) -> Task:
    """A built-in task by name; ``mortality_<N>y`` builds all-cause mortality within N years."""
    if name in BUILTIN_TASKS:
        return BUILTIN_TASKS[name]
    m = re.fullmatch(r"mortality_(\d{1,2})y", name)
    if m and int(m.group(1)) > 0:
        return mortality_task(int(m.group(1)))
    raise KeyError(f"unknown task {name!r}: built-ins are {sorted(BUILTIN_TASKS)} "
                   "(or mortality_<N>y); define others with Task(...)")


def describe_task(task: Task) -> str:
    """Human-readable definition (what ``privehr tasks`` prints)."""
    ix, o, c = task.index, task.outcome, task.cohort
    index_txt = {
        "fixed_date": f"fixed date {ix.date}",
        "before_data_end": f"{ix.days_before_end} days before the export's last encounter",
        "first_encounter": f"first {ix.encounter_class} encounter at age >= {ix.min_age_years}",
        "each_encounter": f"discharge of each {ix.encounter_class} encounter",
    }[ix.kind]
    if o.kind == "codes" and o.code_set is not None:
        cs = o.code_set
        outcome_txt = (f"a row in {'/'.join(cs.tables)} with code in {list(cs.codes)} or "
                       f"description containing {list(cs.description_contains)}")
    elif o.kind == "death":
        outcome_txt = "death (patients.deathdate)"
    else:
        outcome_txt = f"another {o.encounter_class} encounter (not the index one)"
    ages = f"[{c.min_age:g}, {'∞' if c.max_age is None else f'{c.max_age:g}'})"
    rules = [f"age at index in {ages}", "alive at index"]
    if c.exclude_prevalent and o.kind == "codes":
        rules.append("no outcome row before index")
    if c.require_prior_encounter:
        rules.append("an encounter in the look-back window")
    if c.require_full_followup:
        rules.append("data cover the horizon (or death inside it)")
    return "\n".join([
        f"{task.name} ({task.level}-level, hash {task.config_hash()})",
        f"  {task.description}",
        f"  index:    {index_txt}",
        f"  cohort:   {'; '.join(rules)}",
        f"  features: rows before index, dated (or active) in [index - {task.lookback_days} d,"
        " index)",
        f"  outcome:  {outcome_txt} within {task.horizon_days} days from index",
    ])


# ---------------------------------------------------------------------------- selection (SQL)

def existing_tables(con: Any) -> set[str]:
    """Names of the tables present in the connection's main schema."""
    rows = con.execute("SELECT table_name FROM information_schema.tables "
                       "WHERE table_schema = 'main'").fetchall()
    return {r[0] for r in rows}


def _outcome_events_sql(cs: CodeSet, params: dict[str, Any], present: set[str]) -> str:
    """UNION of (patient_id, event_ts) rows matching the code set, over existing tables
    (a table the store lacks contributes no events)."""
    tables = [t for t in cs.tables if t in present]
    if not tables:
        return ("SELECT CAST(NULL AS VARCHAR) AS patient_id, CAST(NULL AS TIMESTAMP) AS event_ts "
                "WHERE FALSE")
    code_match = "FALSE"
    if cs.codes:
        params["oc_codes"] = list(cs.codes)
        code_match = "list_contains($oc_codes, code)"
    like = " OR ".join(f"contains(lower(coalesce(description, '')), $oc_s{i})"
                       for i in range(len(cs.description_contains))) or "FALSE"
    for i, sub in enumerate(cs.description_contains):
        params[f"oc_s{i}"] = sub
    return " UNION ALL ".join(
        f"SELECT patient_id, CAST({_DATE_COLUMN[t]} AS TIMESTAMP) AS event_ts FROM {t} "  # noqa: S608 (allowlisted names)
        f"WHERE {code_match} OR {like}"
        for t in tables
    )


def _index_sql(ix: IndexRule, params: dict[str, Any]) -> str:
    if ix.kind == "fixed_date":
        params["ix_date"] = str(pd.Timestamp(ix.date).date())
        return ("SELECT patient_id, CAST(CAST($ix_date AS DATE) AS TIMESTAMP) AS index_ts, "
                "CAST(NULL AS VARCHAR) AS index_encounter_id FROM patients")
    if ix.kind == "before_data_end":
        params["ix_days"] = int(ix.days_before_end or 0)
        return ("SELECT p.patient_id, CAST(CAST(d.end_ts AS DATE) - CAST($ix_days AS INTEGER) "
                "AS TIMESTAMP) AS index_ts, CAST(NULL AS VARCHAR) AS index_encounter_id "
                "FROM patients p JOIN data_end d USING (source)")
    params["ix_class"] = str(ix.encounter_class).lower()
    if ix.kind == "first_encounter":
        params["ix_min_age"] = float(ix.min_age_years or 0.0)
        return ("SELECT e.patient_id, CAST(CAST(min(e.start) AS DATE) AS TIMESTAMP) AS index_ts, "
                "CAST(NULL AS VARCHAR) AS index_encounter_id FROM encounters e "
                "JOIN patients p USING (patient_id) WHERE lower(e.encounter_class) = $ix_class "
                "AND date_diff('day', p.birthdate, CAST(e.start AS DATE)) / 365.25 >= $ix_min_age "
                "GROUP BY e.patient_id")
    return ("SELECT patient_id, stop AS index_ts, encounter_id AS index_encounter_id "
            "FROM encounters WHERE lower(encounter_class) = $ix_class AND stop IS NOT NULL")


def select_examples(con: Any, task: Task) -> pd.DataFrame:
    """Index dates, cohort filter and labels in one DuckDB query.

    Returns columns ``patient_id, source, index_ts, index_date, y`` sorted by
    (patient_id, index_ts); the row position is the example id used by the features.
    """
    params: dict[str, Any] = {"lookback": task.lookback_days, "horizon": task.horizon_days,
                              "min_age": float(task.cohort.min_age)}
    c, o = task.cohort, task.outcome
    where = ["c.age >= $min_age", "(c.deathdate IS NULL OR c.deathdate >= c.index_date)"]
    if c.max_age is not None:
        params["max_age"] = float(c.max_age)
        where.append("c.age < $max_age")
    horizon_end = "c.index_ts + to_days(CAST($horizon AS INTEGER))"
    if c.require_full_followup:
        where.append(f"({horizon_end} <= c.end_ts OR c.deathdate < CAST({horizon_end} AS DATE))")
    if c.require_prior_encounter:
        where.append("EXISTS (SELECT 1 FROM encounters e WHERE e.patient_id = c.patient_id "
                     "AND CAST(e.start AS DATE) < c.index_date "
                     "AND CAST(e.start AS DATE) >= c.index_date - CAST($lookback AS INTEGER))")
    ctes = ["data_end AS (SELECT p.source, max(e.start) AS end_ts FROM encounters e "
            "JOIN patients p USING (patient_id) GROUP BY p.source)",
            f"idx AS ({_index_sql(task.index, params)})"]
    if o.kind == "codes":
        assert o.code_set is not None  # validated in Task
        ctes.append(f"ev AS ({_outcome_events_sql(o.code_set, params, existing_tables(con))})")
        label = ("EXISTS (SELECT 1 FROM ev WHERE ev.patient_id = c.patient_id AND "  # noqa: S608 (allowlisted names)
                 f"ev.event_ts >= c.index_ts AND ev.event_ts < {horizon_end})")
        if c.exclude_prevalent:
            where.append("NOT EXISTS (SELECT 1 FROM ev WHERE ev.patient_id = c.patient_id "
                         "AND CAST(ev.event_ts AS DATE) < c.index_date)")
    elif o.kind == "death":
        label = f"(c.deathdate IS NOT NULL AND c.deathdate < CAST({horizon_end} AS DATE))"
    else:
        params["oc_class"] = str(o.encounter_class).lower()
        label = ("EXISTS (SELECT 1 FROM encounters e2 WHERE e2.patient_id = c.patient_id AND "  # noqa: S608 (allowlisted names)
                 "lower(e2.encounter_class) = $oc_class AND e2.start >= c.index_ts AND "
                 f"e2.start < {horizon_end} AND "
                 "e2.encounter_id IS DISTINCT FROM c.index_encounter_id)")
    ctes.append(
        "cand AS (SELECT i.patient_id, i.index_ts, i.index_encounter_id, "
        "CAST(i.index_ts AS DATE) AS index_date, p.deathdate, p.source, d.end_ts, "
        "date_diff('day', p.birthdate, CAST(i.index_ts AS DATE)) / 365.25 AS age "
        "FROM idx i JOIN patients p USING (patient_id) JOIN data_end d USING (source))")
    sql = (f"WITH {', '.join(ctes)} SELECT c.patient_id, c.source, c.index_ts, c.index_date, "  # noqa: S608 (allowlisted names)
           f"CAST({label} AS TINYINT) AS y FROM cand c WHERE {' AND '.join(where)} "
           "ORDER BY c.patient_id, c.index_ts")
    # DuckDB refuses unused named parameters: bind only those the query uses
    used = {k: v for k, v in params.items() if re.search(rf"\${k}\b", sql)}
    df = con.execute(sql, used).df()
    if task.level == "patient" and df["patient_id"].duplicated().any():
        raise RuntimeError(f"task {task.name}: a patient-level rule yielded two examples for "
                           "one patient; this is a bug in the index rule")
    return df
