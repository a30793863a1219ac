"""Target-epsilon calibration: the smallest noise multiplier that meets (epsilon, delta).

Why dp_accounting's ``mechanism_calibration``: it searches with fresh accountants and guarantees
the returned parameter is on the safe side of the target. We then round the multiplier *up* to
four significant digits (readable in configs and ledgers; more noise is always safe) and verify
the result with a fresh accountant before returning.

The sampling rate ``q`` and the total number of Poisson-sampled Gaussian steps
(``rounds * steps``) fully determine epsilon; with one ``q`` shared by all sites, one
calibration serves them all.
"""

from __future__ import annotations

import math

from dp_accounting import dp_event as de
from dp_accounting import mechanism_calibration as mc
from dp_accounting.pld import pld_privacy_accountant as pld
from dp_accounting.rdp import rdp_privacy_accountant as rdp

from privehr.privacy.accountant import NEIGHBOURING
from privehr.privacy.errors import PrivacyConfigError


def dpsgd_event(sampling_prob: float, noise_multiplier: float, steps: int) -> de.DpEvent:
    """The event of ``steps`` Poisson-sampled Gaussian steps (what DP-SGD releases)."""
    step = de.PoissonSampledDpEvent(sampling_prob, de.GaussianDpEvent(noise_multiplier))
    return de.SelfComposedDpEvent(step, steps)


def _round_up(x: float, digits: int = 4) -> float:
    if x <= 0:
        return x
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(x)))
    return math.ceil(x * scale) / scale


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sampling_prob: float,
    steps: int,
    accountant: str = "pld",
    *,
    rounds: int = 1,
    shared_patient_factor: int = 1,
    value_discretization_interval: float = 1e-4,
) -> float:
    """Smallest noise multiplier sigma (rounded up) with epsilon(sigma) <= ``target_epsilon``.

    ``steps`` are local steps per round; the event calibrated is ``rounds * steps`` (times
    ``shared_patient_factor``) Poisson-sampled Gaussian steps at rate ``sampling_prob``.
    ``accountant`` is ``"pld"`` (matches the ledger) or ``"rdp"`` (more noise).
    """
    problems = []
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        problems.append(("target_epsilon", target_epsilon, "must be finite and > 0", "e.g. 1.0"))
    if not 0 < delta < 1:
        problems.append(("delta", delta, "must lie in (0, 1)", "use min(1e-5, 1/(10 n))"))
    if not 0 < sampling_prob <= 1:
        problems.append(("sampling_prob", sampling_prob, "must lie in (0, 1]", "q = batch/n"))
    for name, value in (("steps", steps), ("rounds", rounds),
                        ("shared_patient_factor", shared_patient_factor)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append((name, value, "must be an integer >= 1", "pass a positive int"))
    if accountant not in ("pld", "rdp"):
        problems.append(("accountant", accountant, "must be 'pld' or 'rdp'", "use 'pld'"))
    if problems:
        raise PrivacyConfigError(*problems[0])

    total = steps * rounds * shared_patient_factor

    def fresh(vdi: float = value_discretization_interval):
        if accountant == "pld":
            return pld.PLDAccountant(NEIGHBOURING, vdi)
        return rdp.RdpAccountant(neighboring_relation=NEIGHBOURING)

    def make_event(sigma: float) -> de.DpEvent:
        return dpsgd_event(sampling_prob, sigma, total)

    # Search with a 10x coarser PLD grid: ~10x faster, and PLD discretisation is pessimistic,
    # so the coarse answer errs on the safe side (more noise); then verify on the fine grid.
    coarse = max(value_discretization_interval, 1e-3)

    def gap(sigma: float) -> float:
        return fresh(coarse).compose(make_event(sigma)).get_epsilon(delta) - target_epsilon

    lo = hi = 1.0
    if gap(1.0) > 0:  # too little noise: walk up
        while gap(hi) > 0:
            lo, hi = hi, hi * 2.0
            if hi > 2.0**20:
                raise PrivacyConfigError("target_epsilon", target_epsilon,
                                         "is unreachable with any noise multiplier <= 2^20",
                                         "raise the target or lower q/steps")
    else:  # enough noise: walk down (small sigma is slow to account, stop at 1/64)
        while lo > 1 / 64 and gap(lo) <= 0:
            lo, hi = lo / 2.0, lo
    sigma = mc.calibrate_dp_mechanism(
        lambda: fresh(coarse),
        make_event,
        target_epsilon,
        delta,
        bracket_interval=mc.ExplicitBracketInterval(lo, hi),
        tol=max(1e-6, 2e-5 * hi),
    )
    sigma = _round_up(float(sigma))
    for _ in range(20):  # verify on the fine grid; rounding up can only help, but check
        if fresh().compose(make_event(sigma)).get_epsilon(delta) <= target_epsilon:
            return sigma
        sigma = _round_up(sigma * 1.0005)
    raise RuntimeError(f"calibration did not reach epsilon <= {target_epsilon}")  # pragma: no cover
