"""Built-in tasks, features and site plans on real bundled Synthea exports (via ingest)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from privehr.ehr.features import FeatureSpec, build_task_data
from privehr.ehr.sites import split_by_organization, split_by_source, summarise_sites
from privehr.ehr.store import ingest
from privehr.ehr.tasks import BUILTIN_TASKS

DATA = Path(__file__).parents[2] / "data" / "synthea"
SECRET = bytes(range(32))  # a fixed test secret: pseudonyms are reproducible across runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("real") / "site.duckdb"
    for export in ("ma-113-synthea-v2.5", "pool/dverma11-population-health-workbench",
                   "pool/subratkpadhi-azure-de"):
        ingest(DATA / export, path, secret=SECRET)
    return str(path)


def test_builtin_tasks_on_ma113_have_both_classes(store):
    con = duckdb.connect(store, read_only=True)
    spec = FeatureSpec.default()
    ma = {r[0] for r in con.execute(
        "SELECT patient_id FROM patients WHERE source = 'ma-113-synthea-v2.5'").fetchall()}
    for name, task in BUILTIN_TASKS.items():
        td = build_task_data(con, task, spec)
        td = td.subset(np.isin(td.patient_id, list(ma)))
        assert 0 < td.y.sum() < len(td), name  # both classes present
        if task.level == "patient":
            assert td.n_patients == len(td) >= 40, name
        else:
            assert td.n_patients < len(td), name
        if name == "hypertension_onset":  # prevalent excluded, future not counted
            assert (td.X[:, td.feature_names.index("cond_hypertension")] == 0).all()
    con.close()


def test_latest_bmi_matches_an_independent_pandas_computation(store):
    con = duckdb.connect(store, read_only=True)
    task = BUILTIN_TASKS["mortality_5y"]
    td = build_task_data(con, task, FeatureSpec.default())
    obs = con.execute("SELECT patient_id, date, value_num FROM observations "
                      "WHERE code = '39156-5' AND value_num IS NOT NULL").df()
    con.close()
    bmi = td.X[:, td.feature_names.index("obs_bmi")]
    missing = td.X[:, td.feature_names.index("obs_bmi_missing")]
    assert missing.mean() < 0.5  # MA-113 has observations
    by_patient = dict(tuple(obs.groupby("patient_id")))
    for i, (pid, idx) in enumerate(zip(td.patient_id, td.index_date, strict=True)):
        rows = by_patient.get(pid)
        day = pd.Timestamp(idx)
        if rows is not None:
            d = rows["date"].dt.normalize()
            rows = rows[(d < day) & (d >= day - pd.Timedelta(days=task.lookback_days))]
        if rows is None or rows.empty:
            assert missing[i] == 1 and bmi[i] == 0
        else:
            want = rows.sort_values("date")["value_num"].iloc[-1]
            assert missing[i] == 0 and bmi[i] == pytest.approx(want, rel=1e-6)


def test_sites_on_real_exports(store):
    con = duckdb.connect(store, read_only=True)
    plan = split_by_source(con)
    assert set(plan.sites) == {"ma-113-synthea-v2.5", "subratkpadhi-azure-de"}
    assert "dverma11-population-health-workbench (16)" in plan.notes[0]
    assert sum(len(p) for p in plan.sites.values()) == 113 + 16 + 51
    regions = split_by_organization(con, k=3)
    assert sum(len(p) for p in regions.sites.values()) == 180
    assert all(len(p) >= 50 for p in regions.sites.values())
    td = build_task_data(con, BUILTIN_TASKS["readmission_30d"])
    rows = summarise_sites(regions, regions.split(td))
    assert sum(r["examples"] for r in rows) == len(td)
    assert all(0 <= r["prevalence"] <= 1 for r in rows if r["examples"])
    con.close()
