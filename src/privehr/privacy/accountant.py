"""Turn DP events into (epsilon, delta): PLD (reported) and RDP (conservative cross-check).

The unit of privacy is the **patient** and the neighbouring relation is add-or-remove one
patient (what Poisson sampling of patients needs), fixed here for every accountant.

Why folding: composition is commutative, so a ledger of hundreds of releases is a *multiset* of
a few distinct leaf events (e.g. ``PoissonSampled(q, Gaussian(sigma))`` x 4000 steps plus a
handful of Gaussian statistics releases). dp_accounting composes ``SelfComposed(e, n)`` with one
PLD self-composition, so we flatten every Composed/SelfComposed tree, count identical leaves
(by their canonical JSON) and compose each distinct leaf once with its count. Composing the
steps one by one takes minutes; folded, one epsilon takes well under a second. Results are
cached per (multiset, delta).

Why a dry run: :meth:`Accountant.check` validates every sub-event (registry types, value
ranges, accountant support, distributed-DP preconditions) before anything is composed or
written, and names the sub-event at fault by its path -- a bad event changes nothing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from dp_accounting import dp_event as de
from dp_accounting.pld import pld_privacy_accountant as pld
from dp_accounting.pld import privacy_loss_distribution as pldlib
from dp_accounting.privacy_accountant import NeighboringRelation
from dp_accounting.rdp import rdp_privacy_accountant as rdp

from privehr.privacy import events as ev
from privehr.privacy.errors import PrivacyConfigError, UnsupportedEvent

NEIGHBOURING = NeighboringRelation.ADD_OR_REMOVE_ONE
#: Below this per-site lattice std, the sum of discrete Gaussians is not close enough to a
#: discrete Gaussian for continuous-Gaussian accounting (KLS21 slack tau*d).
MIN_SIGMA_LATTICE = 3.0
#: Largest tolerated KLS21 slack tau * dimension.
MAX_KLS_SLACK = 1e-6


@dataclass(frozen=True)
class Leaf:
    """A distinct leaf event with its total count and where it first occurred."""

    event: de.DpEvent
    count: int
    path: str
    key: str


def kls_tau(sigma_lattice: float, n_sites: int) -> float:
    """KLS21 tau: distance of a sum of ``n_sites`` discrete Gaussians from one (per coordinate).

    ``tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k/(k+1))``; it enters the zCDP bound as
    ``tau * d``. At sigma >= 3 it is below 1e-30 per site; at sigma = 1 it is ~5e-5 per site,
    i.e. ~5 for a 100k-parameter model -- no longer negligible.
    """
    s2 = sigma_lattice * sigma_lattice
    return 10.0 * sum(
        math.exp(-2.0 * math.pi**2 * s2 * k / (k + 1)) for k in range(1, n_sites)
    )


def expand_distributed(event: ev.DistributedDiscreteGaussianEvent, path: str) -> de.DpEvent:
    """Map a distributed discrete-Gaussian record to dp_accounting events, or refuse.

    The sum carries ``n_sites_min`` independent shares, total std ``sqrt(n) * sigma``; the
    sensitivity is the *post-rounding* L2 bound, so the noise multiplier is
    ``sqrt(n) * sigma / l2_sensitivity_lattice``. We account it as a continuous Gaussian
    (a discrete Gaussian satisfies the same concentrated-DP bound, CKS20) and deliberately do not
    use ``from_discrete_gaussian_mechanism``: that is a scalar mechanism with integer
    sensitivity, not a d-dimensional sum.
    """
    if event.steps == 0 or event.sampling_prob == 0.0:
        return de.NoOpDpEvent()
    if event.sigma_lattice < MIN_SIGMA_LATTICE:
        tau = kls_tau(event.sigma_lattice, max(event.n_sites_min, 2))
        raise UnsupportedEvent(
            path,
            event,
            f"per-site lattice sigma={event.sigma_lattice:g} < {MIN_SIGMA_LATTICE:g}: the sum of "
            "discrete Gaussians is then not close to a discrete Gaussian (KLS21 slack "
            f"tau*d={tau * event.dimension:.3g}), so Gaussian accounting would understate "
            "epsilon. Use a finer quantisation scale (more bits) so that sigma in lattice "
            "units is at least 3",
        )
    slack = kls_tau(event.sigma_lattice, event.n_sites_min) * event.dimension
    if slack > MAX_KLS_SLACK:
        raise UnsupportedEvent(
            path, event, f"KLS21 slack tau*d={slack:.3g} exceeds {MAX_KLS_SLACK:g}"
        )
    if event.l2_sensitivity_lattice <= 0.0:
        raise UnsupportedEvent(
            path, event, "l2_sensitivity_lattice must be > 0 (the post-rounding norm bound)"
        )
    nm = math.sqrt(event.n_sites_min) * event.sigma_lattice / event.l2_sensitivity_lattice
    step = de.PoissonSampledDpEvent(event.sampling_prob, de.GaussianDpEvent(nm))
    return step if event.steps == 1 else de.SelfComposedDpEvent(step, event.steps)


def _flatten(event: de.DpEvent, count: int, path: str, out: list[tuple[de.DpEvent, int, str]]):
    if isinstance(event, de.NoOpDpEvent) or count == 0:
        return
    if isinstance(event, de.SelfComposedDpEvent):
        _flatten(event.event, count * event.count, f"{path}.event", out)
    elif isinstance(event, de.ComposedDpEvent):
        for i, child in enumerate(event.events):
            _flatten(child, count, f"{path}.events[{i}]", out)
    elif isinstance(event, ev.DistributedDiscreteGaussianEvent):
        _flatten(expand_distributed(event, path), count, path, out)
    else:
        out.append((event, count, path))


def fold(events: de.DpEvent | Iterable[de.DpEvent], repeat: int = 1) -> list[Leaf]:
    """Validate and flatten events into distinct leaves with counts (multiplied by ``repeat``).

    Raises :class:`UnsupportedEvent` / :class:`EventFormatError` naming the path of the first
    bad sub-event; nothing is composed.
    """
    seq = [events] if isinstance(events, de.DpEvent) else list(events)
    flat: list[tuple[de.DpEvent, int, str]] = []
    for i, event in enumerate(seq):
        path = f"events[{i}]"
        ev.validate(event, path)
        _flatten(event, 1, path, flat)
    leaves: dict[str, Leaf] = {}
    checker = pld.PLDAccountant(NEIGHBOURING)
    for event, count, path in flat:
        key = ev.dumps(event)
        if key in leaves:
            old = leaves[key]
            leaves[key] = Leaf(old.event, old.count + count * repeat, old.path, key)
            continue
        if isinstance(event, ev.DistributedDiscreteGaussianEvent):  # nested under a sampler
            raise UnsupportedEvent(path, event, "distributed-DP records cannot be nested")
        problem = checker._maybe_compose(event, count, do_compose=False)  # the dry run
        if problem is not None:
            raise UnsupportedEvent(path, event, problem.error_message)
        leaves[key] = Leaf(event, count * repeat, path, key)
    return sorted(leaves.values(), key=lambda leaf: leaf.key)


def _check_delta(delta: float) -> None:
    if not (isinstance(delta, int | float) and 0.0 < delta < 1.0):
        raise PrivacyConfigError(
            "delta", delta, "must lie strictly between 0 and 1", "use e.g. min(1e-5, 1/(10 n))"
        )


class Accountant:
    """Stateless-by-contract epsilon calculator with a result cache.

    ``epsilon`` (PLD, the reported number) and ``epsilon_rdp`` (RDP, the conservative
    cross-check) take a whole list of events, fold them and compose each distinct leaf once.
    """

    def __init__(self, *, value_discretization_interval: float = 1e-4, cache_size: int = 256):
        self.value_discretization_interval = value_discretization_interval
        self.cache_size = cache_size
        self._lock = threading.RLock()
        self._cache: dict[tuple, float | None] = {}
        self._pld_cache: dict[tuple, object] = {}  # (leaf key, count) -> composed PLD
        self._base_cache: dict[str, object] = {}  # leaf key -> PLD of one occurrence
        self._rdp_cache: dict[str, np.ndarray | None] = {}  # leaf key -> RDP curve of one
        self._others_cache: dict[tuple, object] = {}  # leaves except the hot one -> PLD
        self._hot_key: str | None = None
        self._last_counts: tuple = ()

    def check(self, events: de.DpEvent | Sequence[de.DpEvent]) -> list[Leaf]:
        """Dry run: validate and fold; raise naming the bad sub-event."""
        return fold(events)

    def epsilon(self, events: de.DpEvent | Sequence[de.DpEvent], delta: float, *,
                repeat: int = 1) -> float:
        """PLD epsilon at ``delta`` of the composition of ``events`` (inf if any is non-private).

        ``repeat`` composes the whole list that many times (the shared-patient factor).
        """
        _check_delta(delta)
        return self._epsilon(fold(events, repeat), delta, "pld")  # type: ignore[return-value]

    def epsilon_rdp(self, events: de.DpEvent | Sequence[de.DpEvent], delta: float, *,
                    repeat: int = 1) -> float | None:
        """RDP epsilon at ``delta`` (looser than PLD); ``None`` if RDP cannot account a leaf."""
        _check_delta(delta)
        return self._epsilon(fold(events, repeat), delta, "rdp")

    def epsilon_of_leaves(self, leaves: Sequence[Leaf], delta: float, method: str = "pld"):
        """Epsilon of already folded leaves (lets the ledger fold once per charge)."""
        _check_delta(delta)
        return self._epsilon(list(leaves), delta, method)

    def _epsilon(self, leaves: list[Leaf], delta: float, method: str) -> float | None:
        with self._lock:  # the caches are shared by threads reading one ledger
            return self._epsilon_locked(leaves, delta, method)

    def _epsilon_locked(self, leaves: list[Leaf], delta: float, method: str) -> float | None:
        if any(isinstance(leaf.event, de.NonPrivateDpEvent) for leaf in leaves):
            return math.inf
        key = (method, delta, tuple((leaf.key, leaf.count) for leaf in leaves))
        if key in self._cache:
            return self._cache[key]
        value: float | None
        if not leaves:
            value = 0.0
        elif method == "pld" and all(self._fast_kind(leaf.event) for leaf in leaves):
            value = self._fast_pld_epsilon(leaves, delta)
        elif method == "rdp":
            value = self._rdp_epsilon(leaves, delta)
        else:
            if method == "pld":
                acct = pld.PLDAccountant(NEIGHBOURING, self.value_discretization_interval)
            elif method == "rdp":
                acct = rdp.RdpAccountant(neighboring_relation=NEIGHBOURING)
            else:
                raise PrivacyConfigError("method", method, "must be 'pld' or 'rdp'", "pick one")
            if not all(acct.supports(leaf.event) for leaf in leaves):
                value = None
            else:
                for leaf in leaves:
                    acct.compose(leaf.event, leaf.count)
                value = float(acct.get_epsilon(delta))
        _bounded_put(self._cache, key, value, self.cache_size)
        return value

    # -- fast PLD path ----------------------------------------------------------------------
    # A ledger grows by one release at a time, so between two charges usually only one leaf's
    # count changes. We build each leaf's PLD exactly as dp_accounting's PLDAccountant does
    # (same constructors, same arguments) but keep the single-occurrence PLD of a Poisson-
    # sampled Gaussian and the composed PLD of every (leaf, count) in small caches. Other event
    # types take the plain PLDAccountant path. Tests check equality with a direct computation.
    @staticmethod
    def _fast_kind(event: de.DpEvent) -> bool:
        if isinstance(event, de.GaussianDpEvent):
            return event.noise_multiplier > 0
        return (
            isinstance(event, de.PoissonSampledDpEvent)
            and isinstance(event.event, de.GaussianDpEvent)
            and event.event.noise_multiplier > 0
            and event.sampling_probability > 0
        )

    def _leaf_pld(self, leaf: Leaf):
        key = (leaf.key, leaf.count)
        hit = self._pld_cache.get(key)
        if hit is not None:
            return hit
        vdi = self.value_discretization_interval
        event = leaf.event
        if isinstance(event, de.GaussianDpEvent):
            out = pldlib.from_gaussian_mechanism(
                standard_deviation=event.noise_multiplier / math.sqrt(leaf.count),
                value_discretization_interval=vdi,
                neighboring_relation=NEIGHBOURING,
            )
        else:
            base = self._base_cache.get(leaf.key)
            if base is None:
                base = pldlib.from_gaussian_mechanism(
                    standard_deviation=event.event.noise_multiplier,
                    value_discretization_interval=vdi,
                    sampling_prob=event.sampling_probability,
                    neighboring_relation=NEIGHBOURING,
                )
                _bounded_put(self._base_cache, leaf.key, base, self.cache_size)
            out = base.self_compose(leaf.count)
        _bounded_put(self._pld_cache, key, out, 64)
        return out

    def _fast_pld_epsilon(self, leaves: list[Leaf], delta: float) -> float:
        """Compose the leaves' PLDs. Between two ledger charges typically one leaf (the "hot"
        one, e.g. this configuration's DP-SGD steps) changes its count; the composition of all
        the others is cached, so a charge costs one self-composition and one composition."""
        vdi = self.value_discretization_interval
        previous = dict(self._last_counts)
        changed = [i for i, leaf in enumerate(leaves) if previous.get(leaf.key) != leaf.count]
        sticky = [i for i, leaf in enumerate(leaves) if leaf.key == self._hot_key]
        if len(changed) == 1:
            hot = changed[0]
        elif sticky:
            hot = sticky[0]
        else:
            hot = changed[-1] if changed else len(leaves) - 1
        self._hot_key = leaves[hot].key
        self._last_counts = tuple((leaf.key, leaf.count) for leaf in leaves)
        others = tuple((leaf.key, leaf.count) for i, leaf in enumerate(leaves) if i != hot)
        rest = self._others_cache.get(others)
        if rest is None:
            rest = pldlib.identity(value_discretization_interval=vdi)
            for i, leaf in enumerate(leaves):
                if i != hot:
                    rest = rest.compose(self._leaf_pld(leaf))
            _bounded_put(self._others_cache, others, rest, 8)
        total = rest.compose(self._leaf_pld(leaves[hot]))
        return float(total.get_epsilon_for_delta(delta))

    def _rdp_epsilon(self, leaves: list[Leaf], delta: float) -> float | None:
        """RDP composes additively, and linearly in the count (as RdpAccountant does): cache
        each leaf's RDP curve for one occurrence and sum ``count * curve``."""
        orders = None
        total = None
        for leaf in leaves:
            if leaf.key not in self._rdp_cache:
                acct = rdp.RdpAccountant(neighboring_relation=NEIGHBOURING)
                curve = acct.compose(leaf.event).rdp if acct.supports(leaf.event) else None
                _bounded_put(self._rdp_cache, leaf.key, curve, self.cache_size)
            curve = self._rdp_cache[leaf.key]
            if curve is None:
                return None
            orders = rdp.RdpAccountant(neighboring_relation=NEIGHBOURING).orders
            total = leaf.count * curve if total is None else total + leaf.count * curve
        return float(rdp.compute_epsilon(orders, total, delta)[0])


def _bounded_put(cache: dict, key, value, size: int) -> None:
    if len(cache) >= size:
        cache.pop(next(iter(cache)), None)
    cache[key] = value
