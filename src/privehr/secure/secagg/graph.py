"""Communication graph of SecAgg+ (Bell et al. 2020): who shares secrets and masks with whom.

Complete graph (Bonawitz SecAgg) when the degree reaches ``N - 1``; otherwise a Harary graph
``H(k, N)`` (each site linked to the k/2 nearest positions on each side of a ring) over a
permutation of the site ids drawn from a public seed. Coordinator and sites compute the graph
independently from the same signed advertisement transcript, so the coordinator cannot pick a
neighbourhood of its accomplices for a given site. The seed hashes every advertised key (fresh
random values of the sites), so the coordinator cannot predict it; grinding it requires dropping
sites, each of which costs the round a participant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from privehr.secure.secagg.constants import LABEL_GRAPH
from privehr.secure.secagg.keys import encode_fields


def neighbourhoods(ids: Sequence[str], degree: int, seed: bytes) -> dict[str, frozenset[str]]:
    """Neighbours of each site (excluding itself). ``degree`` >= N-1 gives the complete graph."""
    members = sorted(set(ids))
    n = len(members)
    if degree >= n - 1:
        everyone = frozenset(members)
        return {sid: everyone - {sid} for sid in members}
    if degree % 2:
        raise ValueError(f"degree={degree}: a sparse Harary graph needs an even degree")
    order = sorted(
        members, key=lambda sid: hashlib.sha256(encode_fields(LABEL_GRAPH, seed, sid)).digest()
    )
    half = degree // 2
    out: dict[str, frozenset[str]] = {}
    for pos, sid in enumerate(order):
        out[sid] = frozenset(order[(pos + off) % n] for off in range(-half, half + 1) if off)
    return out


def share_points(ids: Sequence[str]) -> dict[str, int]:
    """Shamir evaluation point of each site: 1 + its index among the sorted advertised ids."""
    return {sid: i + 1 for i, sid in enumerate(sorted(set(ids)))}


def is_connected(graph: dict[str, frozenset[str]], members: Iterable[str]) -> bool:
    """Whether ``members`` induce a connected subgraph.

    Why it matters (Bell et al. 2020): pairwise masks between two survivors are never revealed,
    so the coordinator can unmask only sums over whole connected components of the survivor
    graph. If it declares all neighbours of a site "dropped", that site forms a component of
    its own and its input would be exposed; sites therefore refuse a disconnected survivor set.
    """
    remaining = set(members)
    if not remaining:
        return False
    stack = [remaining.pop()]
    while stack:
        node = stack.pop()
        linked = graph[node] & remaining
        remaining -= linked
        stack.extend(linked)
    return not remaining
