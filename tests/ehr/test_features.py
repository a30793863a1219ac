"""Feature spec and build_task_data: leakage boundary, missingness, caps, stability."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest
from store_factory import BMI, HTN, SBP, StoreBuilder, fixed_task, person, synthetic_store

from privehr.ehr import schema
from privehr.ehr.features import FeatureSpec, TaskData, build_task_data, load_vocabulary
from privehr.ehr.tasks import BUILTIN_TASKS, Cohort

SPEC = FeatureSpec.default()


def col(td: TaskData, name: str) -> np.ndarray:
    return td.X[:, td.feature_names.index(name)]


def test_outcome_after_index_does_not_leak_into_features():
    b = StoreBuilder()
    person(b, "p")
    # everything below happens on or after the index date 2020-01-01
    b.condition("p", "2020-01-01", HTN, "Essential hypertension (disorder)")
    b.condition("p", "2020-03-01", HTN, "Essential hypertension (disorder)")
    b.observation("p", "2020-01-01T00:00:00", SBP, 180.0)
    b.observation("p", "2020-02-01T09:00:00", BMI, 41.0)
    b.medication("p", "2020-01-02T00:00:00", "314076")  # lisinopril
    b.procedure("p", "2020-01-01T09:00:00", "29303009")
    b.encounter("p", "2020-01-01T08:00:00", cls="emergency")
    td = build_task_data(b.con, fixed_task(), SPEC)
    assert list(td.y) == [1]  # the outcome is there ...
    for name in ("cond_hypertension", "med_lisinopril", "proc_electrocardiogram",
                 "obs_systolic_bp", "obs_bmi", "enc_emergency"):
        assert col(td, name)[0] == 0.0, name  # ... but not in the features
    assert col(td, "obs_systolic_bp_missing")[0] == 1.0
    assert col(td, "obs_bmi_missing")[0] == 1.0
    assert col(td, "enc_wellness")[0] == pytest.approx(np.log1p(1))  # the 2019 visit only


def test_latest_lab_before_index_inside_lookback():
    b = StoreBuilder()
    person(b, "p")
    b.observation("p", "2018-06-01T00:00:00", SBP, 200.0)  # before the 365-day window
    b.observation("p", "2019-03-01T00:00:00", SBP, 120.0)
    b.observation("p", "2019-09-01T00:00:00", SBP, 130.0)  # latest before index
    b.observation("p", "2020-01-01T00:00:00", SBP, 170.0)  # on the index day: excluded
    b.observation("p", "2019-10-01T00:00:00", BMI, None)  # non-numeric: not a value
    td = build_task_data(b.con, fixed_task(), SPEC)
    assert col(td, "obs_systolic_bp")[0] == 130.0
    assert col(td, "obs_systolic_bp_missing")[0] == 0.0
    assert col(td, "obs_bmi")[0] == 0.0 and col(td, "obs_bmi_missing")[0] == 1.0


def test_counts_use_active_conditions_and_windowed_procedures():
    b = StoreBuilder()
    person(b, "p")
    b.condition("p", "2005-01-01", "162864005")  # chronic, never stopped: counts
    b.condition("p", "2010-01-01", "444814009", stop="2010-02-01")  # not in the vocabulary
    b.condition("p", "2015-01-01", "271737000", stop="2015-03-01")  # ended before window
    b.medication("p", "2016-01-01T00:00:00", "314076", stop="2019-03-01T00:00:00")
    b.procedure("p", "2018-01-01T00:00:00", "29303009")  # before window
    b.procedure("p", "2019-05-01T00:00:00", "29303009")
    b.procedure("p", "2019-07-01T00:00:00", "40701008")
    b.procedure("p", "2019-08-01T00:00:00", "433236007")  # same feature, second code
    b.encounter("p", "2019-07-01T00:00:00", cls="teleport")  # unknown class
    td = build_task_data(b.con, fixed_task(), SPEC)
    assert col(td, "cond_obesity_bmi30")[0] == pytest.approx(np.log1p(1))
    assert col(td, "cond_anemia")[0] == 0.0
    assert col(td, "med_lisinopril")[0] == pytest.approx(np.log1p(1))
    assert col(td, "proc_electrocardiogram")[0] == pytest.approx(np.log1p(1))
    assert col(td, "proc_echocardiography")[0] == pytest.approx(np.log1p(2))
    assert col(td, "enc_other")[0] == pytest.approx(np.log1p(1))
    raw = FeatureSpec.from_dict({**SPEC.to_dict(), "count_transform": "raw"})
    assert col(build_task_data(b.con, fixed_task(), raw), "proc_echocardiography")[0] == 2.0


def test_missing_observations_table_degrades_to_indicators():
    b = synthetic_store(n=30, seed=1)
    task = fixed_task(index=BUILTIN_TASKS["hypertension_onset"].index, lookback_days=1000,
                      horizon_days=1826)
    full = build_task_data(b.con, task, SPEC)
    assert col(full, "obs_bmi_missing").mean() < 0.5
    b.con.execute("DELETE FROM observations")
    empty = build_task_data(b.con, task, SPEC)
    b.con.execute("DROP TABLE observations")
    dropped = build_task_data(b.con, task, SPEC)
    for td in (empty, dropped):
        assert td.feature_names == full.feature_names
        miss = [n for n in td.feature_names if n.endswith("_missing")]
        assert len(miss) == len(SPEC.observations)
        assert all((col(td, n) == 1.0).all() for n in miss)
        assert all((col(td, n[: -len("_missing")]) == 0.0).all() for n in miss)
        np.testing.assert_array_equal(td.y, full.y)


def test_age_cap_and_groups():
    b = StoreBuilder()
    person(b, "old", birth="1925-01-01")  # 95 at index
    person(b, "almost", birth="1930-07-02", sex="M", ethnicity="hispanic", race="black")
    person(b, "young", birth="1995-01-01", sex=None, race="martian")
    td = build_task_data(b.con, fixed_task(), SPEC)
    ages = dict(zip(td.patient_id, col(td, "age"), strict=True))
    assert ages["old"] == 90.0
    assert 89.4 < ages["almost"] < 89.6
    assert 24.9 < ages["young"] < 25.1
    g = {k: dict(zip(td.patient_id, v, strict=True)) for k, v in td.groups.items()}
    assert g["age_band"] == {"old": "90+", "almost": "65-89", "young": "18-39"}
    assert g["race_ethnicity"] == {"old": "white", "almost": "hispanic", "young": "other"}
    assert g["sex"] == {"old": "F", "almost": "M", "young": "unknown"}
    i = list(td.patient_id).index("young")
    assert td.X[i, td.feature_names.index("sex_F")] == td.X[i, td.feature_names.index("sex_M")] == 0
    assert col(td, "race_eth_hispanic").sum() == 1 and col(td, "race_eth_black").sum() == 0


def test_spec_round_trips_and_is_data():
    d = json.loads(json.dumps(SPEC.to_dict()))
    back = FeatureSpec.from_dict(d)
    assert back == SPEC and back.config_hash() == SPEC.config_hash()
    assert back.feature_names() == SPEC.feature_names()
    vocab = load_vocabulary("default")
    assert SPEC.vocabulary == f"default@{vocab['version']}".replace("default", vocab["name"])
    for kind in ("conditions", "medications", "procedures"):
        assert len(vocab[kind]) >= 24
    loincs = {c for e in vocab["observations"] for c in e["codes"]}
    assert {"39156-5", "8480-6", "8462-4", "4548-4", "2339-0", "2093-3", "18262-6", "2085-9",
            "2571-8", "33914-3", "38483-4", "29463-7", "8867-4"} <= loincs
    with pytest.raises(ValueError, match="count_transform"):
        FeatureSpec.from_dict({**d, "count_transform": "sqrt"})
    with pytest.raises(ValueError, match="FeatureSpec.to_dict"):
        FeatureSpec.from_dict({**d, "age_kap": 80})
    with pytest.raises(ValueError, match="upgrade privehr"):
        FeatureSpec.from_dict({**d, "version": 7})
    with pytest.raises(ValueError, match="repeat"):
        FeatureSpec.from_dict({**d, "medications": d["medications"] + d["medications"][:1]})
    with pytest.raises(ValueError, match="bare name"):
        load_vocabulary("../secrets")


def test_feature_names_identical_across_stores(tmp_path):
    a = build_task_data(synthetic_store(n=30, seed=1, source="a").con,
                        BUILTIN_TASKS["hypertension_onset"], SPEC)
    b = build_task_data(synthetic_store(n=45, seed=2, source="b", end_year=2021).con,
                        BUILTIN_TASKS["hypertension_onset"], SPEC)
    assert a.feature_names == b.feature_names == SPEC.feature_names()
    assert a.spec_hash == b.spec_hash and a.X.shape[1] == b.X.shape[1]
    assert a.X.dtype == np.float32 and a.index_date.dtype == np.dtype("datetime64[D]")
    assert a.y.dtype == np.int8 and a.patient_id.dtype.kind == "U"
    both = TaskData.concat([a, b])
    assert len(both) == len(a) + len(b) and both.n_patients == a.n_patients + b.n_patients
    sub = both.subset(both.y == 1)
    assert (sub.y == 1).all() and len(sub.groups["sex"]) == len(sub)
    assert len(both.subset([0, 1])) == 2
    both.save(tmp_path / "td.npz")
    back = TaskData.load(tmp_path / "td.npz")
    np.testing.assert_array_equal(back.X, both.X)
    for f in ("y", "patient_id", "index_date"):
        np.testing.assert_array_equal(getattr(back, f), getattr(both, f))
    assert back.feature_names == both.feature_names and back.task_hash == both.task_hash
    assert {k: list(v) for k, v in back.groups.items()} == {
        k: list(v) for k, v in both.groups.items()}
    other = build_task_data(synthetic_store(n=20, seed=3).con, BUILTIN_TASKS["mortality_5y"],
                            SPEC)
    with pytest.raises(ValueError, match="built for task"):
        TaskData.concat([a, other])


def test_read_only_store_leaves_no_views(tmp_path):
    path = str(tmp_path / "site.duckdb")
    b = synthetic_store(n=20, seed=4, builder=StoreBuilder(path=path))
    b.con.close()
    con = duckdb.connect(path, read_only=True)
    td = build_task_data(con, BUILTIN_TASKS["mortality_5y"], SPEC)
    assert len(td) > 0
    names = {r[0] for r in con.execute("SHOW ALL TABLES").fetchall()}
    assert not any(n.startswith("_privehr") for n in names)


def test_empty_cohort_and_missing_core_tables():
    b = StoreBuilder()
    td = build_task_data(b.con, fixed_task(cohort=Cohort(min_age=18)), SPEC)
    assert td.X.shape == (0, len(SPEC.feature_names()))
    con = duckdb.connect(":memory:")
    con.execute(f"CREATE TABLE patients ({schema.TABLES['patients']})")
    with pytest.raises(ValueError, match="encounters"):
        build_task_data(con, fixed_task(), SPEC)


def test_missing_clinical_tables_degrade_to_zero_counts():
    b = synthetic_store(n=25, seed=6)
    person(b, "p")
    b.medication("p", "2019-07-01T00:00:00", "314076")
    task = fixed_task()
    before = build_task_data(b.con, task, SPEC)
    assert col(before, "med_lisinopril").sum() > 0
    for t in ("medications", "procedures", "conditions", "observations", "immunizations"):
        b.con.execute(f"DROP TABLE {t}")
    after = build_task_data(b.con, task, SPEC)  # the outcome table is gone too: no positives
    assert after.feature_names == before.feature_names
    assert (after.X[:, [i for i, n in enumerate(after.feature_names)
                        if n.startswith(("cond_", "med_", "proc_"))]] == 0).all()
    assert after.y.sum() == 0 and len(after) >= len(before)


def test_cap_per_patient_is_seeded_and_bounded():
    pids = np.array(["a"] * 5 + ["b"] * 2 + ["c"])
    td = TaskData(np.arange(8, dtype=np.float32)[:, None], np.zeros(8, np.int8), pids,
                  np.zeros(8, "datetime64[D]"), ["x"], {"sex": pids})
    capped = td.cap_per_patient(2, seed=0)
    assert sorted(capped.patient_id) == ["a", "a", "b", "b", "c"]
    assert np.all(np.diff(capped.X[:, 0]) > 0)  # original order kept
    assert capped.X.tolist() == td.cap_per_patient(2, seed=0).X.tolist()
    picks = {tuple(td.cap_per_patient(1, seed=s).X[:, 0]) for s in range(20)}
    assert len(picks) > 3  # the choice within a patient is random, not "first rows"
    with pytest.raises(ValueError, match="max_per_patient"):
        td.cap_per_patient(0, seed=0)
