"""In-process transport: routes the same bytes the network would carry, nothing more.

Sites and coordinator share no objects; only ``bytes`` cross here. Dropouts are scripted
(site, stage, round) so tests can drop a site at any protocol stage, and a site whose handler
runs past the stage deadline is treated as dropped (its late reply is discarded), exactly as
the Flower transport does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from privehr.federation.site import SiteNode


@dataclass
class DropoutPlan:
    """Which site goes silent at which stage (``round=None``: every round)."""

    drops: list[tuple[str, str, int | None]] = field(default_factory=list)
    dead: set[str] = field(default_factory=set)  # sites that have dropped for good

    def drop(self, site: str, stage: str, round_: int | None = None) -> DropoutPlan:
        self.drops.append((site, stage, round_))
        return self

    def should_drop(self, site: str, stage: str, round_: int) -> bool:
        if site in self.dead:
            return True
        for s, st, r in self.drops:
            if s == site and (st == stage or st == "*") and (r is None or r == round_):
                self.dead.add(site)  # a dropped site stays gone for the rest of the round
                return True
        return False

    def new_round(self) -> None:
        self.dead.clear()


class InProcessTransport:
    def __init__(self, nodes: dict[str, SiteNode], dropouts: DropoutPlan | None = None):
        self.nodes = nodes
        self.dropouts = dropouts or DropoutPlan()
        self.current_round = 0

    def exchange(self, requests: dict[str, bytes], *, stage: str, deadline_s: float) -> dict[str, bytes | None]:
        replies: dict[str, bytes | None] = {}
        for site, data in requests.items():
            node = self.nodes.get(site)
            if node is None or self.dropouts.should_drop(site, stage, self.current_round):
                replies[site] = None
                continue
            t0 = time.perf_counter()
            reply = node.handle(data)
            replies[site] = reply if time.perf_counter() - t0 <= deadline_s else None
        return replies

    def exclude(self, sites: list[str]) -> None:
        """Leave sites out from now on (e.g. their privacy budget is exhausted)."""
        for s in sites:
            self.nodes.pop(s, None)

    def start_round(self, round_: int) -> None:
        self.current_round = round_
        self.dropouts.new_round()
