"""Secure aggregation: SecAgg (Bonawitz et al. 2017) and SecAgg+ (Bell et al. 2020).

Sites mask their quantised updates so that the coordinator learns only the sum over the
sites that survive the round. Transport-agnostic state machines exchange plain payload dicts:

    coordinator = SecAggCoordinator(config, roster_ids)
    payloads = coordinator.begin()                      # stage "advertise_keys"
    replies = {sid: sites[sid].handle(p["stage"], p) for sid, p in payloads.items()}
    ... = coordinator.advance(replies)                  # repeat until a SecAggResult

``driver.run_round`` does exactly this in memory. One ``SecAggSite`` and one coordinator per
round: keys, seeds and masks are fresh every round, so a key revealed by dropout recovery is
never reused.

Threat model. The coordinator may lie: advertised keys are signed by each site's identity key
and checked against the site-local roster (no man in the middle, no invented sites); sites sign
the survivor set before any share is revealed and check t signatures over the same set; they
compare model digests and abort on a mismatch; they refuse to reveal both share kinds of one
site, and refuse a survivor set that is disconnected in the SecAgg+ graph. Reconstructed secrets
are checked against the advertised key / seed commitment, with redundant shares tried first,
so a bad share aborts the round instead of producing a wrong sum.

Limits. Any ``t`` share holders of one site, colluding with the coordinator, can unmask that
site. A round needs ``max(t, 3)`` survivors and ``t`` live holders of every needed secret;
below that it aborts (complete graph: up to ``n - max(t, 3)`` dropouts in total). The sum of
the included sites is released by design.
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
