"""Secure-aggregation modes: plain SecAgg FedAvg and distributed DP (DP-FedSGD) under SecAgg.

Site side (inside the site process): clip → encode (fixed point, or per-patient randomised
rounding + this site's discrete Gaussian share) → mask. Only masked words leave. Coordinator
side: SecAgg stages → unmasked *sum* → decode → FedAvg mean (plain) or DP-SGD step (ddp).

Keys: each site's Ed25519 identity key comes from ``Identities``: generated for every site in
the simulator (standing in for ``privehr provision``), the site's own provisioned key in a
deployment, none at the coordinator. Only that site's plugins get it; every site checks
advertised keys against the roster of public keys it holds locally.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.coordinator import RoundAborted
from privehr.federation.handlers import HandlerError
from privehr.federation.identities import Identities
from privehr.federation.modes import (
    PlainProtection,
    _PrivateBase,
    check_privacy_params,
    params_digest,
    per_patient_mean_mask,
)
from privehr.privacy.noise import NoiseSource
from privehr.secure.quantize import (
    ConditionalRounding,
    FixedPointCodec,
    ModularCodec,
    post_rounding_sensitivity,
    site_noise_stddev,
)
from privehr.secure.secagg import (
    SecAggAborted,
    SecAggConfig,
    SecAggCoordinator,
    SecAggResult,
    SecAggSite,
)
from privehr.secure.secagg.constants import STAGE_ADVERTISE, STAGE_MASKED


class _SiteSecAggState:
    """A site's private SecAgg state: identity key, local roster, this round's state machine."""

    def __init__(self, name: str, key: Ed25519PrivateKey, roster: dict[str, bytes]):
        self.name, self.key, self.roster = name, key, roster
        self.machine: SecAggSite | None = None
        self.digest = b""

    def start(self, cfg: dict[str, Any], words: np.ndarray, params: np.ndarray) -> None:
        self.machine = SecAggSite(self.name, self.key, self.roster, SecAggConfig(**cfg), rng=secrets)
        self.machine.set_input(words)
        self.digest = params_digest(params)

    def engine(self, handlers, msg):
        def step(stage: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
            if self.machine is None:
                raise HandlerError(P.ErrorCode.PROTOCOL_ABORT)
            try:
                if stage == STAGE_ADVERTISE:
                    out = self.machine.handle(stage, body, model_digest=self.digest)
                else:
                    out = self.machine.handle(stage, body)
            except SecAggAborted:
                self.machine = None
                raise HandlerError(P.ErrorCode.PROTOCOL_ABORT) from None
            return out, stage == STAGE_MASKED

        return step


class _SecAggBase(PlainProtection):
    """Provisioning, the per-round SecAgg config, and the coordinator-side stage loop."""

    def __init__(self, cfg: StudyConfig, prep: Any, identities: Identities | None = None):
        PlainProtection.__init__(self, cfg, prep)
        self.site_names = [s.name for s in prep.sites]
        n = len(self.site_names)
        if n < 3:
            raise RoundAborted(f"secure aggregation needs at least 3 sites, the study has {n}")
        self.identities = identities or Identities.simulated(self.site_names)
        if sorted(self.identities.roster) != sorted(self.site_names):
            raise RoundAborted("the roster of identity keys does not list exactly the study's sites")
        self.degree = cfg.privacy.secagg_degree
        k = (n - 1) if self.degree is None else self.degree
        self.threshold = (k + 1) // 2 + 1
        self.states: dict[str, _SiteSecAggState] = {}
        self.last: dict[str, Any] = {}

    def site_state(self, site: str) -> _SiteSecAggState:
        """The site's SecAgg state, built only where this process holds that site's key."""
        if site not in self.states:
            self.states[site] = _SiteSecAggState(site, self.identities.key(site), dict(self.identities.roster))
        return self.states[site]

    def check_secagg_params(self, sa: dict[str, Any]) -> None:
        """The site's own view of the round's SecAgg parameters (a coordinator cannot lower t or
        thin out the graph of share holders)."""
        check_privacy_params(sa, {"n_sites": len(self.site_names), "threshold": self.threshold})
        if sa.get("degree") != self.degree:
            raise HandlerError(P.ErrorCode.PRIVACY_PARAMS_MISMATCH)

    def secagg_config(self, round_: int, dim: int, bits: int, study_id: str) -> dict[str, Any]:
        return {"n_sites": len(self.site_names), "threshold": self.threshold, "dim": dim, "degree": self.degree,
                "bits": bits, "round_id": round_, "study_id": study_id}

    def run_secagg(self, coord, round_: int, sa_cfg: dict[str, Any]) -> SecAggResult:
        machine = SecAggCoordinator(SecAggConfig(**sa_cfg), self.site_names)
        try:
            requests = machine.begin()
            while True:
                stage = machine.stage
                replies = coord.exchange(P.SECAGG, {s: {"stage": stage, "body": b} for s, b in requests.items()},
                                         round_, stage=f"secagg.{stage}")
                out = machine.advance({s: r["body"] for s, r in replies.items() if r.get("stage") == stage})
                if isinstance(out, SecAggResult):
                    self.last = {"secagg_included": sorted(out.included), "secagg_dropped": sorted(out.dropped)}
                    return out
                requests = out
        except SecAggAborted as exc:
            raise RoundAborted(f"round {round_}: secure aggregation aborted ({exc}); model unchanged") from None

    def round_measurements(self) -> dict[str, Any]:
        return dict(self.last)


class SecAggProtection(_SecAggBase):
    """FedAvg under SecAgg: the coordinator learns Σ nᵢδᵢ and Σ nᵢ only (still non-private)."""

    request_kind = P.TRAIN

    def __init__(self, cfg: StudyConfig, prep: Any, entry: ConfigEntry, identities: Identities | None = None):
        super().__init__(cfg, prep, identities)
        self.entry = entry
        self.clip = cfg.privacy.update_clip
        self.bits = cfg.privacy.secagg_bits
        self.max_weight = float(cfg.privacy.max_site_examples)

    def train_config(self, round_: int) -> dict[str, Any]:
        return {"mode": "secagg", "clip": self.clip, "max_weight": self.max_weight, "bits": self.bits}

    def codec(self) -> FixedPointCodec:
        return FixedPointCodec(self.clip, self.max_weight, len(self.site_names), self.bits)

    def site_plugins(self, site) -> dict[str, Any]:
        state = self.site_state(site.name)
        codec = self.codec()

        def encode(handlers, msg):
            self.check_secagg_params(msg.payload["config"]["secagg"])
            delta, _ = handlers._local_delta(msg)
            norm = float(np.linalg.norm(delta))
            clipped = delta * min(1.0, self.clip / norm) if norm > 0 else delta  # the explicit clip stage
            x = np.concatenate([clipped, [1.0]])
            words = codec.encode(x, weight=float(handlers.data.n_train), site=site.name)
            sa = msg.payload["config"]["secagg"]
            state.start(sa, words, msg.payload["params"])
            return words, None, {"clipped": norm > self.clip, "update_l2": norm}

        return {"secagg": encode, "secagg_site": state.engine}

    def configure_round(self, coord, round_: int, dim: int) -> dict[str, Any]:
        self._round_cfg = self.secagg_config(round_, dim + 1, self.bits, coord.study)
        return {"secagg": self._round_cfg}

    def aggregate(self, coord, round_, replies):
        if len(replies) < 3:
            raise RoundAborted(f"round {round_}: only {len(replies)} sites ready; SecAgg needs at least 3")
        result = self.run_secagg(coord, round_, self._round_cfg)
        total = self.codec().decode(result.sum)
        weight = total[-1]
        if weight <= 0:
            raise RoundAborted(f"round {round_}: decoded total weight {weight} is not positive")
        return total[:-1] / weight


class DdpProtection(_PrivateBase, _SecAggBase):
    """Distributed DP: one DP-SGD step over the union of all sites per round, noise split by site."""

    request_kind = P.TRAIN

    def __init__(self, cfg: StudyConfig, prep: Any, entry: ConfigEntry, noise: NoiseSource,
                 identities: Identities | None = None):
        _PrivateBase.__init__(self, cfg, prep, entry, noise)
        _SecAggBase.__init__(self, cfg, prep, identities)
        from privehr.privacy.calibration import calibrate_noise_multiplier

        pv = cfg.privacy
        self.q = pv.sampling_rate
        self.n_rounds = pv.ddp_rounds
        self.clip = pv.clip_norm
        self.gamma = pv.ddp_gamma
        # Each site adds σ²Δ²/t_noise of the variance, so any t_noise survivors carry the full
        # accounted noise; a round with fewer survivors is aborted (never released under-noised).
        self.t_min = max(self.threshold, 3, math.ceil(pv.ddp_min_survivor_fraction * len(self.site_names)))
        self.sigma = calibrate_noise_multiplier(self.eps_train, self.delta, self.q, self.n_rounds)
        self.server_lr = pv.ddp_server_lr
        self.dim: int | None = None
        self.n_total = 1.0

    def rounds(self, cfg: StudyConfig) -> int:
        return self.n_rounds

    def on_counts(self, counts: dict[str, float]) -> None:
        super().on_counts(counts)
        self.n_total = max(sum(counts.values()), 1.0)

    def site_lattice(self, dim: int) -> tuple[float, float]:
        """(L2 sensitivity, this site's noise std) in lattice units: all from the study file."""
        sens = post_rounding_sensitivity(self.clip, self.gamma, dim, math.exp(-0.5))
        return sens, site_noise_stddev(self.sigma, sens, self.t_min)

    def _lattice(self, dim: int) -> tuple[float, float, int]:
        sens, site_std = self.site_lattice(dim)
        # Signal: at most (patients sampled in a round) · sens per coordinate; allow 4× the
        # expected sample plus noise tails. Wrap-around stays modular (counted, never aborted).
        expected = self.q * self.n_total
        worst = (4 * expected + 20) * sens + 12 * math.sqrt(len(self.site_names)) * site_std
        bits = min(62, max(16, math.ceil(math.log2(2 * worst + 2))))
        return sens, site_std, bits

    def train_config(self, round_: int) -> dict[str, Any]:
        return {"mode": "ddp", "q": self.q, "clip": self.clip, "gamma": self.gamma}

    def site_plugins(self, site) -> dict[str, Any]:
        plugins = _PrivateBase.site_plugins(self, site)
        state = self.site_state(site.name)
        noise = self.site_noise(site.name)

        def encode(handlers, msg):
            from privehr.privacy.discrete import sample_discrete_gaussian
            from privehr.privacy.dpsgd import pad_by_patient, per_patient_grads
            from privehr.privacy.events import DistributedDiscreteGaussianEvent

            cfg = msg.payload["config"]
            sa = cfg["secagg"]
            dim = int(sa["dim"])
            # The site's own calibration, from its approved copy of the study, before anything else.
            self.check_secagg_params(sa)
            own_sens, own_std = self.site_lattice(dim)
            check_privacy_params(cfg, {"q": self.q, "clip": self.clip, "gamma": self.gamma,
                                       "sensitivity": own_sens, "site_std": own_std})
            sens, site_std = float(cfg["sensitivity"]), float(cfg["site_std"])
            planned = DistributedDiscreteGaussianEvent(
                sigma_lattice=site_std, l2_sensitivity_lattice=sens, sampling_prob=float(cfg["q"]), steps=1,
                n_sites_min=self.t_min, dimension=dim)
            handlers.node.precheck(planned)  # before any data is touched
            params = msg.payload["params"].astype(np.float32)
            model = handlers._model(params)
            X = handlers._standardise(handlers.data.X_train, cfg["standardizer"])
            padded = pad_by_patient(X, handlers.data.y_train, handlers.data.pid_train)
            rng = noise.generator()
            chosen = np.flatnonzero(rng.random(padded.Xp.shape[0]) < float(cfg["q"]))  # Poisson sampling
            total = np.zeros(dim, dtype=np.int64)
            if chosen.size:
                method = {"logreg": "logreg", "mlp": "mlp"}.get(self.cfg.study.model, "opacus")
                g = per_patient_grads(model, padded.Xp[chosen], per_patient_mean_mask(padded.mask[chosen]),
                                      padded.y[chosen], method=method).double().numpy()
                norms = np.linalg.norm(g, axis=1, keepdims=True)
                g = g * np.minimum(1.0, float(cfg["clip"]) / np.maximum(norms, 1e-12))
                rounding = ConditionalRounding(sens)
                for row in g / float(cfg["gamma"]):  # each patient rounded alone: one KLS21 "client"
                    total += rounding.apply(row, rng)[0]
            total += sample_discrete_gaussian(site_std, dim, rng)
            words, wraps = ModularCodec(int(sa["bits"])).encode(total)
            state.start(sa, words, msg.payload["params"])
            event = planned if noise.is_private else None
            return words, event, {"sampled": int(chosen.size), "wraps": int(wraps)}

        plugins.update({"ddp": encode, "secagg_site": state.engine})
        return plugins

    def configure_round(self, coord, round_: int, dim: int) -> dict[str, Any]:
        sens, site_std, bits = self._lattice(dim)
        self.dim = dim
        self._round_cfg = self.secagg_config(round_, dim, bits, coord.study)
        return {"secagg": self._round_cfg, "sensitivity": sens, "site_std": site_std}

    def aggregate(self, coord, round_, replies):
        if len(replies) < self.t_min:
            raise RoundAborted(f"round {round_}: only {len(replies)} sites ready; need {self.t_min}")
        result = self.run_secagg(coord, round_, self._round_cfg)
        if len(result.included) < self.t_min:
            raise RoundAborted(f"round {round_}: {len(result.included)} sites in the sum < {self.t_min} whose "
                               "noise shares the accounting assumes; model unchanged")
        grad_sum = ModularCodec(self._round_cfg["bits"]).decode(result.sum).astype(np.float64) * self.gamma
        grad = grad_sum / (self.q * self.n_total)
        return -self.server_lr * grad

    def describe(self) -> dict[str, Any]:
        d = {**_PrivateBase.describe(self), "sampling_rate": self.q, "rounds": self.n_rounds,
             "noise_multiplier": self.sigma, "clip_norm": self.clip, "gamma": self.gamma, "t_min": self.t_min,
             "threshold": self.threshold, "degree": self.degree}
        if self.dim is not None:
            sens, site_std, bits = self._lattice(self.dim)
            d.update({"l2_sensitivity_lattice": sens, "site_noise_std_lattice": site_std, "bits": bits})
        return d
