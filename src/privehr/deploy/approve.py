"""``privehr site approve``: a site runs only studies whose configuration it pinned.

Why pin the configuration hash: the coordinator chooses the task, the model, the ε budget and
the number of rounds. A site's operator reads those once (``approve`` prints them), and the
site then answers only requests for that exact configuration. The site answers from *its own*
saved copy of the approved study, never from whatever the coordinator sends along, so a
coordinator cannot change a study after approval without the hash changing. A request for an
unapproved hash is refused with ``ErrorCode.STUDY_NOT_APPROVED`` before the store is opened.

Files under the site's credentials folder::

    approved/<sha256>.json   the approved StudyConfig (model_dump), one file per study
    approved/index.json      hash -> {name, approved_at, summary}
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privehr.federation import protocol as P
from privehr.federation.config import StudyConfig, load_config, parse_config


class StudyNotApproved(PermissionError):
    """The site has not approved this study hash. Carries the fixed protocol error code."""

    error_code = P.ErrorCode.STUDY_NOT_APPROVED

    def __init__(self, config_hash: str):
        super().__init__(
            f"study hash {config_hash[:16]}… is not approved at this site; its operator must run "
            "`privehr site approve STUDY.toml --credentials SITE_DIR` after reading the study")
        self.config_hash = config_hash


@dataclass(frozen=True)
class Approval:
    """One approved study: its hash and what the operator saw when approving it."""

    config_hash: str
    name: str
    approved_at: str
    summary: dict[str, Any]


def study_summary(cfg: StudyConfig) -> dict[str, Any]:
    """What an operator approves: task, model, ε budget, rounds and every configuration."""
    budget = cfg.privacy.budget_epsilon
    return {
        "study": cfg.study.name, "task": cfg.study.task, "model": cfg.study.model,
        "rounds": cfg.federation.rounds,
        "budget_epsilon": None if math.isinf(budget) else budget,
        "configs": [{"name": c.name, "method": c.method, "protection": c.protection, "epsilon": c.epsilon}
                    for c in cfg.configs],
        "seeded_noise_for_tests": cfg.privacy.seeded_noise_for_tests,
    }


class ApprovalList:
    """The site's approved studies. Reads and writes only the site's own folder."""

    def __init__(self, site_dir: Path):
        self.folder = Path(site_dir) / "approved"

    def _index(self) -> dict[str, dict[str, Any]]:
        path = self.folder / "index.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def approve(self, cfg: StudyConfig) -> Approval:
        from privehr.deploy.site_protection import check_deployable

        check_deployable(cfg)  # refuse at approval, not at the first round
        h = cfg.config_hash()
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{h}.json").write_text(json.dumps(cfg.model_dump(mode="json"), sort_keys=True),
                                               encoding="utf-8")
        index = self._index()
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        index[h] = {"name": cfg.study.name, "approved_at": when, "summary": study_summary(cfg)}
        (self.folder / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
        return Approval(h, cfg.study.name, when, index[h]["summary"])

    def revoke(self, config_hash: str) -> bool:
        index = self._index()
        if config_hash not in index:
            return False
        del index[config_hash]
        (self.folder / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
        (self.folder / f"{config_hash}.json").unlink(missing_ok=True)
        return True

    def approved(self) -> list[Approval]:
        return [Approval(h, v["name"], v["approved_at"], v["summary"]) for h, v in sorted(self._index().items())]

    def is_approved(self, config_hash: str) -> bool:
        return config_hash in self._index() and (self.folder / f"{config_hash}.json").exists()

    def load(self, config_hash: str) -> StudyConfig:
        """The site's own copy of an approved study; its hash is re-checked on every load."""
        if not self.is_approved(config_hash):
            raise StudyNotApproved(config_hash)
        raw = json.loads((self.folder / f"{config_hash}.json").read_text(encoding="utf-8"))
        cfg = parse_config(raw, source=f"approved study {config_hash[:12]}")
        if cfg.config_hash() != config_hash:  # a copy edited after approval is not approved
            raise StudyNotApproved(config_hash)
        return cfg


def approve_file(study_toml: Path, site_dir: Path) -> Approval:
    return ApprovalList(site_dir).approve(load_config(study_toml))
