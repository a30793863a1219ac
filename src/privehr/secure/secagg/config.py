"""Validated, frozen configuration of one SecAgg/SecAgg+ round.

Why the threshold rules: shares of each site's secrets go to its neighbourhood (the site and
its ``degree`` neighbours, ``m = degree + 1`` holders). With ``t <= m/2`` a coordinator could
ask two disjoint halves for different share kinds of the same site and recover both its
self-mask seed and its pairwise key, i.e. its plain update. A round also needs at least
``max(t, 3)`` survivors: with two, either survivor plus the coordinator learns the other's input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from privehr.secure.secagg.constants import PROTOCOL_VERSION
from privehr.secure.secagg.errors import SecAggConfigError


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SecAggConfig:
    """Settings of one round, shared verbatim by coordinator and sites (bound into signatures).

    Attributes:
        n_sites: number of rostered sites invited to the round.
        threshold: Shamir threshold ``t`` (shares needed to reconstruct a secret).
        dim: length ``d`` of the input vector (words mod ``2**bits``).
        degree: neighbourhood degree ``k``; ``None`` or ``n_sites - 1`` is the complete graph
            (Bonawitz SecAgg); smaller even values give the SecAgg+ Harary graph (Bell et al.).
        bits: word width ``b``; inputs and the sum live in Z_{2^b}.
        round_id: fresh per round; bound into every signature, KDF and AEAD associated data.
        study_id: bound likewise, so transcripts of two studies never mix.
    """

    n_sites: int
    threshold: int
    dim: int
    degree: int | None = None
    bits: int = 32
    round_id: int = 0
    study_id: str = "default"

    def __post_init__(self) -> None:
        problems: list[str] = []
        n, t, k = self.n_sites, self.threshold, self.degree
        if not _is_int(n) or n < 3:
            problems.append(
                f"n_sites={n!r}: must be an int >= 3 (a sum of two inputs reveals each to the "
                "other party); fix: invite at least 3 sites"
            )
        if not _is_int(self.dim) or self.dim < 1:
            problems.append(f"dim={self.dim!r}: must be an int >= 1; fix: pass the vector length")
        if not _is_int(self.bits) or not 2 <= self.bits <= 64:
            problems.append(
                f"bits={self.bits!r}: must be an int in [2, 64]; fix: use 32 (default) or choose "
                "the width from the quantiser's range"
            )
        if not _is_int(self.round_id) or self.round_id < 0:
            problems.append(f"round_id={self.round_id!r}: must be an int >= 0; fix: use a fresh id")
        if not isinstance(self.study_id, str) or not self.study_id:
            problems.append(f"study_id={self.study_id!r}: must be a non-empty str")
        if problems or not _is_int(t):
            if not _is_int(t):
                problems.append(f"threshold={t!r}: must be an int")
            raise SecAggConfigError(problems)
        if k is not None:
            if not _is_int(k) or not 2 <= k <= n - 1:
                problems.append(
                    f"degree={k!r}: must be an int in [2, n_sites-1={n - 1}]; fix: use None for "
                    "the complete graph"
                )
            elif k < n - 1 and k % 2:
                problems.append(
                    f"degree={k!r}: a sparse (Harary) neighbourhood needs an even degree; fix: "
                    f"use {k - 1} or {k + 1}"
                )
        if not problems:
            m = self.neighbourhood_size
            if t <= m / 2 or t > m:
                problems.append(
                    f"threshold={t!r}: must satisfy {m}/2 < t <= {m} (neighbourhood of {m} share "
                    "holders); a threshold at or below half lets a coordinator obtain both share "
                    f"kinds of one site; fix: use threshold={m // 2 + 1} or more"
                )
        if problems:
            raise SecAggConfigError(problems)

    @property
    def complete(self) -> bool:
        """True for the complete graph (Bonawitz SecAgg)."""
        return self.degree is None or self.degree == self.n_sites - 1

    @property
    def effective_degree(self) -> int:
        return self.n_sites - 1 if self.degree is None else self.degree

    @property
    def neighbourhood_size(self) -> int:
        """Share holders per site: the site itself and its ``degree`` neighbours."""
        return self.effective_degree + 1

    @property
    def min_survivors(self) -> int:
        """``t_min = max(t, 3)``: the fewest masked inputs a round accepts."""
        return max(self.threshold, 3)

    @property
    def max_dropouts(self) -> int:
        """Dropouts a complete-graph round always tolerates (sparse graphs: see coordinator)."""
        return self.n_sites - self.min_survivors

    @property
    def word_dtype(self) -> str:
        """Working dtype: arithmetic mod 2^32 or 2^64 is exact mod 2^b for b <= 32 / 64."""
        return "uint32" if self.bits <= 32 else "uint64"

    @property
    def modulus_mask(self) -> int:
        return (1 << self.bits) - 1

    def digest(self) -> bytes:
        """Canonical hash of the configuration, bound into signed transcripts."""
        text = (
            f"{PROTOCOL_VERSION}|n={self.n_sites}|t={self.threshold}|k={self.effective_degree}"
            f"|b={self.bits}|d={self.dim}|round={self.round_id}|study={self.study_id}"
        )
        return hashlib.sha256(text.encode()).digest()

    def for_round(self, round_id: int) -> SecAggConfig:
        """The same settings for another (fresh) round."""
        return SecAggConfig(
            n_sites=self.n_sites,
            threshold=self.threshold,
            dim=self.dim,
            degree=self.degree,
            bits=self.bits,
            round_id=round_id,
            study_id=self.study_id,
        )
