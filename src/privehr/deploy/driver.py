"""Coordinator side of a deployed study: the simulator's round loop over the Flower transport.

``federation.drive.drive`` is the one round loop both the simulator and a deployment run, so a
deployed run over the same stores and seeds reproduces the in-process simulator's model. Here
only the coordinator half of a protection mode is built: in a deployment the sites are other
machines and no site data is ever touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.coordinator import Transport
from privehr.federation.drive import drive


@dataclass
class DeployedResult:
    params: np.ndarray
    rounds: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    stage_logs: list[Any] = field(default_factory=list)


def drive_study(cfg: StudyConfig, entry: ConfigEntry, transport: Transport, roster: dict[str, bytes],
                study_id: str, *, protection: Any = None) -> DeployedResult:
    """The simulator's own round loop (``federation.drive.drive``) over the Flower transport.

    ``roster``: every site's public identity key (the provisioned roster); its names are the sites.
    """
    from privehr.deploy.site_protection import coordinator_protection

    sites = sorted(roster)
    protection = protection or coordinator_protection(entry, cfg, roster)
    res = drive(cfg, entry, transport, list(sites), study_id, protection)
    coord = res.coordinator
    return DeployedResult(np.asarray(res.params, np.float32), res.rounds, res.metrics, coord.bytes_by_site(),
                          coord.stage_logs)
