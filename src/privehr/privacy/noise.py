"""Where DP noise comes from, and how float releases avoid the floating-point attack.

Randomness: :meth:`NoiseSource.secure` hands out, per release, a fresh numpy
``Generator(PCG64DXSM)`` seeded with 256 bits from the OS CSPRNG (``secrets``). The stream of
one release cannot be predicted from any other release, from the clock or from a 32-bit seed
(the weakness of Flower's and Opacus-without-torchcsprng noise). PCG64DXSM is a statistical
generator, not a cryptographic one: its state could in principle be recovered from many
*raw* outputs, but raw outputs never leave the site -- only noised sums do. The sampling of
patients (Poisson) uses the same per-release generator, since which patients were sampled is
secret too. :meth:`NoiseSource.seeded_for_tests` gives reproducible noise and marks everything
produced with it as non-private (the seed is known, so the noise can be subtracted).

Floating-point attack (Mironov 2012): textbook float Gaussian/Laplace samples have an uneven
set of reachable values, so the low-order bits of ``x + noise`` can reveal ``x``. We never
release ``x + float_noise``. :func:`gaussian_mechanism` works on a lattice ``gamma * Z`` with
``gamma = l2_sensitivity * 2^-24``: it rounds ``x`` to the lattice, adds *integer* discrete
Gaussian noise (:mod:`privehr.privacy.discrete`) with std ``noise_std / gamma`` and multiplies
back. The output is a deterministic function of an integer vector whose distribution is a
discrete Gaussian -- there are no float holes to exploit. Rounding moves each coordinate by at
most ``gamma / 2``, so the L2 sensitivity grows to ``l2_sensitivity + gamma * sqrt(d)``; we scale
the noise std by that slack so the recorded noise multiplier stays exactly the calibrated one.
(A discrete Gaussian with std >= 2^24 in lattice units has the same privacy curve as the
continuous one to far below display precision; CKS20 show equal concentrated-DP bounds.)
"""

from __future__ import annotations

import hashlib
import math
import secrets

import numpy as np

from privehr.privacy.discrete import sample_discrete_gaussian
from privehr.privacy.errors import PrivacyConfigError

LATTICE_BITS = 24


class NoiseSource:
    """Supplier of fresh random generators for DP releases.

    Use :meth:`secure` in production and :meth:`seeded_for_tests` in tests. Anything produced
    with a test source must be reported as non-private; :attr:`is_private` tells which.
    """

    def __init__(self, *, _seed: int | list[int] | None = None, _private: bool = True) -> None:
        self._private = _private
        self._seed = _seed
        self._seq = None if _seed is None else np.random.SeedSequence(_seed)

    @classmethod
    def secure(cls) -> NoiseSource:
        """Fresh OS-entropy seed (256 bits) for every generator handed out."""
        return cls()

    @classmethod
    def seeded_for_tests(cls, seed: int) -> NoiseSource:
        """Reproducible generators; releases made with them are NOT private."""
        return cls(_seed=seed, _private=False)

    @property
    def is_private(self) -> bool:
        return self._private

    def for_site(self, site: str) -> NoiseSource:
        """This site's own source: a fresh secure one, or a test stream keyed by the site's name.

        Why per site: in a deployment every site draws its noise in its own process, so a
        seeded simulator that shared one stream across sites (in handling order) could never
        be compared with a deployed run. Keying the test stream by name makes both identical.
        """
        if self._seed is None:
            return NoiseSource.secure()
        root = [self._seed] if isinstance(self._seed, int) else list(self._seed)
        tag = int.from_bytes(hashlib.sha256(site.encode("utf-8")).digest()[:8], "big")
        return NoiseSource(_seed=[*root, tag], _private=False)

    def generator(self) -> np.random.Generator:
        """A new generator for one release (never reused across releases)."""
        if self._seq is None:
            seed = np.random.SeedSequence(secrets.randbits(256))
        else:
            seed = self._seq.spawn(1)[0]
        return np.random.Generator(np.random.PCG64DXSM(seed))

    def __repr__(self) -> str:
        return "NoiseSource.secure()" if self._private else "NoiseSource.seeded_for_tests(...)"


def lattice_step(l2_sensitivity: float) -> float:
    """Lattice spacing gamma used for a release with this sensitivity."""
    return float(l2_sensitivity) * 2.0**-LATTICE_BITS


def noise_std(l2_sensitivity: float, noise_multiplier: float, dim: int) -> float:
    """Actual noise std: multiplier times the sensitivity *after* lattice rounding."""
    return noise_multiplier * (l2_sensitivity + lattice_step(l2_sensitivity) * math.sqrt(dim))


def gaussian_mechanism(
    values: np.ndarray,
    *,
    l2_sensitivity: float,
    noise_multiplier: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Release ``values`` (any shape) with Gaussian noise of multiplier ``noise_multiplier``.

    Output lies on the lattice ``gamma * Z`` (see module docstring); its noise std per
    coordinate is :func:`noise_std`. Returns float64. The event to record is
    ``GaussianDpEvent(noise_multiplier)`` with sensitivity ``l2_sensitivity``.
    """
    if not (math.isfinite(l2_sensitivity) and l2_sensitivity > 0):
        raise PrivacyConfigError("l2_sensitivity", l2_sensitivity, "must be finite and > 0",
                                 "pass the clip norm / per-patient bound")
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise PrivacyConfigError("noise_multiplier", noise_multiplier,
                                 "must be finite and >= 0", "calibrate_noise_multiplier(...)")
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise PrivacyConfigError("values", "non-finite entries", "must be finite",
                                 "clip contributions before releasing")
    if noise_multiplier == 0:
        return x.copy()
    gamma = lattice_step(l2_sensitivity)
    std = noise_std(l2_sensitivity, noise_multiplier, max(1, x.size))
    scaled = x / gamma
    if np.any(np.abs(scaled) > 2.0**62):
        raise PrivacyConfigError("values", "too large for the lattice",
                                 "|value| must be below l2_sensitivity * 2^38",
                                 "clip contributions before releasing")
    ints = np.rint(scaled).astype(np.int64)
    ints += sample_discrete_gaussian(std / gamma, x.size, rng).reshape(x.shape)
    return ints.astype(np.float64) * gamma
