"""Split one store into simulated sites, or treat each export of a pool as one site.

A :class:`SitePlan` maps site names to patient pseudonyms. Splits are always by *patient*
(never by example), so an encounter-level task keeps all of a patient's examples at one site
and the patient stays the privacy unit.

Small sites are not allowed to pass silently: a site below ``min_patients`` (default 50) is
merged (into a remainder site, or into the smallest qualifying site when the remainder itself
is too small) or excluded, and the plan's ``notes`` say which. Site-only baselines and
confidence intervals on a dozen patients mean nothing.

What this does not protect: a plan lists pseudonyms of every site. It is for simulations on
one machine (one store holding several exports); in a deployment each site only knows its
own store and no plan crosses the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privehr.ehr.features import TaskData

SMALL_POLICIES = ("merge", "exclude")
REMAINDER = "remainder"


@dataclass(frozen=True)
class SitePlan:
    """Site name -> patient pseudonyms, with the notes of every merge or exclusion."""

    sites: Mapping[str, tuple[str, ...]]
    method: str
    min_patients: int
    notes: tuple[str, ...] = ()
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def site_names(self) -> list[str]:
        return list(self.sites)

    def assignment(self) -> dict[str, str]:
        """Patient pseudonym -> site name."""
        return {pid: s for s, pids in self.sites.items() for pid in pids}

    def site_of(self, patient_ids: np.ndarray | Sequence[str]) -> np.ndarray:
        """Site of each id ('' for patients not in any site, e.g. excluded)."""
        a = self.assignment()
        return np.array([a.get(str(p), "") for p in patient_ids], dtype=object).astype(str)

    def split(self, data: TaskData) -> dict[str, TaskData]:
        """Examples of each site (all examples of a patient go to the patient's site)."""
        where = self.site_of(data.patient_id)
        return {s: data.subset(where == s) for s in self.sites}

    def to_dict(self) -> dict[str, Any]:
        return {"sites": {k: list(v) for k, v in self.sites.items()}, "method": self.method,
                "min_patients": self.min_patients, "notes": list(self.notes),
                "sources": {k: list(v) for k, v in self.sources.items()},
                "excluded": list(self.excluded), "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SitePlan:
        return cls(sites={k: tuple(v) for k, v in d["sites"].items()}, method=d["method"],
                   min_patients=int(d["min_patients"]), notes=tuple(d.get("notes", ())),
                   sources={k: tuple(v) for k, v in d.get("sources", {}).items()},
                   excluded=tuple(d.get("excluded", ())), params=dict(d.get("params", {})))


def _check(min_patients: int, small: str, k: int | None = None,
           alpha: float | None = None) -> None:
    problems = []
    if not isinstance(min_patients, int) or min_patients < 1:
        problems.append(f"min_patients={min_patients!r}: must be an int >= 1 (default 50)")
    if small not in SMALL_POLICIES:
        problems.append(f"small={small!r}: must be one of {SMALL_POLICIES}")
    if k is not None and (not isinstance(k, int) or k < 2):
        problems.append(f"k={k!r}: need an int >= 2 sites")
    if alpha is not None and not alpha > 0:
        problems.append(f"alpha={alpha!r}: Dirichlet concentration must be > 0 "
                        "(0.1 very skewed, 100 near IID)")
    if problems:
        raise ValueError("invalid site split:\n- " + "\n- ".join(problems))


def _enforce_minimum(groups: Mapping[str, Sequence[str]], min_patients: int, small: str,
                     ) -> tuple[dict[str, list[str]], dict[str, list[str]], list[str], list[str]]:
    """Apply the small-site policy. Returns (sites, members: site -> group names, notes,
    excluded pseudonyms)."""
    big = {g: list(p) for g, p in groups.items() if len(p) >= min_patients}
    tiny = {g: list(p) for g, p in groups.items() if len(p) < min_patients}
    members = {g: [g] for g in big}
    notes: list[str] = []
    excluded: list[str] = []
    if tiny and small == "exclude":
        for g, p in tiny.items():
            excluded += p
            notes.append(f"site {g!r}: {len(p)} patients < min_patients={min_patients}: "
                         "excluded")
    elif tiny:
        rest = [pid for p in tiny.values() for pid in p]
        shown = [f"{g} ({len(p)})" for g, p in tiny.items()]
        names = ", ".join(shown[:8]) + (f", ... {len(shown) - 8} more" if len(shown) > 8 else "")
        if len(rest) >= min_patients:
            name = REMAINDER if REMAINDER not in big else f"{REMAINDER}-merged"
            big[name], members[name] = rest, list(tiny)
            notes.append(f"{len(tiny)} site(s) below min_patients={min_patients} merged into "
                         f"{name!r} ({len(rest)} patients): {names}")
        elif big:
            target = min(big, key=lambda g: (len(big[g]), g))
            big[target] += rest
            members[target] += list(tiny)
            notes.append(f"{len(tiny)} site(s) below min_patients={min_patients} ({names}) total "
                         f"{len(rest)} patients, too few for a site of their own: merged "
                         f"into the smallest site {target!r}")
    if not big:
        sizes = sorted((len(p) for p in groups.values()), reverse=True)
        raise ValueError(f"no site reaches min_patients={min_patients} (sizes {sizes[:5]}, "
                         f"total {sum(sizes)}): lower min_patients, use fewer sites, or add "
                         "data")
    return {g: sorted(p) for g, p in big.items()}, members, notes, sorted(excluded)


def _plan(groups: Mapping[str, Sequence[str]], method: str, min_patients: int, small: str,
          params: Mapping[str, Any] | None = None,
          labels: Mapping[str, Sequence[str]] | None = None) -> SitePlan:
    """Build a plan; ``labels`` names what each group is made of (sources, cities): a site's
    ``sources`` lists the labels of every group merged into it."""
    sites, members, notes, excluded = _enforce_minimum(groups, min_patients, small)
    sources = ({s: tuple(lab for g in members[s] for lab in labels[g]) for s in sites}
               if labels is not None else {})
    return SitePlan(sites={s: tuple(p) for s, p in sites.items()}, method=method,
                    min_patients=min_patients, notes=tuple(notes), sources=sources,
                    excluded=tuple(excluded), params=dict(params or {}))


def split_by_source(con: Any, min_patients: int = 50, small: str = "merge") -> SitePlan:
    """Each export/source label in the store is one site (a natural hospital)."""
    _check(min_patients, small)
    rows = con.execute("SELECT source, list(patient_id ORDER BY patient_id) FROM patients "
                       "GROUP BY source ORDER BY source").fetchall()
    groups = {str(s): list(p) for s, p in rows}
    return _plan(groups, "source", min_patients, small, labels={g: [g] for g in groups})


def split_by_organization(con: Any, min_patients: int = 50, small: str = "merge",
                          k: int | None = None) -> SitePlan:
    """Group patients by the city (and state) of their primary organization.

    The primary organization is ``patients.primary_org_id``, or, when that is NULL, the
    organization of most of the patient's encounters. Patients with no known organization
    or city go to a group named ``unknown``.

    With ``k=None`` every city is a site and small cities are merged into a remainder site.
    Synthea spreads one export over dozens of cities (MA-113: 66 cities, none above 7
    patients), so ``k`` packs whole cities into ``k`` regional sites of similar size
    (largest city first, into the currently smallest site): a city's patients stay together,
    so sites differ the way catchment areas do. ``sources`` lists each site's cities.
    """
    _check(min_patients, small, k)
    rows = con.execute("""
        WITH enc_org AS (
            SELECT patient_id, organization_id, count(*) AS n FROM encounters
            WHERE organization_id IS NOT NULL GROUP BY ALL),
        top AS (SELECT patient_id, arg_max(organization_id, n) AS org FROM enc_org
                GROUP BY patient_id),
        prim AS (SELECT p.patient_id, coalesce(p.primary_org_id, t.org) AS org
                 FROM patients p LEFT JOIN top t USING (patient_id))
        SELECT coalesce(o.city || coalesce(', ' || o.state, ''), 'unknown') AS grp,
               list(prim.patient_id ORDER BY prim.patient_id)
        FROM prim LEFT JOIN organizations o ON o.organization_id = prim.org
        GROUP BY grp ORDER BY grp
    """).fetchall()
    cities = {str(g): list(p) for g, p in rows}
    if k is None:
        return _plan(cities, "organization_city", min_patients, small,
                     labels={c: [c] for c in cities})
    regions: list[list[str]] = [[] for _ in range(k)]
    members: list[list[str]] = [[] for _ in range(k)]
    for city in sorted(cities, key=lambda c: (-len(cities[c]), c)):
        i = min(range(k), key=lambda j: (len(regions[j]), j))
        regions[i] += cities[city]
        members[i].append(city)
    return _plan({f"region-{i + 1}": r for i, r in enumerate(regions)}, "organization_region",
                 min_patients, small, {"k": k},
                 labels={f"region-{i + 1}": m for i, m in enumerate(members)})


def _patient_labels(patient_ids: Sequence[str] | np.ndarray, y: Sequence[int] | np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted pseudonyms and a patient-level label (1 if any example is positive)."""
    pids = np.asarray(patient_ids).astype(str)
    yy = np.asarray(y)
    if pids.shape != yy.shape or pids.ndim != 1:
        raise ValueError(f"patient_ids has shape {pids.shape}, y has shape {yy.shape}: pass "
                         "one label per example (e.g. task_data.patient_id, task_data.y)")
    if not np.isin(yy, (0, 1)).all():
        raise ValueError("y must hold 0/1 labels")
    uniq, inv = np.unique(pids, return_inverse=True)
    lab = np.zeros(len(uniq), dtype=np.int8)
    np.maximum.at(lab, inv, yy.astype(np.int8))
    return uniq, lab


def split_dirichlet(patient_ids: Sequence[str] | np.ndarray, y: Sequence[int] | np.ndarray,
                    k: int, alpha: float, seed: int, min_patients: int = 50,
                    small: str = "merge") -> SitePlan:
    """Seeded label-skew (non-IID) split: each class is spread over ``k`` sites with
    proportions drawn from Dirichlet(alpha). Small alpha, skewed sites; large, near IID."""
    _check(min_patients, small, k, alpha)
    uniq, lab = _patient_labels(patient_ids, y)
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {f"site-{i + 1}": [] for i in range(k)}
    for c in (0, 1):
        members = uniq[lab == c]
        members = members[rng.permutation(len(members))]
        props = rng.dirichlet(np.full(k, float(alpha)))
        cuts = (np.cumsum(props)[:-1] * len(members)).round().astype(int)
        for i, part in enumerate(np.split(members, cuts)):
            groups[f"site-{i + 1}"] += part.tolist()
    return _plan(groups, "dirichlet", min_patients, small,
                 {"k": k, "alpha": alpha, "seed": seed})


def split_stratified(patient_ids: Sequence[str] | np.ndarray, y: Sequence[int] | np.ndarray,
                     k: int, seed: int, min_patients: int = 50, small: str = "merge",
                     ) -> SitePlan:
    """Seeded IID split: patients dealt round-robin within each (shuffled) label class, so
    every site gets the same size and prevalence up to one patient."""
    _check(min_patients, small, k)
    uniq, lab = _patient_labels(patient_ids, y)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(lab == c)) for c in (1, 0)])
    groups = {f"site-{i + 1}": uniq[order[i::k]].tolist() for i in range(k)}
    return _plan(groups, "stratified", min_patients, small, {"k": k, "seed": seed})


SPLIT_METHODS = ("source", "organization", "stratified", "dirichlet")


def plan_sites(con: Any, method: str, data: TaskData | None = None, *, k: int | None = None,
               alpha: float = 0.5, seed: int = 0, min_patients: int = 50,
               small: str = "merge") -> SitePlan:
    """One entry point for ``privehr sites``: dispatch on ``method``.

    ``source`` and ``organization`` (with optional ``k`` regions) read the store;
    ``stratified`` and ``dirichlet`` split the patients of ``data`` (a task's examples) into
    ``k`` sites by their labels.
    """
    if method == "source":
        return split_by_source(con, min_patients, small)
    if method == "organization":
        return split_by_organization(con, min_patients, small, k)
    if method in ("stratified", "dirichlet"):
        if data is None or k is None:
            raise ValueError(f"method={method!r} splits a task's patients by label: pass "
                             "data=build_task_data(...) and k=<number of sites>")
        if method == "stratified":
            return split_stratified(data.patient_id, data.y, k, seed, min_patients, small)
        return split_dirichlet(data.patient_id, data.y, k, alpha, seed, min_patients, small)
    raise ValueError(f"method={method!r}: must be one of {SPLIT_METHODS}")


def summarise_sites(plan: SitePlan, task_data_by_site: Mapping[str, TaskData],
                    ) -> list[dict[str, Any]]:
    """One row per site: patients in the plan, cohort patients, examples, positives and
    outcome prevalence (None for a site without examples; rows are JSON-ready)."""
    rows = []
    for site in [*plan.sites, *(s for s in task_data_by_site if s not in plan.sites)]:
        td = task_data_by_site.get(site)
        n_ex = len(td) if td is not None else 0
        pos = int(np.sum(td.y)) if td is not None else 0
        rows.append({"site": site, "patients": len(plan.sites.get(site, ())),
                     "cohort_patients": td.n_patients if td is not None else 0,
                     "examples": n_ex, "positives": pos,
                     "prevalence": pos / n_ex if n_ex else None})
    return rows
