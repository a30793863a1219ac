"""Server-side aggregation: weighted FedAvg of flat deltas and server optimisers.

Convention: a site's *delta* is ``local_params - global_params`` after local training (it
already points downhill). The coordinator only ever needs the example-weighted **sum** of
deltas and the total weight, which is exactly what secure aggregation releases; so
``fedavg_from_sum`` is the primitive and ``fedavg`` is its plain-text convenience.

Server optimisers follow the TFF habit (settings in the constructor, explicit state):
``state = opt.initialize()``, then ``state, new_global = opt.next(state, global, delta)``.
States are frozen records with read-only arrays; ``next`` never mutates its inputs.
FedProx is client-side only (``LocalTrainConfig.prox_mu``); ``fedprox(...)`` is a preset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from privehr.learning._checks import Problems
from privehr.learning.train import LocalTrainConfig


def _vec(x: Any, name: str, where: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{where}: {name} must be a flat 1-D vector, got shape {arr.shape}; "
                         "flatten with get_flat()")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: {name} contains NaN/inf; check the site update or the "
                         "dequantisation step that produced it")
    return arr


def fedavg_from_sum(weighted_sum: Any, total_weight: float) -> np.ndarray:
    """Average delta from ``sum_k n_k * delta_k`` and ``sum_k n_k`` (what SecAgg releases)."""
    s = _vec(weighted_sum, "weighted_sum", "fedavg_from_sum")
    p = Problems("fedavg_from_sum")
    p.positive_float("total_weight", total_weight, "pass the summed example counts (> 0)")
    p.raise_if_any()
    return (s / float(total_weight)).astype(np.float32)


def fedavg(deltas: Sequence[Any], weights: Sequence[float]) -> np.ndarray:
    """Example-weighted mean of flat deltas (float64 accumulation, float32 result).

    >>> fedavg([[1.0, 0.0], [0.0, 4.0]], weights=[3, 1]).tolist()
    [0.75, 1.0]
    """
    p = Problems("fedavg")
    p.require(len(deltas) > 0, "len(deltas)", len(deltas), "be >= 1", "pass one delta per site")
    p.require(
        len(deltas) == len(weights), "len(weights)", len(weights),
        f"equal len(deltas)={len(deltas)}", "pass one example count per site",
    )
    for i, w in enumerate(weights):
        p.nonneg_float(f"weights[{i}]", w, "pass the site's number of training examples")
    p.raise_if_any()
    vecs = [_vec(d, f"deltas[{i}]", "fedavg") for i, d in enumerate(deltas)]
    shapes = {v.shape for v in vecs}
    if len(shapes) != 1:
        raise ValueError(f"fedavg: deltas have different shapes {sorted(shapes)}; every site "
                         "must train the same model architecture")
    total = float(sum(weights))
    acc = np.zeros_like(vecs[0])
    for v, w in zip(vecs, weights, strict=True):
        acc += float(w) * v
    return fedavg_from_sum(acc, total)


@dataclass(frozen=True, eq=False)
class ServerOptState:
    """Explicit server-optimiser state: rounds applied and (lazily sized) moment vectors."""

    round: int = 0
    m: np.ndarray | None = field(default=None, repr=False)
    v: np.ndarray | None = field(default=None, repr=False)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _check_step(
    where: str, state: ServerOptState, global_params: Any, delta: Any
) -> tuple[np.ndarray, np.ndarray]:
    g = _vec(global_params, "global_params", where)
    d = _vec(delta, "delta", where)
    if g.shape != d.shape:
        raise ValueError(f"{where}: delta has shape {d.shape} but global_params has "
                         f"{g.shape}; both must come from the same model")
    for name, mom in (("m", state.m), ("v", state.v)):
        if mom is not None and mom.shape != g.shape:
            raise ValueError(f"{where}: state.{name} has shape {mom.shape} but the model has "
                             f"{g.shape}; start a fresh state with initialize()")
    return g, d


@runtime_checkable
class ServerOptimizer(Protocol):
    """Turns the aggregated delta into the next global model."""

    def initialize(self) -> ServerOptState: ...

    def next(
        self, state: ServerOptState, global_params: Any, delta: Any
    ) -> tuple[ServerOptState, np.ndarray]: ...


@dataclass(frozen=True)
class NoServerOpt:
    """Plain FedAvg: ``new = global + lr * delta`` (``lr=1`` is McMahan et al. 2017)."""

    lr: float = 1.0

    def __post_init__(self) -> None:
        p = Problems("NoServerOpt")
        p.positive_float("lr", self.lr, "use 1.0 for plain FedAvg")
        p.raise_if_any()

    def initialize(self) -> ServerOptState:
        return ServerOptState()

    def next(
        self, state: ServerOptState, global_params: Any, delta: Any
    ) -> tuple[ServerOptState, np.ndarray]:
        g, d = _check_step("NoServerOpt.next", state, global_params, delta)
        return ServerOptState(round=state.round + 1), (g + self.lr * d).astype(np.float32)


@dataclass(frozen=True)
class FedAvgM:
    """Server momentum (Hsu et al. 2019): ``m = momentum*m + delta; new = global + lr*m``.

    >>> opt = FedAvgM(momentum=0.5, lr=1.0)
    >>> state, w = opt.next(opt.initialize(), [0.0], [1.0])
    >>> state, w = opt.next(state, w, [1.0])
    >>> state.round, float(state.m[0]), float(w[0])
    (2, 1.5, 2.5)
    """

    momentum: float = 0.9
    lr: float = 1.0

    def __post_init__(self) -> None:
        p = Problems("FedAvgM")
        p.require(
            isinstance(self.momentum, int | float) and 0.0 <= self.momentum < 1.0,
            "momentum", self.momentum, "lie in [0, 1)", "use e.g. 0.9",
        )
        p.positive_float("lr", self.lr, "use e.g. 1.0")
        p.raise_if_any()

    def initialize(self) -> ServerOptState:
        return ServerOptState()

    def next(
        self, state: ServerOptState, global_params: Any, delta: Any
    ) -> tuple[ServerOptState, np.ndarray]:
        g, d = _check_step("FedAvgM.next", state, global_params, delta)
        m_prev = state.m if state.m is not None else np.zeros_like(g)
        m = _frozen(self.momentum * m_prev + d)
        return ServerOptState(round=state.round + 1, m=m), (g + self.lr * m).astype(np.float32)


@dataclass(frozen=True)
class FedAdam:
    """Adaptive server optimiser of Reddi et al. 2021 ("Adaptive Federated Optimization").

    ``m = b1*m + (1-b1)*delta; v = b2*v + (1-b2)*delta^2; new = global + lr*m/(sqrt(v)+tau)``
    with no bias correction, as in the paper's Algorithm 2; ``tau`` bounds the adaptivity
    (the paper recommends 1e-3 or larger).
    """

    lr: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        p = Problems("FedAdam")
        p.positive_float("lr", self.lr, "use e.g. 0.1")
        for name in ("beta1", "beta2"):
            val = getattr(self, name)
            p.require(
                isinstance(val, int | float) and 0.0 <= val < 1.0,
                name, val, "lie in [0, 1)", "use beta1=0.9, beta2=0.99",
            )
        p.positive_float("tau", self.tau, "use e.g. 1e-3")
        p.raise_if_any()

    def initialize(self) -> ServerOptState:
        return ServerOptState()

    def next(
        self, state: ServerOptState, global_params: Any, delta: Any
    ) -> tuple[ServerOptState, np.ndarray]:
        g, d = _check_step("FedAdam.next", state, global_params, delta)
        m_prev = state.m if state.m is not None else np.zeros_like(g)
        v_prev = state.v if state.v is not None else np.zeros_like(g)
        m = _frozen(self.beta1 * m_prev + (1.0 - self.beta1) * d)
        v = _frozen(self.beta2 * v_prev + (1.0 - self.beta2) * d * d)
        new = g + self.lr * m / (np.sqrt(v) + self.tau)
        return ServerOptState(round=state.round + 1, m=m, v=v), new.astype(np.float32)


@dataclass(frozen=True)
class FedStrategy:
    """What a federated run does on each side: client training settings + server optimiser."""

    name: str
    client: LocalTrainConfig
    server: ServerOptimizer


def fedavg_strategy(client: LocalTrainConfig | None = None, *, server_lr: float = 1.0
                    ) -> FedStrategy:
    return FedStrategy("fedavg", client or LocalTrainConfig(), NoServerOpt(lr=server_lr))


def fedprox_strategy(mu: float, client: LocalTrainConfig | None = None, *,
                     server_lr: float = 1.0) -> FedStrategy:
    """FedProx (Li et al. 2020): FedAvg on the server, proximal term ``mu`` on clients."""
    base = (client or LocalTrainConfig()).to_dict()
    base["prox_mu"] = mu
    return FedStrategy("fedprox", LocalTrainConfig(**base), NoServerOpt(lr=server_lr))


def fedavgm_strategy(client: LocalTrainConfig | None = None, *, momentum: float = 0.9,
                     server_lr: float = 1.0) -> FedStrategy:
    return FedStrategy("fedavgm", client or LocalTrainConfig(),
                       FedAvgM(momentum=momentum, lr=server_lr))


def fedadam_strategy(client: LocalTrainConfig | None = None, *, server_lr: float = 0.1,
                     beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3
                     ) -> FedStrategy:
    return FedStrategy("fedadam", client or LocalTrainConfig(),
                       FedAdam(lr=server_lr, beta1=beta1, beta2=beta2, tau=tau))
