"""Feature specs and task data: the same columns at every site, from each site's own rows.

A :class:`FeatureSpec` is data (a fixed vocabulary, fixed category lists, a fixed transform).
Nothing in it is *fitted*: no vocabulary learned from frequencies, no means or scales computed
on pooled records. Two sites applying one spec get identical ``feature_names`` whatever their
data, so a model trained on one applies to the other and nothing about a site's patients
leaks through the spec itself.

Feature rules (each example at its index date, look-back window ``[index - L, index)``):

- ``age``: years at the index date, capped at ``age_cap`` (90: ages above 89 are reported as
  90, the HIPAA convention); ``sex_*``, ``race_eth_*`` one-hot over fixed lists (hispanic
  ethnicity takes precedence over race; unknown values fall into ``other``/no sex column).
- ``cond_*``/``med_*``: conditions/medications started before the index date and still active
  at some point in the window (stop NULL or on/after the window start): a chronic diagnosis
  made years ago still counts, one that ended before the window does not.
- ``proc_*`` and ``enc_*``: rows dated inside the window; ``enc_other`` counts classes
  outside the spec's list.
- Counts are ``log1p``-transformed (``count_transform="log1p"``) or raw.
- ``obs_*``: the latest numeric value in the window; ``obs_*_missing`` is 1 (and the value 0)
  when there is none, including when the store has no observations at all.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from privehr.ehr.tasks import Task, existing_tables, select_examples

RACE_ETHNICITY = ("hispanic", "white", "black", "asian", "native", "hawaiian", "other")
SEX = ("F", "M")
AGE_BANDS = ((0, 18, "0-17"), (18, 40, "18-39"), (40, 65, "40-64"), (65, 90, "65-89"),
             (90, 1000, "90+"))
SPEC_FORMAT_VERSION = 1
_KINDS = ("conditions", "medications", "procedures", "observations")
_PREFIX = {"conditions": "cond", "medications": "med", "procedures": "proc",
           "observations": "obs"}


@dataclass(frozen=True)
class VocabEntry:
    """One feature: several codes may map to it (one concept coded differently by versions)."""

    name: str
    codes: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns to build and how; serialisable, hashable, never fitted on data."""

    conditions: tuple[VocabEntry, ...] = ()
    medications: tuple[VocabEntry, ...] = ()
    procedures: tuple[VocabEntry, ...] = ()
    observations: tuple[VocabEntry, ...] = ()
    encounter_classes: tuple[str, ...] = ()
    race_ethnicity: tuple[str, ...] = RACE_ETHNICITY
    sex: tuple[str, ...] = SEX
    age_cap: int = 90
    count_transform: str = "log1p"
    vocabulary: str = "custom"
    version: int = SPEC_FORMAT_VERSION

    def __post_init__(self) -> None:
        problems = []
        names = self.feature_names()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"feature names {dupes} repeat: give each vocabulary entry a "
                            "unique name within its kind")
        if self.count_transform not in ("log1p", "raw"):
            problems.append(f"count_transform={self.count_transform!r}: use 'log1p' or 'raw'")
        if not 0 < self.age_cap <= 120:
            problems.append(f"age_cap={self.age_cap!r}: must be in (0, 120]; 90 is the default")
        if "other" not in self.race_ethnicity:
            problems.append("race_ethnicity must contain 'other' (unknown values go there)")
        if problems:
            raise ValueError("invalid FeatureSpec:\n- " + "\n- ".join(problems))

    @classmethod
    def default(cls) -> FeatureSpec:
        """The spec over the vocabulary shipped with privehr (``vocabulary/default.json``)."""
        return cls.from_vocabulary(load_vocabulary("default"))

    @classmethod
    def from_vocabulary(cls, vocab: Mapping[str, Any], **kwargs: Any) -> FeatureSpec:
        entries = {k: tuple(VocabEntry(e["name"], tuple(str(c) for c in e["codes"]),
                                       e.get("description", "")) for e in vocab.get(k, ()))
                   for k in _KINDS}
        return cls(**entries, encounter_classes=tuple(vocab.get("encounter_classes", ())),
                   vocabulary=f"{vocab.get('name', 'custom')}@{vocab.get('version', 0)}",
                   **kwargs)

    def feature_names(self) -> list[str]:
        names = ["age"] + [f"sex_{s}" for s in self.sex]
        names += [f"race_eth_{r}" for r in self.race_ethnicity]
        for kind in ("conditions", "medications", "procedures"):
            names += [f"{_PREFIX[kind]}_{e.name}" for e in getattr(self, kind)]
        for e in self.observations:
            names += [f"obs_{e.name}", f"obs_{e.name}_missing"]
        names += [f"enc_{c}" for c in self.encounter_classes] + ["enc_other"]
        return names

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Rebuild a spec from ``to_dict`` output; unknown keys are an error, never ignored."""
        d = dict(data)
        if int(d.get("version", SPEC_FORMAT_VERSION)) > SPEC_FORMAT_VERSION:
            raise ValueError(f"FeatureSpec version={d['version']!r}: this privehr reads <= "
                             f"{SPEC_FORMAT_VERSION}; upgrade privehr to load this spec")
        try:
            for kind in _KINDS:
                d[kind] = tuple(VocabEntry(e["name"], tuple(str(c) for c in e["codes"]),
                                           e.get("description", "")) for e in d.get(kind, ()))
            for k in ("encounter_classes", "race_ethnicity", "sex"):
                if k in d:
                    d[k] = tuple(d[k])
            return cls(**d)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"spec dict does not match the FeatureSpec format "
                             f"v{SPEC_FORMAT_VERSION}: {exc}; build it with "
                             "FeatureSpec.to_dict()") from exc

    def config_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_vocabulary(name: str = "default") -> dict[str, Any]:
    """Load a vocabulary shipped in ``privehr/ehr/vocabulary/<name>.json``."""
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"vocabulary name={name!r}: use a bare name such as 'default'")
    ref = resources.files("privehr.ehr").joinpath("vocabulary", f"{name}.json")
    return json.loads(ref.read_text(encoding="utf-8"))


@dataclass
class TaskData:
    """Examples of one task at one site (or several sites, after ``concat``).

    ``patient_id`` holds store pseudonyms: later stages clip or cap per patient with it.
    """

    X: np.ndarray
    y: np.ndarray
    patient_id: np.ndarray
    index_date: np.ndarray
    feature_names: list[str]
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    task_name: str = ""
    task_hash: str = ""
    spec_hash: str = ""

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_patients(self) -> int:
        return int(len(np.unique(self.patient_id)))

    @property
    def prevalence(self) -> float:
        return float(np.mean(self.y)) if len(self) else float("nan")

    def subset(self, mask: np.ndarray | Sequence[int]) -> TaskData:
        """Rows selected by a boolean mask or integer indices (a copy)."""
        m = np.asarray(mask)
        if m.dtype == bool and m.shape != (len(self),):
            raise ValueError(f"mask has shape {m.shape}; expected ({len(self)},) booleans "
                             "or integer indices")
        return TaskData(self.X[m], self.y[m], self.patient_id[m], self.index_date[m],
                        list(self.feature_names), {k: v[m] for k, v in self.groups.items()},
                        self.task_name, self.task_hash, self.spec_hash)

    def save(self, path: str | Path) -> None:
        """Write to one ``.npz`` (no pickle: every array is numeric, date or unicode)."""
        meta = json.dumps({"feature_names": self.feature_names, "task_name": self.task_name,
                           "task_hash": self.task_hash, "spec_hash": self.spec_hash,
                           "groups": sorted(self.groups)})
        arrays = {f"group_{k}": np.asarray(v).astype(str) for k, v in self.groups.items()}
        np.savez_compressed(path, X=self.X, y=self.y, patient_id=self.patient_id.astype(str),
                            index_date=self.index_date, meta=np.array(meta), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> TaskData:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(X=z["X"], y=z["y"], patient_id=z["patient_id"],
                       index_date=z["index_date"], feature_names=list(meta["feature_names"]),
                       groups={k: z[f"group_{k}"] for k in meta["groups"]},
                       task_name=meta["task_name"], task_hash=meta["task_hash"],
                       spec_hash=meta["spec_hash"])

    def cap_per_patient(self, max_per_patient: int, seed: int) -> TaskData:
        """Keep at most ``max_per_patient`` examples per patient, drawn uniformly (seeded).

        For encounter-level tasks: with a cap of m rows per patient, a patient-level DP bound
        follows from the per-row one (group privacy over m rows), or per-patient clipping can
        work on a bounded number of rows. Order of the kept rows is preserved.
        """
        if not isinstance(max_per_patient, int) or max_per_patient < 1:
            raise ValueError(f"max_per_patient={max_per_patient!r}: must be an int >= 1")
        rng = np.random.default_rng(seed)
        order = np.lexsort((rng.random(len(self)), self.patient_id))
        pids = self.patient_id[order]
        starts = np.r_[0, np.flatnonzero(pids[1:] != pids[:-1]) + 1]
        rank = np.arange(len(self)) - np.repeat(starts, np.diff(np.r_[starts, len(self)]))
        keep = np.zeros(len(self), dtype=bool)
        keep[order[rank < max_per_patient]] = True
        return self.subset(keep)

    @staticmethod
    def concat(parts: Sequence[TaskData]) -> TaskData:
        """Stack parts built with the same task and spec (feature names must match)."""
        if not parts:
            raise ValueError("concat needs at least one TaskData")
        first = parts[0]
        for i, p in enumerate(parts[1:], 1):
            if p.feature_names != first.feature_names or p.spec_hash != first.spec_hash:
                raise ValueError(f"part {i} has other feature names/spec than part 0: build "
                                 "every part with the same FeatureSpec")
            if p.task_hash != first.task_hash:
                raise ValueError(f"part {i} was built for task {p.task_name!r} "
                                 f"({p.task_hash}), part 0 for {first.task_name!r}")
        return TaskData(
            np.concatenate([p.X for p in parts]), np.concatenate([p.y for p in parts]),
            np.concatenate([p.patient_id for p in parts]),
            np.concatenate([p.index_date for p in parts]), list(first.feature_names),
            {k: np.concatenate([p.groups[k] for p in parts]) for k in first.groups},
            first.task_name, first.task_hash, first.spec_hash)


# --------------------------------------------------------------------------------- building

def _vocab_frame(entries: Sequence[VocabEntry], cols: Mapping[str, int], prefix: str,
                 ) -> pd.DataFrame:
    rows = [(str(code), cols[f"{prefix}_{e.name}"]) for e in entries for code in e.codes]
    return pd.DataFrame(rows, columns=["code", "col"]).astype({"code": str, "col": "int64"})


@contextmanager
def _registered(con: Any, frame: pd.DataFrame) -> Iterator[str]:
    """Register ``frame`` under a fresh name for one query block, then remove it (works on
    read-only connections and leaves nothing behind in the store)."""
    name = f"_privehr_{uuid.uuid4().hex[:12]}"
    con.register(name, frame)
    try:
        yield name
    finally:
        con.unregister(name)


_WINDOW = "CAST({d} AS DATE) >= x.index_date - CAST($lookback AS INTEGER)"
# conditions/medications: started before the index day and active at some point in the window
_ACTIVE = ("CAST(t.start AS DATE) < x.index_date AND (t.stop IS NULL OR "
           + _WINDOW.format(d="t.stop") + ")")
# procedures/encounters: dated inside the window
_IN_WINDOW = "CAST(t.start AS DATE) < x.index_date AND " + _WINDOW.format(d="t.start")


def _demographics(con: Any, ex: str, spec: FeatureSpec, X: np.ndarray,
                  cols: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Fill age/sex/race-ethnicity columns; return the subgroup labels."""
    demo = con.execute(
        "SELECT x.ex, p.sex, lower(coalesce(p.race, '')) AS race, "  # noqa: S608 (allowlisted names)
        "lower(coalesce(p.ethnicity, '')) AS eth, "
        "date_diff('day', p.birthdate, CAST(x.index_date AS DATE)) / 365.25 AS age "
        f"FROM {ex} x JOIN patients p USING (patient_id) ORDER BY x.ex").df()
    age = np.minimum(demo["age"].to_numpy(dtype=np.float64), spec.age_cap)
    X[:, cols["age"]] = age
    sex = np.array([s if s in spec.sex else "unknown" for s in demo["sex"].fillna("")])
    for s in spec.sex:
        X[:, cols[f"sex_{s}"]] = sex == s
    race = np.where(demo["eth"].to_numpy() == "hispanic", "hispanic", demo["race"])
    race = np.array([r if r in spec.race_ethnicity else "other" for r in race])
    for r in spec.race_ethnicity:
        X[:, cols[f"race_eth_{r}"]] = race == r
    return {"sex": sex.astype(str), "race_ethnicity": race.astype(str),
            "age_band": age_bands(age)}


def _counts(con: Any, ex: str, spec: FeatureSpec, present: set[str],
            cols: Mapping[str, int], params: Mapping[str, Any]) -> list[pd.DataFrame]:
    """Long-format (ex, col, val) counts of vocabulary codes and encounter classes."""
    out = []
    for kind, cond in (("conditions", _ACTIVE), ("medications", _ACTIVE),
                       ("procedures", _IN_WINDOW)):
        entries = getattr(spec, kind)
        if kind not in present or not entries:
            continue  # a missing table means zero counts, never a failure
        with _registered(con, _vocab_frame(entries, cols, _PREFIX[kind])) as v:
            out.append(con.execute(
                f"SELECT x.ex, v.col, count(*)::DOUBLE AS val FROM {ex} x "  # noqa: S608 (allowlisted names)
                f"JOIN {kind} t ON t.patient_id = x.patient_id JOIN {v} v ON v.code = t.code "
                f"WHERE {cond} GROUP BY x.ex, v.col", params).df())
    enc = pd.DataFrame({"cls": [str(c) for c in spec.encounter_classes],
                        "col": [cols[f"enc_{c}"] for c in spec.encounter_classes]})
    with _registered(con, enc.astype({"col": "int64"})) as v:
        out.append(con.execute(
            f"SELECT x.ex, coalesce(v.col, {cols['enc_other']}) AS col, "  # noqa: S608 (allowlisted names)
            f"count(*)::DOUBLE AS val FROM {ex} x JOIN encounters t "
            f"ON t.patient_id = x.patient_id LEFT JOIN {v} v ON v.cls = lower(t.encounter_class) "
            f"WHERE {_IN_WINDOW} GROUP BY ALL", params).df())
    return out


def _labs(con: Any, ex: str, spec: FeatureSpec, present: set[str], X: np.ndarray,
          cols: Mapping[str, int], params: Mapping[str, Any]) -> None:
    """Latest numeric value per LOINC feature in the window, with its missing indicator."""
    for e in spec.observations:
        X[:, cols[f"obs_{e.name}_missing"]] = 1.0
    if "observations" not in present or not spec.observations:
        return
    with _registered(con, _vocab_frame(spec.observations, cols, "obs")) as v:
        labs = con.execute(
            f"SELECT x.ex, v.col, arg_max(t.value_num, t.date) AS val FROM {ex} x "  # noqa: S608 (allowlisted names)
            f"JOIN observations t ON t.patient_id = x.patient_id "
            f"JOIN {v} v ON v.code = t.code WHERE t.value_num IS NOT NULL "
            f"AND CAST(t.date AS DATE) < x.index_date AND {_WINDOW.format(d='t.date')} "
            f"GROUP BY x.ex, v.col", params).df()
    rows, vcol = labs["ex"].to_numpy(), labs["col"].to_numpy()
    X[rows, vcol] = labs["val"].to_numpy(dtype=np.float64)
    X[rows, vcol + 1] = 0.0  # the missing indicator sits right after its value


def build_task_data(con: Any, task: Task, spec: FeatureSpec | None = None) -> TaskData:
    """Select a task's examples in ``con`` (a DuckDB connection to one store) and featurise.

    All heavy lifting is DuckDB SQL over the whole cohort at once (no per-patient loops);
    long-format results are scattered into a dense float32 matrix. Works on read-only
    connections.
    """
    spec = spec or FeatureSpec.default()
    present = existing_tables(con)
    missing = [t for t in ("patients", "encounters") if t not in present]
    if missing:
        raise ValueError(f"store lacks tables {missing}: create it with "
                         "privehr.ehr.schema.create_all and ingest an export first")
    ex = select_examples(con, task)
    names = spec.feature_names()
    cols = {n: i for i, n in enumerate(names)}
    X = np.zeros((len(ex), len(names)), dtype=np.float32)
    empty = np.array([], dtype=str)
    groups = {"sex": empty, "race_ethnicity": empty, "age_band": empty}
    if len(ex):
        frame = pd.DataFrame({
            "ex": np.arange(len(ex), dtype=np.int64),
            "patient_id": ex["patient_id"].astype(str).to_numpy(),
            # datetime.date objects register as DuckDB DATE
            "index_date": pd.to_datetime(ex["index_date"]).dt.date.astype(object)})
        params = {"lookback": task.lookback_days}
        with _registered(con, frame) as exv:
            groups = _demographics(con, exv, spec, X, cols)
            for c in _counts(con, exv, spec, present, cols, params):
                val = c["val"].to_numpy(dtype=np.float64)
                X[c["ex"].to_numpy(), c["col"].to_numpy()] = (
                    np.log1p(val) if spec.count_transform == "log1p" else val)
            _labs(con, exv, spec, present, X, cols, params)
    return TaskData(
        X=X, y=ex["y"].to_numpy(dtype=np.int8),
        patient_id=np.asarray(ex["patient_id"].astype(str).tolist(), dtype=str),
        index_date=pd.to_datetime(ex["index_date"]).to_numpy().astype("datetime64[D]"),
        feature_names=names, groups=groups, task_name=task.name,
        task_hash=task.config_hash(), spec_hash=spec.config_hash())


def age_bands(age: np.ndarray) -> np.ndarray:
    """Subgroup labels for capped ages (``AGE_BANDS``)."""
    out = np.empty(len(age), dtype=object)
    for lo, hi, label in AGE_BANDS:
        out[(age >= lo) & (age < hi)] = label
    return out.astype(str)
