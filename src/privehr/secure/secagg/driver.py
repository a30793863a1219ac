"""In-memory driver: routes payload dicts between one coordinator and its sites.

For tests and for the lead's simulator to reuse. It serialises nothing: it passes the same
``dict`` payloads a transport would carry. ``drop[stage]`` lists sites that never answer at that
stage (and, being gone, none after it), which is how dropouts look to the coordinator. The
optional hooks let tests play a lying coordinator or a faulty network: ``tamper_requests``
rewrites what the coordinator sends, ``tamper_responses`` what the sites answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.secure.secagg.constants import STAGE_ADVERTISE
from privehr.secure.secagg.coordinator import SecAggCoordinator, SecAggResult
from privehr.secure.secagg.site import SecAggSite

Messages = dict[str, dict[str, Any]]
Hook = Callable[[str, Messages], Messages]


def provision(site_ids: Iterable[str]) -> tuple[dict[str, Ed25519PrivateKey], dict[str, bytes]]:
    """Simulation only: fresh Ed25519 identity keys and the roster every site would hold.

    In a deployment each site generates its identity key at installation and the roster of
    public keys is distributed out of band (never by the coordinator alone).
    """
    identities = {sid: Ed25519PrivateKey.generate() for sid in site_ids}
    roster = {sid: key.public_key().public_bytes_raw() for sid, key in identities.items()}
    return identities, roster


def run_round(
    coordinator: SecAggCoordinator,
    sites: Mapping[str, SecAggSite],
    inputs: Mapping[str, np.ndarray],
    drop: Mapping[str, set[str]] | None = None,
    *,
    model_digests: Mapping[str, bytes] | None = None,
    tamper_requests: Hook | None = None,
    tamper_responses: Hook | None = None,
) -> SecAggResult:
    """Run one round to its result; ``SecAggAborted`` from any party propagates."""
    drop = drop or {}
    for sid, vector in inputs.items():
        sites[sid].set_input(vector)
    gone: set[str] = set()
    requests = coordinator.begin()
    while True:
        stage = coordinator.stage
        assert stage is not None
        gone |= set(drop.get(stage, ()))
        if tamper_requests is not None:
            requests = tamper_requests(stage, requests)
        responses: Messages = {}
        for sid, payload in requests.items():
            if sid in gone or sid not in sites:
                continue
            if stage == STAGE_ADVERTISE and model_digests is not None:
                responses[sid] = sites[sid].handle(stage, payload, model_digest=model_digests[sid])
            else:
                responses[sid] = sites[sid].handle(stage, payload)
        if tamper_responses is not None:
            responses = tamper_responses(stage, responses)
        out = coordinator.advance(responses)
        if isinstance(out, SecAggResult):
            return out
        requests = out
