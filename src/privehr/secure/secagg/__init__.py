"""Secure aggregation: SecAgg (Bonawitz et al. 2017) and SecAgg+ (Bell et al. 2020).

Sites mask their quantised updates so that the coordinator learns only the sum over the
sites that survive the round. Transport-agnostic state machines exchange plain payload dicts:

    coordinator = SecAggCoordinator(config, roster_ids)
    payloads = coordinator.begin()                      # stage "advertise_keys"
    replies = {sid: sites[sid].handle(p["stage"], p) for sid, p in payloads.items()}
    ... = coordinator.advance(replies)                  # repeat until a SecAggResult

``driver.run_round`` does exactly this in memory. See ``site`` for the threat model.
"""

from privehr.secure.secagg.config import SecAggConfig
from privehr.secure.secagg.constants import STAGES
from privehr.secure.secagg.coordinator import SecAggCoordinator, SecAggResult
from privehr.secure.secagg.driver import provision, run_round
from privehr.secure.secagg.errors import SecAggAborted, SecAggConfigError, SecAggCryptoError
from privehr.secure.secagg.site import SecAggSite

__all__ = [
    "STAGES",
    "SecAggAborted",
    "SecAggConfig",
    "SecAggConfigError",
    "SecAggCoordinator",
    "SecAggCryptoError",
    "SecAggResult",
    "SecAggSite",
    "provision",
    "run_round",
]
