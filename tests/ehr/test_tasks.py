"""Task definitions, cohort rules and labels on hand-built stores."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from store_factory import HTN, StoreBuilder, fixed_task, person

from privehr.ehr.features import build_task_data
from privehr.ehr.tasks import (
    BUILTIN_TASKS,
    CodeSet,
    Cohort,
    IndexRule,
    Outcome,
    Task,
    TaskValidationError,
    describe_task,
    get_task,
    mortality_task,
    select_examples,
)


def labels(con, task) -> dict[str, int]:
    df = select_examples(con, task)
    return dict(zip(df["patient_id"], df["y"].astype(int), strict=True))


def test_outcome_inside_horizon_is_positive_outside_is_negative():
    b = StoreBuilder()
    person(b, "inside")
    b.condition("inside", "2020-11-30", HTN)
    person(b, "after")
    b.condition("after", "2021-01-02", HTN)  # index + 367 days: outside the 365-day horizon
    person(b, "never")
    person(b, "on_index_day")
    b.condition("on_index_day", "2020-01-01", HTN)  # diagnosed at index: future, not history
    assert labels(b.con, fixed_task()) == {"inside": 1, "after": 0, "never": 0,
                                           "on_index_day": 1}


def test_prevalent_outcome_before_index_is_excluded():
    b = StoreBuilder()
    person(b, "prevalent")
    b.condition("prevalent", "2019-12-31", HTN)
    person(b, "incident")
    b.condition("incident", "2020-03-01", HTN)
    assert labels(b.con, fixed_task()) == {"incident": 1}
    keep = fixed_task(cohort=Cohort(min_age=18, exclude_prevalent=False))
    assert labels(b.con, keep) == {"prevalent": 0, "incident": 1}


def test_description_substring_matches_other_code():
    b = StoreBuilder()
    person(b, "p")
    b.condition("p", "2020-05-01", "999", "Hypertension, some other code system")
    assert labels(b.con, fixed_task()) == {"p": 1}
    only_code = Outcome("codes", CodeSet(("conditions",), (HTN,), ()))
    assert labels(b.con, fixed_task(outcome=only_code)) == {"p": 0}


def test_outcome_over_medications_table():
    b = StoreBuilder()
    person(b, "p")
    b.medication("p", "2020-02-01T00:00:00", "314076")
    out = Outcome("codes", CodeSet(("medications",), ("314076",), ()))
    assert labels(b.con, fixed_task(outcome=out)) == {"p": 1}


def test_cohort_age_alive_prior_encounter_and_followup():
    b = StoreBuilder()
    person(b, "adult")
    person(b, "child", birth="2010-01-01")
    person(b, "dead_before", deathdate="2019-12-01")
    b.patient("unseen", "1970-01-01")  # no encounter in the look-back window
    b.encounter("unseen", "2022-01-01T10:00:00")
    assert set(labels(b.con, fixed_task())) == {"adult"}
    # horizon past the export's last encounter (2022-01-01): censored, excluded
    long = fixed_task(horizon_days=5 * 365)
    assert labels(b.con, long) == {}
    relaxed = fixed_task(horizon_days=5 * 365,
                         cohort=Cohort(min_age=18, require_full_followup=False))
    assert set(labels(b.con, relaxed)) == {"adult"}


def test_optional_cohort_rules_off_and_max_age():
    b = StoreBuilder()
    person(b, "adult")
    person(b, "senior", birth="1940-01-01")
    b.patient("unseen", "1970-01-01")
    b.encounter("unseen", "2022-01-01T10:00:00")
    loose = fixed_task(cohort=Cohort(min_age=18, require_prior_encounter=False))
    assert set(labels(b.con, loose)) == {"adult", "senior", "unseen"}
    capped = fixed_task(cohort=Cohort(min_age=18, max_age=65))
    assert set(labels(b.con, capped)) == {"adult"}


def test_death_outcome():
    b = StoreBuilder()
    person(b, "dies_inside", deathdate="2020-06-01")
    person(b, "dies_later", deathdate="2021-06-01")
    person(b, "dies_before", deathdate="2019-07-01")
    person(b, "alive")
    task = fixed_task(outcome=Outcome("death"), cohort=Cohort(min_age=18,
                                                              exclude_prevalent=False))
    assert labels(b.con, task) == {"dies_inside": 1, "dies_later": 0, "alive": 0}


def test_before_data_end_index_is_per_source():
    b = StoreBuilder()
    for src, last in (("a", "2020-01-01"), ("b", "2024-01-01")):
        pid = f"{src}1"
        b.patient(pid, "1970-01-01", source=src)
        b.encounter(pid, "2015-06-01T00:00:00")
        b.encounter(pid, f"{int(last[:4]) - 2}-06-01T00:00:00")
        b.encounter(pid, f"{last}T08:00:00")
    task = fixed_task(index=IndexRule("before_data_end", days_before_end=365))
    df = select_examples(b.con, task)
    got = dict(zip(df["patient_id"], df["index_date"].astype(str).str[:10], strict=True))
    assert got == {"a1": "2019-01-01", "b1": "2023-01-01"}


def test_first_encounter_index():
    b = StoreBuilder()
    b.patient("p", "2000-01-01")
    b.encounter("p", "2016-05-01T00:00:00")  # age 16: too young
    b.encounter("p", "2018-03-01T00:00:00", cls="ambulatory")
    b.encounter("p", "2019-02-01T00:00:00")  # first wellness at >= 18
    b.encounter("p", "2021-02-01T00:00:00")
    task = fixed_task(index=IndexRule("first_encounter", encounter_class="wellness",
                                      min_age_years=18))
    df = select_examples(b.con, task)
    assert list(df["index_date"].astype(str).str[:10]) == ["2019-02-01"]


def test_readmission_several_examples_per_patient():
    b = StoreBuilder()
    b.patient("p", "1950-01-01")
    b.encounter("p", "2019-01-01T00:00:00", cls="wellness")
    b.encounter("p", "2020-01-01T08:00:00", cls="inpatient", stop="2020-01-05T12:00:00")
    b.encounter("p", "2020-01-25T08:00:00", cls="inpatient", stop="2020-01-28T12:00:00")
    b.encounter("p", "2020-06-01T08:00:00", cls="inpatient", stop="2020-06-02T12:00:00")
    b.encounter("p", "2020-06-02T15:00:00", cls="ambulatory")
    b.encounter("p", "2020-12-01T08:00:00", cls="inpatient", stop="2020-12-20T12:00:00")
    b.patient("q", "1950-01-01")
    b.encounter("q", "2020-03-01T08:00:00", cls="inpatient", stop="2020-03-03T12:00:00")
    task = BUILTIN_TASKS["readmission_30d"]
    assert task.level == "encounter"
    df = select_examples(b.con, task)
    got = list(zip(df["patient_id"], df["index_ts"].astype(str).str[:10],
                   df["y"].astype(int), strict=True))
    # last discharge (2020-12-20) is censored: the export ends before 30 days pass
    assert got == [("p", "2020-01-05", 1), ("p", "2020-01-28", 0), ("p", "2020-06-02", 0),
                   ("q", "2020-03-03", 0)]
    td = build_task_data(b.con, task)
    assert list(td.patient_id) == ["p", "p", "p", "q"] and td.n_patients == 2


def test_patient_level_builtins_yield_one_example_per_patient():
    from store_factory import synthetic_store
    con = synthetic_store(n=40, seed=3).con
    for name in ("hypertension_onset", "diabetes_onset", "mortality_5y"):
        td = build_task_data(con, BUILTIN_TASKS[name])
        assert len(td) > 0
        assert len(np.unique(td.patient_id)) == len(td)


def test_task_round_trips_and_hash_is_stable():
    for task in [*BUILTIN_TASKS.values(), fixed_task(), mortality_task(3)]:
        d = json.loads(json.dumps(task.to_dict()))
        back = Task.from_dict(d)
        assert back == task and back.config_hash() == task.config_hash()
    t = BUILTIN_TASKS["hypertension_onset"]
    assert dataclasses.replace(t, horizon_days=100).config_hash() != t.config_hash()
    assert mortality_task(3).horizon_days == 1096


def test_from_dict_rejects_unknown_keys():
    d = fixed_task().to_dict()
    d["cohort"]["min_agee"] = 3
    with pytest.raises(TaskValidationError, match="Task.to_dict"):
        Task.from_dict(d)


def test_validation_lists_every_problem():
    with pytest.raises(TaskValidationError) as err:
        Task(name="bad name!", description="", index=IndexRule("fixed_date", date="soon"),
             outcome=Outcome("codes", CodeSet(("notes",), ("1",), ("UPPER",))),
             lookback_days=0, horizon_days=-3)
    text = str(err.value)
    for fragment in ("name=", "lookback_days=0", "horizon_days=-3", "index.date='soon'",
                     "tables=('notes',)", "lower-case"):
        assert fragment in text
    assert len(err.value.problems) == 6


def test_builtins_and_describe():
    assert {"hypertension_onset", "diabetes_onset", "mortality_5y",
            "readmission_30d"} <= set(BUILTIN_TASKS)
    text = describe_task(BUILTIN_TASKS["diabetes_onset"])
    assert "15777000" in text and "prediabetes" not in text.split("\n")[0]
    assert "no outcome row before index" in text
    assert "discharge of each inpatient" in describe_task(BUILTIN_TASKS["readmission_30d"])
    with pytest.raises(TypeError):
        BUILTIN_TASKS["x"] = fixed_task()  # read-only registry


def test_get_task_and_future_versions():
    assert get_task("readmission_30d") is BUILTIN_TASKS["readmission_30d"]
    assert get_task("mortality_10y").horizon_days == 3652
    with pytest.raises(KeyError, match="built-ins are"):
        get_task("mortality_0y")
    d = fixed_task().to_dict()
    d["version"] = 99
    with pytest.raises(TaskValidationError, match="upgrade privehr"):
        Task.from_dict(d)
