"""Quantisation stages between a float update and the words SecAgg sums mod 2^b.

Two pipelines, each a chain of small frozen stage objects with an encode/decode pair:

- Plain SecAgg (``FixedPointCodec``): the scale follows from the clip bound, the largest
  weight and the number of summands, so the sum can never wrap; a site whose weighted value
  would saturate is *rejected* by name (``SaturationError``), never clipped silently.
- Distributed DP (``DistributedDpQuantizer``; Kairouz, Liu, Steinke 2021): clip (L2 <= C) ->
  scale 1/gamma -> optional randomised Hadamard rotation (public seed) -> conditional
  randomised rounding (resample until the rounded L2 norm <= the post-rounding bound) -> add
  integer noise (injected ``noise(size) -> int64``; e.g. a discrete Gaussian) -> encode mod
  2^b. The coordinator decodes: centred lift -> inverse rotation -> x gamma. Here wrap-around
  is modular by design and only *counted*: aborting on it would depend on the data and leak.

Privacy unit: the quantiser sees one site's update (e.g. a sum of per-patient clipped
gradients); the DP guarantee is accounted with ``post_rounding_sensitivity`` and the noise
shares of ``site_noise_stddev``, never with the pre-rounding clip norm.

Trust assumptions of distributed DP (what a patient keeps):
- Against the coordinator alone: it sees only the unmasked sum of >= t_min sites, whose noise
  has variance >= (sigma * Delta)^2 per lattice coordinate, so the ledger's epsilon (Poisson-
  subsampled Gaussian, noise multiplier sigma over the post-rounding Delta) holds.
- Against the coordinator plus c colluding sites: they subtract their own noise shares; the
  rest carries (m - c) * sigma^2 Delta^2 / t_min for m included sites, i.e. an effective noise
  multiplier sigma * sqrt((m - c) / t_min). The ledger's epsilon holds for c <= m - t_min; a
  larger coalition must be accounted with that smaller multiplier. A coalition holding t shares
  of one site's secrets can unmask that site's update, which then carries only its own share
  sigma * Delta / sqrt(t_min) of noise (the SecAgg threshold assumption).
- Dropouts: shares are sized for t_min survivors and a round with fewer aborts, so missing
  sites never leave the sum with less than the accounted noise (more survivors only add noise).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Noise = Callable[[int], np.ndarray]
MIN_SITE_STDDEV = 3.0  # lattice units; below this the discrete-vs-continuous slack matters


class SaturationError(ValueError):
    """A site's value would leave the fixed-point range (it is rejected, never clipped)."""


class DistributedDpRefused(ValueError):
    """The distributed-DP setting is outside the regime where its accounting holds."""


def _positive(name: str, value: float) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r}: must be a finite number > 0")
    return float(value)


def _bits(value: int) -> int:
    if not isinstance(value, int) or not 2 <= value <= 64:
        raise ValueError(f"bits={value!r}: must be an int in [2, 64]")
    return value


# -- stages -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class L2Clip:
    """Scale ``x`` down to L2 norm <= ``bound`` (the sensitivity before scaling)."""

    bound: float

    def __post_init__(self) -> None:
        _positive("bound", self.bound)

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        x = np.asarray(x, dtype=np.float64)
        norm = float(np.linalg.norm(x))
        factor = min(1.0, self.bound / norm) if norm > 0 else 1.0
        return x * factor, {"norm": norm, "clipped": factor < 1.0}


@dataclass(frozen=True)
class Scale:
    """Divide by the lattice step ``gamma`` on the way in, multiply on the way out."""

    gamma: float

    def __post_init__(self) -> None:
        _positive("gamma", self.gamma)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) / self.gamma

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64) * self.gamma


def _fwht(a: np.ndarray) -> np.ndarray:
    """Orthonormal fast Walsh-Hadamard transform (its own inverse) of a power-of-2 length."""
    n = a.shape[0]
    out = np.array(a, dtype=np.float64)
    h = 1
    while h < n:
        blocks = out.reshape(-1, 2, h)
        out = np.stack((blocks[:, 0] + blocks[:, 1], blocks[:, 0] - blocks[:, 1]), axis=1)
        out = out.reshape(n)
        h *= 2
    return out / math.sqrt(n)


@dataclass(frozen=True)
class HadamardRotation:
    """x -> H D x (random signs D from a *public* seed shared by all sites of the round).

    Why: it spreads a vector's mass evenly over coordinates, so rounding and the modular range
    are governed by the norm rather than the largest coordinate. Pads to a power of two.
    """

    dim: int
    seed: bytes

    @property
    def padded_dim(self) -> int:
        return 1 << max(0, (self.dim - 1).bit_length())

    def _signs(self) -> np.ndarray:
        gen = np.random.default_rng(int.from_bytes(hashlib.sha256(self.seed).digest(), "big"))
        return gen.choice(np.array([-1.0, 1.0]), size=self.padded_dim)

    def forward(self, x: np.ndarray) -> np.ndarray:
        padded = np.zeros(self.padded_dim)
        padded[: self.dim] = x
        return _fwht(padded * self._signs())

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return (_fwht(np.asarray(y, dtype=np.float64)) * self._signs())[: self.dim]


@dataclass(frozen=True)
class ConditionalRounding:
    """Unbiased randomised rounding, resampled until the L2 norm is <= ``norm_bound``.

    The bound (``post_rounding_sensitivity``) is met with probability >= 1 - beta per try, so
    the retry count is data-independent in distribution and the sensitivity holds always.
    """

    norm_bound: float
    max_tries: int = 1000

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        x = np.asarray(x, dtype=np.float64)
        floor = np.floor(x)
        frac = x - floor
        for tries in range(1, self.max_tries + 1):
            rounded = floor + (rng.random(x.shape) < frac)
            if float(np.linalg.norm(rounded)) <= self.norm_bound:
                return rounded.astype(np.int64), {"rounding_tries": tries}
        raise RuntimeError(
            f"conditional rounding failed {self.max_tries} times; fix: raise beta's bound "
            "(smaller beta) or check that the input was clipped"
        )


@dataclass(frozen=True)
class IntegerNoise:
    """Add this site's share of integer noise (``noise(size) -> int64 array``)."""

    noise: Noise

    def apply(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(self.noise(x.shape[0]))
        if z.shape != x.shape or z.dtype.kind not in "iu":
            raise ValueError(
                f"noise returned shape {z.shape} dtype {z.dtype}; need int64 {x.shape}"
            )
        return x + z.astype(np.int64)


@dataclass(frozen=True)
class ModularCodec:
    """Signed integers <-> words mod 2^b (two's complement; decode is the centred lift)."""

    bits: int = 32

    def __post_init__(self) -> None:
        _bits(self.bits)

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Return (uint64 words, number of coordinates outside [-2^(b-1), 2^(b-1)))."""
        x = np.ascontiguousarray(x, dtype=np.int64)
        half = 1 << (self.bits - 1)
        wraps = 0 if self.bits == 64 else int(np.count_nonzero((x < -half) | (x >= half)))
        words = x.view(np.uint64) & np.uint64((1 << self.bits) - 1)
        return words, wraps

    def decode(self, words: np.ndarray) -> np.ndarray:
        w = np.asarray(words).astype(np.uint64) & np.uint64((1 << self.bits) - 1)
        if self.bits == 64:
            return w.view(np.int64)
        v = w.astype(np.int64)
        v[v >= 1 << (self.bits - 1)] -= 1 << self.bits
        return v


# -- plain SecAgg -----------------------------------------------------------------------------
@dataclass(frozen=True)
class FixedPointCodec:
    """Weighted fixed point whose range cannot wrap for ``n_summands`` sites.

    Each site sends ``round(weight * x * scale)`` with ``|weight * x_j| <= clip_bound *
    max_weight``; ``scale`` is chosen so that even ``n_summands`` such values, each rounded up,
    stay inside [-(2^(b-1) - 1), 2^(b-1) - 1].
    """

    clip_bound: float
    max_weight: float
    n_summands: int
    bits: int = 32

    def __post_init__(self) -> None:
        _positive("clip_bound", self.clip_bound)
        _positive("max_weight", self.max_weight)
        _bits(self.bits)
        if not isinstance(self.n_summands, int) or self.n_summands < 1:
            raise ValueError(f"n_summands={self.n_summands!r}: must be an int >= 1")
        if self.scale <= 0:
            raise ValueError(
                f"bits={self.bits}: too narrow for {self.n_summands} summands; fix: raise bits"
            )

    @property
    def _per_site(self) -> float:
        # Capped at 2^52 so that float64 still resolves single lattice steps for wide words.
        return min(((1 << (self.bits - 1)) - 1) / self.n_summands - 1.0, 2.0**52)

    @property
    def scale(self) -> float:
        return self._per_site / (self.clip_bound * self.max_weight)

    @property
    def error_bound(self) -> float:
        """Max absolute error per coordinate of the decoded sum: per summand, half a lattice
        step of rounding, plus float64 error (<= 2^-52 relative) in ``weight * x * scale`` on
        encode and in the int-to-float conversion and division on decode."""
        return self.n_summands * (0.5 + 2 * self._per_site * 2.0**-52) / self.scale

    def encode(self, x: np.ndarray, weight: float = 1.0, *, site: str = "?") -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        limit = self.clip_bound * self.max_weight
        if not 0 <= weight <= self.max_weight:
            raise SaturationError(
                f"site {site!r}: weight={weight!r} outside [0, max_weight={self.max_weight}]; "
                "fix: normalise weights or raise max_weight for the round"
            )
        scaled = weight * x
        worst = float(np.max(np.abs(scaled))) if scaled.size else 0.0
        if not np.all(np.isfinite(scaled)) or worst > limit:
            raise SaturationError(
                f"site {site!r}: |weight * value| = {worst:.6g} exceeds clip_bound * max_weight "
                f"= {limit:.6g}, which would saturate the fixed-point range; fix: clip the "
                "update to clip_bound before encoding (values are never clipped silently)"
            )
        return ModularCodec(self.bits).encode(np.rint(scaled * self.scale).astype(np.int64))[0]

    def decode(self, words: np.ndarray) -> np.ndarray:
        return ModularCodec(self.bits).decode(words) / self.scale


# -- distributed DP ---------------------------------------------------------------------------
def post_rounding_sensitivity(clip: float, gamma: float, dim: int, beta: float) -> float:
    """L2 bound on a rounded vector (KLS21): min of the w.p. 1-beta and worst-case bounds.

    sqrt(min(c^2 + d/4 + sqrt(2 ln(1/beta)) (c + sqrt(d)/2), (c + sqrt(d))^2)), c = clip/gamma.
    """
    c = _positive("clip", clip) / _positive("gamma", gamma)
    if not 0 < beta < 1:
        raise ValueError(f"beta={beta!r}: must be in (0, 1)")
    d = float(dim)
    likely = c * c + d / 4 + math.sqrt(2 * math.log(1 / beta)) * (c + math.sqrt(d) / 2)
    return math.sqrt(min(likely, (c + math.sqrt(d)) ** 2))


def site_noise_stddev(noise_multiplier: float, sensitivity: float, min_survivors: int) -> float:
    """Per-site noise stddev in lattice units: sigma * Delta / sqrt(t_min).

    Any ``t_min`` survivors together carry variance (sigma * Delta)^2, so dropouts never leave
    the sum with less noise than accounted. Refused below ~3 lattice units, where the
    discrete Gaussian's slack to the continuous accounting is no longer negligible.
    """
    std = noise_multiplier * sensitivity / math.sqrt(min_survivors)
    if std < MIN_SITE_STDDEV:
        raise DistributedDpRefused(
            f"per-site noise stddev {std:.3g} lattice units < {MIN_SITE_STDDEV}: the distributed "
            "discrete Gaussian would not match the Gaussian accounting; fix: use a smaller gamma "
            "(finer lattice) or fewer required survivors"
        )
    return std


def choose_bits(
    n_summands: int, sensitivity: float, site_stddev: float, tails: float = 12.0
) -> int:
    """Smallest b such that |signal sum| + ``tails`` x noise stddev fits the centred range."""
    worst = n_summands * sensitivity + tails * math.sqrt(n_summands) * site_stddev
    return max(2, math.ceil(math.log2(2 * worst + 2)))


@dataclass(frozen=True)
class DistributedDpQuantizer:
    """Site encode / coordinator decode of the distributed-DP pipeline (see module doc)."""

    clip: float
    gamma: float
    dim: int
    bits: int
    beta: float = math.exp(-0.5)
    rotation_seed: bytes | None = None
    noise: Noise | None = None

    def __post_init__(self) -> None:
        _positive("clip", self.clip)
        _positive("gamma", self.gamma)
        _bits(self.bits)

    @property
    def output_dim(self) -> int:
        """Words per site (the rotation pads to a power of two); use it as SecAgg ``dim``."""
        return self._rotation.padded_dim if self._rotation else self.dim

    @property
    def _rotation(self) -> HadamardRotation | None:
        return (
            None if self.rotation_seed is None else HadamardRotation(self.dim, self.rotation_seed)
        )

    @property
    def sensitivity(self) -> float:
        return post_rounding_sensitivity(self.clip, self.gamma, self.output_dim, self.beta)

    def encode(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"update: expected shape ({self.dim},), got {x.shape}")
        clipped, measurements = L2Clip(self.clip).apply(x)
        y = Scale(self.gamma).forward(clipped)
        if self._rotation is not None:
            y = self._rotation.forward(y)
        ints, rounding = ConditionalRounding(self.sensitivity).apply(y, rng)
        measurements.update(rounding)
        if self.noise is not None:
            ints = IntegerNoise(self.noise).apply(ints)
        words, wraps = ModularCodec(self.bits).encode(ints)
        measurements["wraps"] = wraps
        return words, measurements

    def decode(self, words: np.ndarray) -> np.ndarray:
        y = ModularCodec(self.bits).decode(words).astype(np.float64)
        if self._rotation is not None:
            y = self._rotation.inverse(y)
        return Scale(self.gamma).inverse(y)


@dataclass(frozen=True)
class DistributedDpPlan:
    """What a study needs to run and account one distributed-DP round (a frozen record).

    ``noise_multiplier`` and ``sensitivity`` go to the ledger (Gaussian over the post-rounding
    L2 bound); ``site_stddev`` parameterises each site's integer-noise sampler; ``bits`` and
    ``words`` configure SecAgg.
    """

    noise_multiplier: float
    sensitivity: float
    min_survivors: int
    site_stddev: float
    bits: int
    words: int


def plan_distributed_dp(
    *,
    clip: float,
    gamma: float,
    dim: int,
    noise_multiplier: float,
    min_survivors: int,
    n_sites: int,
    rotate: bool = True,
    beta: float = math.exp(-0.5),
) -> DistributedDpPlan:
    """Sensitivity, per-site noise and bit width for one configuration (refuses unsafe ones)."""
    words = HadamardRotation(dim, b"").padded_dim if rotate else dim
    delta = post_rounding_sensitivity(clip, gamma, words, beta)
    std = site_noise_stddev(_positive("noise_multiplier", noise_multiplier), delta, min_survivors)
    bits = choose_bits(n_sites, delta, std)
    if bits > 64:
        raise DistributedDpRefused(f"needs {bits} bits > 64; fix: raise gamma or clip harder")
    return DistributedDpPlan(noise_multiplier, delta, min_survivors, std, bits, words)
