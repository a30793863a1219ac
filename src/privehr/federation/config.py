"""Study configuration (TOML), validated by pydantic with errors that name the field and the fix."""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Method = Literal["centralised", "site_only", "fedavg", "fedprox", "loso"]
Protection = Literal["none", "dp_local", "secagg", "ddp", "he"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudySection(_Strict):
    name: str = "study"
    seed: int = 7
    task: str = "hypertension_onset"
    model: Literal["logreg", "mlp"] = "logreg"
    hidden: int = Field(16, ge=1, le=1024)
    test_fraction: float = Field(0.3, gt=0.0, lt=0.9)
    min_site_patients: int = Field(50, ge=1)
    bootstrap: int = Field(200, ge=0, le=10_000)


class DataSection(_Strict):
    """Each entry of ``exports`` is one export directory (glob allowed) = one site."""

    exports: list[str] = Field(default_factory=lambda: ["data/synthea/pool/*", "data/synthea/ma-113-synthea-v2.5"])
    store_dir: str = "stores"  # relative to the run directory unless absolute


class FederationSection(_Strict):
    rounds: int = Field(10, ge=1, le=10_000)
    local_epochs: int = Field(2, ge=1)
    lr: float = Field(0.1, gt=0)
    batch_size: int = Field(32, ge=1)
    deadline_s: float = Field(60.0, gt=0)
    setup_deadline_s: float = Field(
        180.0, gt=0, description="first contact (hello): a site loads its task from its store and calibrates its "
        "noise before it answers, which takes longer than a protocol stage")


class PrivacySection(_Strict):
    delta: float | None = Field(None, gt=0, lt=1, description="None: min(1e-5, 1/(10 n)) per site")
    budget_epsilon: float = Field(math.inf, gt=0)
    on_budget_exhausted: Literal["stop", "continue"] = "continue"  # continue = without that site
    clip_norm: float = Field(1.0, gt=0)
    sampling_rate: float = Field(0.1, gt=0, le=1)
    dp_evaluation: bool = True
    stats_share: float = Field(0.1, gt=0, lt=0.5, description="share of a config's ε for standardisation stats")
    dp_standardisation: Literal["public", "dp_stats"] = Field(
        "public", description="private configs: public reference scales (+ DP count) or DP sufficient statistics")
    stats_bound: float = Field(3.0, gt=0, description="per-feature bound after public scaling")
    update_clip: float = Field(10.0, gt=0, description="L2 clip of a FedAvg delta before SecAgg/HE encoding")
    max_site_examples: int = Field(5000, ge=1, description="public bound on a site's example count (SecAgg range)")
    secagg_bits: int = Field(40, ge=16, le=62)
    secagg_degree: int | None = Field(None, ge=2, description="SecAgg+ neighbourhood degree; None = complete graph")
    ddp_rounds: int = Field(60, ge=1)
    ddp_server_lr: float = Field(1.0, gt=0)
    ddp_min_survivor_fraction: float = Field(0.8, gt=0, le=1, description="sites whose noise must be in each sum")
    ddp_gamma: float = Field(0.01, gt=0, description="lattice step: clip/gamma lattice units per patient")
    seeded_noise_for_tests: int | None = Field(None, description="TESTS ONLY: seeded noise; marks the run non-private")


class ConfigEntry(_Strict):
    name: str
    method: Method
    protection: Protection = "none"
    mu: float = Field(0.0, ge=0)
    server_optimizer: Literal["none", "fedavgm", "fedadam"] = "none"
    epsilon: float | None = Field(None, gt=0)
    dropouts: list[tuple[str, str, int]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> ConfigEntry:
        if self.protection in ("dp_local", "ddp") and self.epsilon is None:
            raise ValueError(f"config {self.name!r}: protection {self.protection!r} needs epsilon (e.g. epsilon = 3)")
        if self.method in ("centralised", "site_only", "loso") and self.protection != "none":
            raise ValueError(
                f"config {self.name!r}: method {self.method!r} is a baseline; set protection = 'none'"
            )
        if self.method == "fedprox" and self.mu <= 0:
            raise ValueError(f"config {self.name!r}: fedprox needs mu > 0 (e.g. mu = 0.01)")
        return self


class AttackSection(_Strict):
    enabled: bool = True
    n_shadow: int = Field(16, ge=2)
    audit_canaries: int = Field(200, ge=10)


class StudyConfig(_Strict):
    study: StudySection = StudySection()
    data: DataSection = DataSection()
    federation: FederationSection = FederationSection()
    privacy: PrivacySection = PrivacySection()
    attacks: AttackSection = AttackSection()
    configs: list[ConfigEntry]

    @model_validator(mode="after")
    def _unique(self) -> StudyConfig:
        names = [c.name for c in self.configs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"config names must be unique; repeated: {sorted(dup)}")
        return self

    def config_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


class ConfigError(ValueError):
    """A study file that cannot be used; the message lists every problem with its field path."""


def load_config(path: Path) -> StudyConfig:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, source=str(path))


def parse_config(raw: dict, *, source: str = "<config>") -> StudyConfig:
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {len(exc.errors())} problem(s):"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "<top>"
            lines.append(f"  - {where}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("\n".join(lines)) from None
