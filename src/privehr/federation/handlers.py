"""What a site does for each request kind. Pure site-side logic; the gate does the releasing.

Each handler returns ``(payload, Release, constraints)``: the payload to send, what it releases
(for the ledger) and the bounds the gate must check. Training modes:

- ``plain``: local epochs, release the weighted model delta (non-private, ε = ∞).
- ``dp_local``: site-local patient-level DP-SGD (float Gaussian noise inside training).
- ``secagg``: local epochs; the weighted delta is quantised and only its masked words leave.
- ``ddp``: DP-FedSGD under SecAgg: Poisson-sampled per-patient clipped gradient sum, with this
  site's share of discrete Gaussian noise, quantised and masked (distributed DP).
- ``he``: local epochs; the weighted delta leaves as CKKS ciphertext under the key holder's key.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from privehr.federation import protocol as P
from privehr.federation.gate import Constraint, Release
from privehr.learning.models import get_flat, make_model, set_flat
from privehr.learning.train import local_train, predict_proba

if TYPE_CHECKING:
    from privehr.federation.site import SiteData, SiteNode


STANDARDISED_CLIP = 5.0  # |z| cap: a noisy (DP) std must not blow a feature up


def standardise(X: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """z-scores clipped to ±STANDARDISED_CLIP, the same everywhere (sites, baselines, attacks)."""
    z = (X - np.asarray(mean, dtype=np.float64)) / np.asarray(std, dtype=np.float64)
    return np.clip(z, -STANDARDISED_CLIP, STANDARDISED_CLIP).astype(np.float32)


class HandlerError(RuntimeError):
    def __init__(self, code: P.ErrorCode):
        super().__init__(code.name)
        self.error_code = code


class SiteHandlers:
    """Request handlers for one site. Protected-mode helpers are injected by the study runner."""

    def __init__(
        self,
        data: SiteData,
        *,
        model_kind: str,
        hidden: int,
        seed: int,
        n_boot: int = 200,
        plugins: dict[str, Any] | None = None,
    ):
        self.data = data
        self.model_kind = model_kind
        self.hidden = hidden
        self.seed = seed
        self.n_boot = n_boot
        self.plugins = plugins or {}
        self.node: SiteNode | None = None
        self._pending: dict[str, Any] = {}

    def bind(self, node: SiteNode) -> None:
        self.node = node

    # ---------------------------------------------------------------- dispatch
    def dispatch(self, msg) -> tuple[dict[str, Any], Release, dict[str, Constraint]]:
        handler = {
            P.HELLO: self._hello,
            P.STATS: self._stats,
            P.TRAIN: self._train,
            P.EVALUATE: self._evaluate,
            P.SECAGG: self._secagg,
            P.HE_TRAIN: self._he_train,
            P.HE_DECRYPT: self._he_decrypt,
            P.HE_CEREMONY: self._he_setup,
            P.HE_CONTEXT: self._he_setup,
        }.get(msg.kind)
        if handler is None:
            raise HandlerError(P.ErrorCode.UNKNOWN_KIND)
        return handler(msg)

    def _hello(self, msg):
        return {"protocol": P.PROTOCOL_VERSION, "n_features": int(self.data.X_train.shape[1])}, Release.free("hello"), {}

    def _stats(self, msg):
        X = self.data.X_train.astype(np.float64)
        dp = self.plugins.get("dp_stats") if msg.payload["dp"] else None
        if dp is not None:
            count, s, ss, event = dp(X, self.data.pid_train)
            return {"count": float(count), "sum": s, "sumsq": ss}, Release("standardisation_stats", event), {}
        payload = {"count": float(len(X)), "sum": X.sum(0), "sumsq": (X**2).sum(0)}
        return payload, Release("standardisation_stats"), {}

    # ---------------------------------------------------------------- training
    def _model(self, params: np.ndarray) -> torch.nn.Module:
        model = make_model(self.model_kind, self.data.X_train.shape[1], hidden=self.hidden, seed=self.seed)
        set_flat(model, params)
        return model

    def _standardise(self, X: np.ndarray, cfg: dict[str, Any]) -> torch.Tensor:
        return torch.from_numpy(standardise(X, cfg["mean"], cfg["std"]))

    def _local_delta(self, msg) -> tuple[np.ndarray, dict[str, Any]]:
        params = msg.payload["params"].astype(np.float32)
        cfg = msg.payload["config"]
        model = self._model(params)
        X = self._standardise(self.data.X_train, cfg["standardizer"])
        y = torch.from_numpy(self.data.y_train.astype(np.float32))
        gen = torch.Generator().manual_seed(int(cfg["seed"]) * 1000 + msg.round)
        info = local_train(
            model, X, y,
            epochs=int(cfg["epochs"]), lr=float(cfg["lr"]), batch_size=int(cfg["batch_size"]),
            generator=gen, prox_mu=float(cfg.get("mu", 0.0)), global_params=params,
        )
        return get_flat(model) - params, info

    def _train(self, msg):
        cfg = msg.payload["config"]
        mode = cfg["mode"]
        d = int(msg.payload["params"].shape[0])
        if mode == "plain":
            delta, _ = self._local_delta(msg)
            n = float(self.data.n_train)
            payload = {"delta": delta.astype(np.float32), "weight": n}
            return payload, Release("model_update"), {"delta": Constraint(shape=(d,))}
        if mode == "dp_local":
            delta, event = self.plugins["dp_local"](self, msg)
            payload = {"delta": delta.astype(np.float32)}
            return payload, Release("model_update", event), {"delta": Constraint(shape=(d,))}
        if mode in ("secagg", "ddp"):
            # Compute the protected vector now; it leaves only as masked words in SecAgg stages.
            words, event, meta = self.plugins[mode](self, msg)
            self._pending["secagg_input"] = (words, event, meta)
            return {"ready": True}, Release.free("ack"), {}
        raise HandlerError(P.ErrorCode.MALFORMED_REQUEST)

    def _secagg(self, msg):
        stage, body = msg.payload["stage"], msg.payload["body"]
        engine = self.plugins["secagg_site"](self, msg)
        out, is_release = engine(stage, body)
        if is_release:
            _, event, meta = self._pending.pop("secagg_input")
            return {"stage": stage, "body": out}, Release("model_update", event, meta=meta), {}
        return {"stage": stage, "body": out}, Release.free("secagg_protocol"), {}

    def _he_train(self, msg):
        delta, _ = self._local_delta(msg)
        norm = float(np.linalg.norm(delta))
        clip = float(self.plugins["he_clip"])
        delta = delta * min(1.0, clip / norm) if norm > 0 else delta  # explicit clip stage
        update = self.plugins["he_encrypt"](delta.astype(np.float64), float(self.data.n_train),
                                            f"{msg.study}/{msg.round}")
        return {"update": update}, Release("model_update"), {}

    def _he_setup(self, msg):
        # Key material only (public context, signed record, a pin): no patient data leaves.
        step = self.plugins.get("he_ceremony" if msg.kind == P.HE_CEREMONY else "he_context")
        if step is None:
            raise HandlerError(P.ErrorCode.UNKNOWN_KIND)
        return step(self, msg), Release.free(msg.kind), {}

    def _he_decrypt(self, msg):
        # Only the key holder answers; it verifies proofs and rounds before release.
        decrypt = self.plugins.get("he_decrypt")
        if decrypt is None:
            raise HandlerError(P.ErrorCode.UNKNOWN_KIND)
        mean = decrypt(msg.payload["aggregate"])
        return {"mean": np.asarray(mean, dtype=np.float64)}, Release.free("aggregate_relay"), {}

    # ---------------------------------------------------------------- evaluation
    def _evaluate(self, msg):
        from privehr.federation.evaluation import GROUPINGS, evaluate_site

        model = self._model(msg.payload["params"].astype(np.float32))
        X = self._standardise(self.data.X_test, msg.payload["standardizer"])
        p = predict_proba(model, X)
        dp = msg.payload["dp"]
        if not dp:
            payload = evaluate_site(self.data, p, dp={}, seed=self.seed, n_boot=self.n_boot)
            return payload, Release("histogram"), {}
        # A private evaluation keeps at most EVAL_MAX_ROWS rows per patient (the first ones, a
        # data-independent rule); one patient then moves at most that many counts in the overall
        # histogram and in one cell per grouping: L2 sensitivity = sqrt(1 + #groupings) * rows.
        keep = first_rows_per_patient(self.data.pid_test, EVAL_MAX_ROWS)
        _, rows = np.unique(self.data.pid_test[keep], return_counts=True)
        sensitivity = math.sqrt(1 + len(GROUPINGS)) * int(rows.max(initial=1))
        noise, event_for = self.plugins["noise"]()
        nm = float(dp["noise_multiplier"])
        payload = evaluate_site(self.data.subset_test(keep), p[keep],
                                dp={"bins": int(dp["bins"]), "noise_multiplier": nm, "sensitivity": sensitivity},
                                seed=self.seed, n_boot=0, rng=noise.generator())
        return payload, Release("histogram", event_for(nm)), {}


EVAL_MAX_ROWS = 3


def first_rows_per_patient(pid: np.ndarray, m: int) -> np.ndarray:
    """Boolean mask keeping each patient's first ``m`` rows (in the site's row order)."""
    keep = np.zeros(len(pid), dtype=bool)
    seen: dict[Any, int] = {}
    for i, p in enumerate(pid):
        c = seen.get(p, 0)
        if c < m:
            keep[i] = True
            seen[p] = c + 1
    return keep
