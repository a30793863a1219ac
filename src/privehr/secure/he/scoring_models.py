"""Models the scoring host can evaluate on patient-packed ciphertexts.

Layout: for one batch, ``cts[j]`` encrypts feature j of every patient (patient i in slot i).
Each model returns one ciphertext of logits, already multiplied by ``mask`` (1 on the batch's
declared patients, 0 elsewhere) in its *last* plaintext multiplication, so no slot outside the
declared patients carries anything derived from the weights.

- :class:`LinearModel` (logistic regression): ``sum_j (w_j * mask) * x_j + b * mask``.
  Depth 1: the default (60, 40, 60) parameters at N=8192 suffice; no evaluation keys.
- :class:`PolyMlp` (one hidden layer, quadratic activation ``c0 + c1 z + c2 z^2``): depth 3
  (scalar multiply, square, masked output weights), so it needs N=16384 with
  (60, 40, 40, 40, 60) (:data:`MLP_SCORING_PARAMS`) and the site's relinearisation keys
  (~5 MB; still no Galois keys). The model must have been *trained* with this activation:
  ReLU networks do not become quadratic ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from privehr.secure.he.backend import CkksBackend, CkksParams
from privehr.secure.he.errors import HeParameterError

#: Parameters for :class:`PolyMlp` scoring (depth 3, 128-bit secure at N=16384).
MLP_SCORING_PARAMS = CkksParams(poly_modulus_degree=16384, coeff_mod_bit_sizes=(60, 40, 40, 40, 60))


def _finite(name: str, arr: np.ndarray, ndim: int, problems: list[str]) -> None:
    if arr.ndim != ndim or arr.size == 0 or not np.all(np.isfinite(arr)):
        problems.append(f"{name} has shape {arr.shape}; expected a finite {ndim}-D array")


@dataclass(frozen=True)
class LinearModel:
    """Logistic regression: logits = x @ weights + bias."""

    weights: np.ndarray
    bias: float
    depth: int = field(default=1, init=False)
    needs_relin_keys: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        problems: list[str] = []
        _finite("weights", w, 1, problems)
        if isinstance(self.bias, bool) or not isinstance(self.bias, int | float) or not (
            math.isfinite(self.bias)
        ):
            problems.append(f"bias={self.bias!r} must be a finite number")
        if problems:
            raise HeParameterError(problems)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", float(self.bias))

    @classmethod
    def from_flat(cls, flat: Any, n_features: int) -> LinearModel:
        """From ``privehr.learning.models.get_flat`` of ``Linear(d, 1)``: d weights, then bias."""
        vec = np.asarray(flat, dtype=np.float64).reshape(-1)
        if vec.size != n_features + 1:
            raise HeParameterError(
                [f"flat vector has {vec.size} values; a logistic regression over {n_features} "
                 f"features has {n_features + 1} (weights then bias)"]
            )
        return cls(vec[:n_features], float(vec[n_features]))

    @property
    def n_features(self) -> int:
        return int(self.weights.size)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Plaintext reference."""
        return np.asarray(x, dtype=np.float64) @ self.weights + self.bias

    def evaluate(self, be: CkksBackend, cts: list[Any], mask: np.ndarray) -> Any:
        acc = None
        for w_j, ct in zip(self.weights, cts, strict=True):
            term = be.multiply_plain(ct, w_j * mask)
            acc = term if acc is None else be.add(acc, term)
        return be.add_plain(acc, self.bias * mask)


@dataclass(frozen=True)
class PolyMlp:
    """One hidden layer with a quadratic activation: logits = act(x @ w1.T + b1) @ w2 + b2,
    act(z) = c0 + c1 z + c2 z^2 with ``activation = (c0, c1, c2)``."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float
    activation: tuple[float, float, float] = (0.0, 0.5, 0.25)
    depth: int = field(default=3, init=False)
    needs_relin_keys: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        w1, b1, w2 = (np.asarray(a, dtype=np.float64) for a in (self.w1, self.b1, self.w2))
        problems: list[str] = []
        _finite("w1", w1, 2, problems)
        _finite("b1", b1, 1, problems)
        _finite("w2", w2, 1, problems)
        if not problems and not (w1.shape[0] == b1.size == w2.size):
            problems.append(
                f"w1 {w1.shape}, b1 {b1.shape} and w2 {w2.shape} disagree on the hidden width"
            )
        act = tuple(float(c) for c in self.activation)
        if len(act) != 3 or not all(math.isfinite(c) for c in act):
            problems.append(f"activation={self.activation!r} must be 3 finite coefficients")
        if not isinstance(self.b2, int | float) or not math.isfinite(self.b2):
            problems.append(f"b2={self.b2!r} must be a finite number")
        if problems:
            raise HeParameterError(problems)
        for name, value in (("w1", w1), ("b1", b1), ("w2", w2), ("activation", act)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "b2", float(self.b2))

    @property
    def n_features(self) -> int:
        return int(self.w1.shape[1])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Plaintext reference."""
        c0, c1, c2 = self.activation
        z = np.asarray(x, dtype=np.float64) @ self.w1.T + self.b1
        return (c0 + c1 * z + c2 * z**2) @ self.w2 + self.b2

    def evaluate(self, be: CkksBackend, cts: list[Any], mask: np.ndarray) -> Any:
        c0, c1, c2 = self.activation
        acc = None
        for k in range(self.w1.shape[0]):
            z = None
            for w_kj, ct in zip(self.w1[k], cts, strict=True):
                term = be.multiply_scalar(ct, float(w_kj))
                z = term if z is None else be.add(z, term)
            z = be.add_scalar(z, float(self.b1[k]))
            # v_k * act(z) = (v_k c2 mask) z^2 + (v_k c1 mask) z ; constants folded below
            quad = be.multiply_plain(be.square(z), self.w2[k] * c2 * mask)
            lin = be.multiply_plain(z, self.w2[k] * c1 * mask)
            term = be.add(quad, lin)
            acc = term if acc is None else be.add(acc, term)
        constant = c0 * float(self.w2.sum()) + self.b2
        return be.add_plain(acc, constant * mask)
