"""Site plans: natural (source, organization city) and seeded synthetic splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from store_factory import StoreBuilder, synthetic_store

from privehr.ehr.features import FeatureSpec, build_task_data
from privehr.ehr.sites import (
    SitePlan,
    plan_sites,
    split_by_organization,
    split_by_source,
    split_dirichlet,
    split_stratified,
    summarise_sites,
)
from privehr.ehr.tasks import BUILTIN_TASKS


def pool_store() -> StoreBuilder:
    b = StoreBuilder()
    for src, n, seed in (("big-a", 60, 1), ("big-b", 80, 2), ("tiny-1", 16, 3), ("tiny-2", 40, 4)):
        synthetic_store(n=n, seed=seed, source=src, builder=b)
    return b


def ids_and_labels(n: int = 400, prevalence: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    pids = np.array([f"p{i:04d}" for i in range(n)])
    y = (rng.random(n) < prevalence).astype(np.int8)
    return pids, y


def test_split_by_source_merges_small_sites_into_remainder():
    plan = split_by_source(pool_store().con)
    assert plan.site_names == ["big-a", "big-b", "remainder"]
    assert [len(plan.sites[s]) for s in plan.site_names] == [60, 80, 56]
    assert plan.sources["remainder"] == ("tiny-1", "tiny-2")
    assert len(plan.notes) == 1 and "tiny-1 (16)" in plan.notes[0]
    assert plan.excluded == ()


def test_split_by_source_small_remainder_goes_to_smallest_site_or_is_excluded():
    b = StoreBuilder()
    for src, n, seed in (("big-a", 60, 1), ("big-b", 80, 2), ("tiny", 16, 3)):
        synthetic_store(n=n, seed=seed, source=src, builder=b)
    merged = split_by_source(b.con)
    assert {s: len(p) for s, p in merged.sites.items()} == {"big-a": 76, "big-b": 80}
    assert merged.sources["big-a"] == ("big-a", "tiny") and "smallest site 'big-a'" in merged.notes[0]
    dropped = split_by_source(b.con, small="exclude")
    assert {s: len(p) for s, p in dropped.sites.items()} == {"big-a": 60, "big-b": 80}
    assert len(dropped.excluded) == 16 and "excluded" in dropped.notes[0]
    assert split_by_source(b.con, min_patients=10).notes == ()
    with pytest.raises(ValueError, match="no site reaches min_patients=500"):
        split_by_source(b.con, min_patients=500)


def test_split_by_organization_groups_by_city_with_fallback():
    b = StoreBuilder()
    for city, oid in (("Boston", "o1"), ("Worcester", "o2"), ("Salem", "o3")):
        b.organization(oid, city)
    for i in range(6):
        b.patient(f"bos{i}", "1970-01-01", org="o1")
    for i in range(5):  # no primary org: the organization of most encounters decides
        b.patient(f"wor{i}", "1970-01-01")
        b.encounter(f"wor{i}", "2020-01-01T00:00:00", org="o2")
        b.encounter(f"wor{i}", "2020-02-01T00:00:00", org="o2")
        b.encounter(f"wor{i}", "2020-03-01T00:00:00", org="o1")
    b.patient("sal0", "1970-01-01", org="o3")
    b.patient("nowhere", "1970-01-01")
    plan = split_by_organization(b.con, min_patients=5)
    assert plan.sites["Boston, MA"] == tuple(f"bos{i}" for i in range(6))
    # Salem (1) and unknown (1) are too small alone and together: merged into the smallest
    assert set(plan.sites) == {"Boston, MA", "Worcester, MA"}
    assert set(plan.sites["Worcester, MA"]) == {f"wor{i}" for i in range(5)} | {"sal0",
                                                                                "nowhere"}
    assert plan.sources["Worcester, MA"] == ("Worcester, MA", "Salem, MA", "unknown")


def test_split_by_organization_packs_cities_into_k_regions():
    b = StoreBuilder()
    sizes = {"A": 9, "B": 7, "C": 5, "D": 4, "E": 3, "F": 2}
    for j, (city, n) in enumerate(sizes.items()):
        b.organization(f"o{j}", city)
        for i in range(n):
            b.patient(f"{city}{i}", "1970-01-01", org=f"o{j}")
    plan = split_by_organization(b.con, min_patients=5, k=3)
    assert plan.method == "organization_region" and plan.params == {"k": 3}
    assert {s: len(p) for s, p in plan.sites.items()} == {"region-1": 11, "region-2": 10,
                                                          "region-3": 9}
    # greedy: A->1, B->2, C->3, D->3, E->2, F->1; a city is never split across sites
    assert plan.sources == {"region-1": ("A, MA", "F, MA"), "region-2": ("B, MA", "E, MA"),
                            "region-3": ("C, MA", "D, MA")}
    assert split_by_organization(b.con, min_patients=5, k=3).sites == plan.sites
    few = split_by_organization(b.con, min_patients=11, k=3)  # regions 2 and 3 are too small
    assert {s: len(p) for s, p in few.sites.items()} == {"region-1": 11, "remainder": 19}
    assert few.sources["remainder"] == ("B, MA", "E, MA", "C, MA", "D, MA") and few.notes


def test_stratified_split_is_seeded_balanced_and_patient_level():
    pids, y = ids_and_labels()
    pids = np.concatenate([pids, pids[:50]])  # repeated patients (encounter-level task)
    y = np.concatenate([y, np.ones(50, np.int8)])
    plan = split_stratified(pids, y, k=4, seed=7)
    again = split_stratified(pids[::-1], y[::-1], k=4, seed=7)
    assert plan.sites == again.sites  # input order does not matter
    assert plan.sites != split_stratified(pids, y, k=4, seed=8).sites
    sizes = [len(p) for p in plan.sites.values()]
    assert sum(sizes) == 400 and max(sizes) - min(sizes) <= 1
    assert len(set().union(*plan.sites.values())) == 400  # disjoint, complete
    ylab = dict(zip(pids, y, strict=True))  # last label wins; patient-level label is max
    ypat = {p: max(v for q, v in zip(pids, y, strict=True) if q == p) for p in ylab}
    prev = [np.mean([ypat[p] for p in plan.sites[s]]) for s in plan.sites]
    assert max(prev) - min(prev) < 0.02


def test_dirichlet_split_skews_labels_and_merges_small_sites():
    pids, y = ids_and_labels(n=600, prevalence=0.5)
    iid = split_dirichlet(pids, y, k=3, alpha=1000.0, seed=1, min_patients=20)
    skew = split_dirichlet(pids, y, k=3, alpha=0.3, seed=1, min_patients=20)
    ylab = dict(zip(pids, y, strict=True))

    def spread(plan):
        prev = [np.mean([ylab[p] for p in v]) for v in plan.sites.values()]
        return max(prev) - min(prev)

    assert spread(iid) < 0.1 < spread(skew)
    assert split_dirichlet(pids, y, k=3, alpha=0.3, seed=1, min_patients=20).sites == skew.sites
    many = split_dirichlet(pids, y, k=12, alpha=0.2, seed=3, min_patients=40)
    assert all(len(p) >= 40 for p in many.sites.values())
    assert many.notes and sum(len(p) for p in many.sites.values()) == 600
    sparse = split_dirichlet(pids, y, k=20, alpha=0.01, seed=0, min_patients=20)
    named = " ".join(sparse.notes)
    assert sum(len(p) for p in sparse.sites.values()) == 600
    dropped = 20 - len([s for s in sparse.sites if s.startswith("site-")])
    assert f"{dropped} site(s) below" in named and "site-" in named  # empty sites counted too
    with pytest.raises(ValueError, match="alpha=0"):
        split_dirichlet(pids, y, k=3, alpha=0, seed=1)
    with pytest.raises(ValueError, match="k=1"):
        split_stratified(pids, y, k=1, seed=1)
    with pytest.raises(ValueError, match="one label per example"):
        split_stratified(pids, y[:-1], k=2, seed=1)


def test_plan_splits_task_data_and_summarises():
    b = pool_store()
    td = build_task_data(b.con, BUILTIN_TASKS["readmission_30d"], FeatureSpec.default())
    plan = split_by_source(b.con)
    by_site = plan.split(td)
    assert sum(len(v) for v in by_site.values()) == len(td)
    for site, part in by_site.items():
        assert set(part.patient_id) <= set(plan.sites[site])
    rows = summarise_sites(plan, by_site)
    assert [r["site"] for r in rows] == plan.site_names
    for r in rows:
        part = by_site[r["site"]]
        assert r["patients"] == len(plan.sites[r["site"]])
        assert r["examples"] == len(part) and r["cohort_patients"] == part.n_patients
        assert r["prevalence"] == pytest.approx(part.y.mean())
    empty = summarise_sites(plan, {})
    assert all(r["examples"] == 0 and r["prevalence"] is None for r in empty)
    json.dumps(rows + empty)  # JSON-ready rows
    back = SitePlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert back == plan


def test_plan_sites_dispatches():
    b = pool_store()
    td = build_task_data(b.con, BUILTIN_TASKS["mortality_5y"], FeatureSpec.default())
    assert plan_sites(b.con, "source").sites == split_by_source(b.con).sites
    assert plan_sites(b.con, "organization", min_patients=5).method == "organization_city"
    strat = plan_sites(b.con, "stratified", td, k=2, seed=3, min_patients=10)
    assert strat.sites == split_stratified(td.patient_id, td.y, 2, 3, 10).sites
    diri = plan_sites(b.con, "dirichlet", td, k=2, alpha=0.5, seed=3, min_patients=10)
    assert diri.params == {"k": 2, "alpha": 0.5, "seed": 3}
    with pytest.raises(ValueError, match="pass data="):
        plan_sites(b.con, "stratified", k=2)
    with pytest.raises(ValueError, match="one of"):
        plan_sites(b.con, "random")
