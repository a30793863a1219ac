"""Models a site trains on its own tensors, and their flat-vector view.

Models are plain ``torch.nn.Module`` objects (so DP-SGD in ``privehr.privacy`` can wrap
them with Opacus unchanged) that output one logit per row, shape ``(n, 1)``. Everything
that leaves a site leaves as a flat float32 vector (``get_flat``): clipping, quantising,
masking and encrypting all operate on that vector, never on module internals.

Initialisation draws only from a ``torch.Generator`` seeded by the caller: building a model
never reads or advances torch's global RNG, so two sites (or a test and its reference run)
that pass the same seed get bit-identical starting weights.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from privehr.learning._checks import Problems, as_features, as_labels

ModelKind = Literal["logreg", "mlp"]
MODEL_KINDS: tuple[str, ...] = ("logreg", "mlp")


def _linear(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    # Built on the meta device so that nn.Linear's own init (which uses the global RNG)
    # never runs; then filled with torch's default Linear init drawn from `generator`.
    layer = nn.Linear(n_in, n_out, device="meta").to_empty(device="cpu")
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


def make_model(
    kind: ModelKind, n_features: int, *, hidden: int = 32, seed: int
) -> nn.Module:
    """Build a binary classifier returning logits of shape ``(n, 1)``.

    ``logreg`` is one ``Linear(n_features, 1)`` (the model whose single-patient update is
    invertible: see the evidence section of DESIGN.md); ``mlp`` is
    ``Linear(n_features, hidden) -> ReLU -> Linear(hidden, 1)``.
    """
    p = Problems("make_model")
    p.one_of("kind", kind, MODEL_KINDS)
    p.positive_int("n_features", n_features, "pass the number of feature columns")
    p.positive_int("hidden", hidden, "pass a hidden width such as 32")
    p.require(
        isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0,
        "seed", seed, "be a non-negative integer", "pass e.g. seed=0",
    )
    p.raise_if_any()
    g = torch.Generator().manual_seed(int(seed))
    if kind == "logreg":
        return _linear(n_features, 1, g)
    return nn.Sequential(_linear(n_features, hidden, g), nn.ReLU(), _linear(hidden, 1, g))


def n_params(model: nn.Module) -> int:
    """Number of trainable scalars, i.e. the length of ``get_flat(model)``."""
    return sum(p.numel() for p in model.parameters())


def get_flat(model: nn.Module) -> np.ndarray:
    """A float32 copy of all parameters in ``model.parameters()`` order (never a view)."""
    params = [p.detach().reshape(-1) for p in model.parameters()]
    if not params:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(params).to(torch.float32).cpu().numpy().copy()


def set_flat(model: nn.Module, vec: Any) -> None:
    """Overwrite ``model``'s parameters in place from a flat vector made by ``get_flat``."""
    arr = np.asarray(vec)
    p = Problems("set_flat")
    p.require(arr.ndim == 1, "vec.ndim", arr.ndim, "be 1", "pass a flat vector from get_flat")
    p.require(
        arr.size == n_params(model), "len(vec)", arr.size,
        f"equal n_params(model)={n_params(model)}",
        "pass parameters of a model built with the same kind, n_features and hidden",
    )
    p.raise_if_any()
    p.require(
        bool(np.isfinite(arr).all()), "vec", "contains NaN/inf", "be finite",
        "check the aggregation or server optimiser that produced it",
    )
    p.raise_if_any()
    src = torch.from_numpy(arr.astype(np.float32, copy=True))
    offset = 0
    with torch.no_grad():
        for param in model.parameters():
            k = param.numel()
            param.copy_(src[offset : offset + k].reshape(param.shape))
            offset += k


class NotFittedError(ValueError, AttributeError):
    """The estimator was used before ``fit`` (or ``set_parameters``) gave it weights."""


class Estimator:
    """An sklearn-shaped wrapper around ``make_model`` + ``local_train``.

    ``__init__`` only stores hyper-parameters; learned state ends in ``_`` (``model_``,
    ``n_features_in_``, ``history_``); ``fit`` returns ``self``. It exists for the centralised
    and site-only baselines, where the same model must be trained outside a federation.
    With ``warm_start=True`` ``fit`` continues from the current weights (e.g. a global model
    set through ``set_parameters``) instead of re-initialising from ``seed``.
    """

    def __init__(
        self,
        kind: ModelKind = "logreg",
        n_features: int | None = None,
        *,
        hidden: int = 32,
        epochs: int = 10,
        lr: float = 0.1,
        batch_size: int = 64,
        optimizer: Literal["sgd", "adam"] = "sgd",
        weight_decay: float = 0.0,
        seed: int = 0,
        warm_start: bool = False,
    ) -> None:
        self.kind = kind
        self.n_features = n_features
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.seed = seed
        self.warm_start = warm_start

    def get_params(self) -> dict[str, Any]:
        keys = ("kind", "n_features", "hidden", "epochs", "lr", "batch_size", "optimizer",
                "weight_decay", "seed", "warm_start")
        return {k: getattr(self, k) for k in keys}

    def _build(self, n_features: int) -> None:
        if self.n_features is not None and self.n_features != n_features:
            raise ValueError(
                f"Estimator: X has {n_features} features but n_features={self.n_features}; "
                "pass data with the declared columns or leave n_features=None"
            )
        self.model_ = make_model(self.kind, n_features, hidden=self.hidden, seed=self.seed)
        self.n_features_in_ = n_features

    def _require_fitted(self, method: str) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"This Estimator has no weights yet; call fit(X, y) or set_parameters(vec) "
                f"before {method}()"
            )

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        prox_mu: float = 0.0,
        global_params: np.ndarray | None = None,
    ) -> Estimator:
        from privehr.learning.train import local_train  # train imports this module

        Xt = as_features(X, "Estimator.fit")
        yt = as_labels(y, Xt.shape[0], "Estimator.fit")
        if not (self.warm_start and hasattr(self, "model_")):
            self._build(Xt.shape[1])
        else:
            Xt = as_features(Xt, "Estimator.fit", n_features=self.n_features_in_)
        g = torch.Generator().manual_seed(int(self.seed))
        self.history_ = local_train(
            self.model_, Xt, yt, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
            generator=g, prox_mu=prox_mu, global_params=global_params,
            optimizer=self.optimizer, weight_decay=self.weight_decay,
        )
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of the positive class, shape ``(n,)`` (not sklearn's ``(n, 2)``)."""
        from privehr.learning.train import predict_proba

        self._require_fitted("predict_proba")
        Xt = as_features(X, "Estimator.predict_proba", n_features=self.n_features_in_)
        return predict_proba(self.model_, Xt)

    def predict(self, X: Any, threshold: float = 0.5) -> np.ndarray:
        """Hard 0/1 labels: 1 where ``predict_proba(X) >= threshold``."""
        return (self.predict_proba(X) >= threshold).astype(np.int64)

    def parameters(self) -> np.ndarray:
        self._require_fitted("parameters")
        return get_flat(self.model_)

    def set_parameters(self, vec: Any) -> Estimator:
        """Load a flat vector; builds the model first if needed (needs ``n_features``)."""
        if not hasattr(self, "model_"):
            if self.n_features is None:
                raise NotFittedError(
                    "set_parameters() on an unfitted Estimator needs n_features; "
                    "construct Estimator(kind, n_features) or call fit(X, y) first"
                )
            self._build(self.n_features)
        set_flat(self.model_, vec)
        return self
