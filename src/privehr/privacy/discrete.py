"""Discrete Gaussian sampling (Canonne, Kamath, Steinke 2020), vectorised.

Why: distributed DP under secure aggregation needs *integer* noise (the masked sum lives in
Z_2^b), and integer noise also sidesteps the floating-point attack on Gaussian sampling
(Mironov 2012) for our own float releases (see :mod:`privehr.privacy.noise`).

Algorithm (CKS20, Alg. 3): with ``t = floor(sigma) + 1``, draw ``Y`` from the discrete Laplace
distribution ``P(y) ~ exp(-|y|/t)`` and accept it with probability
``exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))``; accepted values follow
``P(x) ~ exp(-x^2 / (2 sigma^2))`` on the integers. The discrete Laplace draw is the difference
of two i.i.d. geometric variables (an exact identity). We run the rejection loop on whole
arrays with numpy instead of CKS's rational-arithmetic Bernoulli coins: the acceptance test
and geometric draws use float64, so probabilities are exact up to ~2^-52 relative error, while
the *output* is an integer -- no low-order float bits to leak.
"""

from __future__ import annotations

import math

import numpy as np

from privehr.privacy.errors import PrivacyConfigError


def _discrete_laplace(t: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``P(y) ~ exp(-|y|/t)`` on the integers, as G1 - G2 with G ~ Geometric(1 - e^{-1/t}) - 1."""
    success = -math.expm1(-1.0 / t)
    g1 = rng.geometric(success, size=size).astype(np.int64) - 1
    g2 = rng.geometric(success, size=size).astype(np.int64) - 1
    return g1 - g2


def sample_discrete_gaussian(sigma: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` i.i.d. draws of the discrete Gaussian N_Z(0, sigma^2) as int64.

    ``rng`` must be a fresh, securely seeded generator for real releases
    (:meth:`privehr.privacy.noise.NoiseSource.generator`). ``sigma = 0`` returns zeros.
    """
    if not (isinstance(sigma, int | float) and math.isfinite(sigma) and sigma >= 0):
        raise PrivacyConfigError("sigma", sigma, "must be a finite number >= 0",
                                 "pass the noise std in lattice units")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
        raise PrivacyConfigError("size", size, "must be an integer >= 0", "e.g. size=1000")
    if not isinstance(rng, np.random.Generator):
        raise PrivacyConfigError("rng", type(rng).__name__, "must be a numpy Generator",
                                 "use NoiseSource.secure().generator()")
    size = int(size)
    out = np.empty(size, dtype=np.int64)
    if sigma == 0 or size == 0:
        out[:] = 0
        return out
    t = math.floor(sigma) + 1.0
    s2 = float(sigma) ** 2
    filled = 0
    while filled < size:
        need = size - filled
        batch = max(64, int(need * 1.6) + 16)  # acceptance rate is ~0.6-0.8
        y = _discrete_laplace(t, batch, rng)
        dev = np.abs(y).astype(np.float64) - s2 / t
        accept = rng.random(batch) < np.exp(-(dev * dev) / (2.0 * s2))
        good = y[accept][:need]
        out[filled:filled + good.size] = good
        filled += good.size
    return out
