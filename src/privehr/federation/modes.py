"""Protection modes: each pairs the site-side step (what leaves) with the coordinator-side step.

``make_protection`` maps a grid entry to one of:

- ``PlainProtection``   — plain weighted deltas (non-private; ε = ∞ in every ledger).
- ``DpLocalProtection`` — site-local patient-level DP-SGD (float Gaussian noise in training).
- ``SecAggProtection``  — FedAvg deltas, explicitly L2-clipped, fixed-point encoded and masked.
- ``DdpProtection``     — DP-FedSGD under SecAgg: per-patient clipped gradients, randomised
                          rounding per patient, each site's share of discrete Gaussian noise.
- ``HeProtection``      — FedAvg deltas as CKKS ciphertexts under the key holder's key
                          (in ``modes_he``).

Privacy noise always comes from ``NoiseSource.secure()`` (OS entropy) unless the study runs in
the test-only seeded mode, in which case every release is recorded as non-private. Each site
draws from its own source (``NoiseSource.for_site``), as it does in a deployment.

Halves: ``site_plugins(site)`` is the site half (it needs that site's identity key, from
``Identities``); everything else is the coordinator half. A deployed site builds the same
class from its own approved copy of the study, its own key and the roster, and refuses a round
whose privacy parameters differ from the ones it calibrated itself (``check_privacy_params``):
the coordinator cannot talk a site into less noise, a bigger clip or another sampling rate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.coordinator import weighted_mean_delta
from privehr.privacy.noise import NoiseSource

EVAL_BINS_PRIVATE = 10  # coarse bins keep per-cell noise small relative to counts


def per_patient_mean_mask(mask):
    """Row weights 1/rows: each patient's loss is the mean over its rows, then clipped as one.

    Why: with summed row losses, a patient with many encounters has a large gradient that the
    per-patient clip shrinks to almost nothing per row, and on the readmission task (positives
    cluster in such patients) the model learned mostly from single-visit patients — one ad hoc
    measurement on the demo pool with no noise (not a benchmark): AUROC 0.53 summed vs 0.74
    averaged (0.78 without clipping).
    The unit of privacy is unchanged: one patient, one clipped contribution.
    """
    return mask / mask.sum(1, keepdim=True).clamp(min=1)


def _spec_feature_names() -> list[str]:
    """The shared FeatureSpec's column names: public, so a coordinator knows them without data."""
    from privehr.ehr.features import FeatureSpec

    return list(FeatureSpec.default().feature_names())


def public_scale(feature_names: list[str]) -> np.ndarray:
    """Data-independent feature scales (clinical reference magnitudes) used before DP statistics.

    Why: DP standardisation statistics need a bounded contribution per patient; dividing by a
    public scale first makes one clipping bound meaningful for every column.
    """
    ref = {"age": 90.0, "obs_bmi": 30.0, "obs_systolic_bp": 120.0, "obs_diastolic_bp": 80.0, "obs_hba1c": 6.0,
           "obs_glucose": 100.0, "obs_total_cholesterol": 200.0, "obs_ldl": 120.0, "obs_hdl": 50.0,
           "obs_triglycerides": 150.0, "obs_egfr": 90.0, "obs_creatinine": 1.0, "obs_body_weight": 80.0,
           "obs_body_height": 170.0, "obs_heart_rate": 75.0, "obs_respiratory_rate": 15.0,
           "obs_hemoglobin": 14.0, "obs_urea_nitrogen": 15.0, "obs_potassium": 4.5, "obs_pain_severity": 5.0}
    return np.array([ref.get(n, 1.0) for n in feature_names], dtype=np.float64)


def check_privacy_params(sent: dict[str, Any], own: dict[str, float | int]) -> None:
    """Refuse a request whose privacy parameters differ from the site's own calibration."""
    import math

    from privehr.federation.handlers import HandlerError

    for k, v in own.items():
        got = sent.get(k)
        if not isinstance(got, (int, float)) or not math.isclose(float(got), float(v), rel_tol=1e-9, abs_tol=0.0):
            raise HandlerError(P.ErrorCode.PRIVACY_PARAMS_MISMATCH)


class PlainProtection:
    """No protection: plain weighted deltas leave each site (non-private releases)."""

    private = False
    request_kind = P.TRAIN

    def __init__(self, cfg: StudyConfig | None = None, prep: Any = None):
        self.cfg = cfg
        self.counts: dict[str, float] = {}

    def site_plugins(self, site) -> dict[str, Any]:
        return {}

    def on_counts(self, counts: dict[str, float]) -> None:
        self.counts = counts

    def rounds(self, cfg: StudyConfig) -> int:
        return cfg.federation.rounds

    def std_floor(self) -> np.ndarray | None:
        return None

    def public_standardizer(self) -> dict[str, list[float]] | None:
        return None

    def train_config(self, round_: int) -> dict[str, Any]:
        return {"mode": "plain"}

    def aggregate(self, coord, round_, replies):
        return weighted_mean_delta(coord, round_, replies)

    def round_measurements(self) -> dict[str, Any]:
        return {}

    def evaluation_dp(self, cfg: StudyConfig) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"kind": "none"}


class _PrivateBase(PlainProtection):
    """Shared by the DP modes: DP standardisation statistics and DP evaluation histograms."""

    private = True

    def __init__(self, cfg: StudyConfig, prep: Any, entry: ConfigEntry, noise: NoiseSource):
        PlainProtection.__init__(self, cfg, prep)  # explicit: DdpProtection initialises _SecAggBase itself
        from privehr.federation.study import site_delta
        from privehr.privacy.calibration import calibrate_noise_multiplier

        self.entry = entry
        self.noise = noise
        self._site_noise: dict[str, NoiseSource] = {}
        if cfg.privacy.delta is not None:  # agreed up front (deployment: sites don't know each other's sizes)
            self.delta = float(cfg.privacy.delta)
        else:
            self.delta = min(site_delta(s.n_patients) for s in prep.sites)
        eps = float(entry.epsilon)
        pv = cfg.privacy
        # Training patients: the statistics take a share, DP-SGD the rest (the ledger composes
        # both with PLD; the split only sets each mechanism's noise). Held-out test patients are
        # disjoint from them, so the evaluation histograms get their own ε on that partition.
        self.eps_stats = pv.stats_share * eps
        self.eps_eval = eps if pv.dp_evaluation else 0.0
        self.eps_train = eps - self.eps_stats
        self.nm_stats = calibrate_noise_multiplier(self.eps_stats, self.delta, 1.0, 1)
        self.nm_eval = calibrate_noise_multiplier(self.eps_eval, self.delta, 1.0, 1) if pv.dp_evaluation else None
        self.scale = public_scale(list(prep.feature_names) or _spec_feature_names())

    def site_noise(self, site: str) -> NoiseSource:
        """One source per site, shared by all of that site's releases (never by two sites)."""
        if site not in self._site_noise:
            self._site_noise[site] = self.noise.for_site(site)
        return self._site_noise[site]

    def site_plugins(self, site) -> dict[str, Any]:
        from privehr.privacy.stats import release_count, release_standardisation_stats

        scale = self.scale
        noise = self.site_noise(site.name)

        def dp_stats(X: np.ndarray, pid: np.ndarray):
            if self.cfg.privacy.dp_standardisation == "public":
                # Measured once on the demo pool (ad hoc): per-site DP sums of 170 features (sensitivity
                # sqrt(1 + 2d)) at ~70 patients per site moved feature means by several public
                # units and ruined training, so by default private configurations scale features
                # by public reference magnitudes and release only a noisy patient count (the
                # FedAvg weight).
                rel = release_count(int(len(np.unique(pid))), noise_multiplier=self.nm_stats, noise=noise)
                zeros = np.zeros(X.shape[1])
                return rel.value, zeros, zeros, rel.event
            rel = release_standardisation_stats(X / scale, pid, bound=self.cfg.privacy.stats_bound,
                                                noise_multiplier=self.nm_stats, noise=noise)
            v = rel.value
            # Statistics travel in public-scale units; the coordinator's standardiser maps back.
            return v.count, v.sum * scale, v.sum_sq * scale**2, rel.event

        def noise_for_eval():
            from dp_accounting.dp_event import GaussianDpEvent, NonPrivateDpEvent

            def event_for(nm: float):
                return GaussianDpEvent(nm) if noise.is_private else NonPrivateDpEvent()

            return noise, event_for

        return {"dp_stats": dp_stats, "noise": noise_for_eval}

    def std_floor(self) -> np.ndarray:
        # A noisy variance can come out near zero; 5% of the public scale bounds the damage.
        return 0.05 * self.scale

    def public_standardizer(self) -> dict[str, list[float]] | None:
        if self.cfg.privacy.dp_standardisation != "public":
            return None
        return {"mean": [0.0] * len(self.scale), "std": self.scale.tolist()}

    def evaluation_dp(self, cfg: StudyConfig) -> dict[str, Any]:
        if self.nm_eval is None:
            return {}
        return {"noise_multiplier": self.nm_eval, "bins": EVAL_BINS_PRIVATE}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.entry.protection, "epsilon_target": self.entry.epsilon, "delta": self.delta,
                "epsilon_split": {"stats": self.eps_stats, "evaluation": self.eps_eval, "training": self.eps_train},
                "noise_multiplier_stats": self.nm_stats, "noise_multiplier_eval": self.nm_eval,
                "noise": repr(self.noise)}


class DpLocalProtection(_PrivateBase):
    """Site-local patient-level DP-SGD; one sampling rate q and one σ serve every site."""

    def __init__(self, cfg: StudyConfig, prep: Any, entry: ConfigEntry, noise: NoiseSource):
        super().__init__(cfg, prep, entry, noise)
        from privehr.privacy.calibration import calibrate_noise_multiplier

        self.q = cfg.privacy.sampling_rate
        self.local_steps = max(1, round(cfg.federation.local_epochs / self.q))
        self.sigma = calibrate_noise_multiplier(self.eps_train, self.delta, self.q, self.local_steps,
                                                rounds=cfg.federation.rounds)

    def train_config(self, round_: int) -> dict[str, Any]:
        return {"mode": "dp_local", "q": self.q, "sigma": self.sigma, "clip": self.cfg.privacy.clip_norm,
                "steps": self.local_steps}

    def site_plugins(self, site) -> dict[str, Any]:
        plugins = super().site_plugins(site)
        noise = self.site_noise(site.name)
        own = {"q": self.q, "sigma": self.sigma, "clip": self.cfg.privacy.clip_norm, "steps": self.local_steps}

        def dp_local(handlers, msg):
            from privehr.learning.models import get_flat
            from privehr.privacy.calibration import dpsgd_event
            from privehr.privacy.dpsgd import dp_sgd_local, pad_by_patient

            cfg = msg.payload["config"]
            check_privacy_params(cfg, own)
            # Refuse before any data is touched if this round would exceed the site's budget.
            handlers.node.precheck(dpsgd_event(float(cfg["q"]), float(cfg["sigma"]), int(cfg["steps"])))
            params = msg.payload["params"].astype(np.float32)
            model = handlers._model(params)
            X = handlers._standardise(handlers.data.X_train, cfg["standardizer"])
            padded = pad_by_patient(X, handlers.data.y_train, handlers.data.pid_train)
            res = dp_sgd_local(model, padded.Xp, per_patient_mean_mask(padded.mask), padded.y,
                               sampling_prob=float(cfg["q"]),
                               noise_multiplier=float(cfg["sigma"]), clip_norm=float(cfg["clip"]),
                               steps=int(cfg["steps"]), lr=float(cfg["lr"]), noise=noise,
                               prox_mu=float(cfg.get("mu", 0.0)))
            return get_flat(model) - params, res.event

        plugins["dp_local"] = dp_local
        return plugins

    def aggregate(self, coord, round_, replies):
        # Weights are the sites' DP counts from the statistics stage (already charged).
        weighted = {s: {"delta": r["delta"], "weight": max(self.counts.get(s, 1.0), 1.0)} for s, r in replies.items()}
        return weighted_mean_delta(coord, round_, weighted)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "sampling_rate": self.q, "local_steps": self.local_steps,
                "noise_multiplier": self.sigma, "clip_norm": self.cfg.privacy.clip_norm}


def default_noise(cfg: StudyConfig) -> NoiseSource:
    """OS-entropy noise, or the test-only seeded stream the study file asks for (non-private)."""
    seed = cfg.privacy.seeded_noise_for_tests
    return NoiseSource.secure() if seed is None else NoiseSource.seeded_for_tests(seed)


def make_protection(entry: ConfigEntry, cfg: StudyConfig, prep: Any, noise: NoiseSource | None = None,
                    identities: Any = None):
    """Both halves of ``entry``'s mode. ``identities``: the signing keys this process holds
    (``Identities``; default: the simulator generates every site's)."""
    noise = noise or default_noise(cfg)
    if entry.protection == "none":
        return PlainProtection(cfg, prep)
    if entry.protection == "dp_local":
        return DpLocalProtection(cfg, prep, entry, noise)
    if entry.protection in ("secagg", "ddp"):
        from privehr.federation.modes_secagg import DdpProtection, SecAggProtection

        return (SecAggProtection(cfg, prep, entry, identities) if entry.protection == "secagg"
                else DdpProtection(cfg, prep, entry, noise, identities))
    if entry.protection == "he":
        from privehr.federation.modes_he import HeProtection

        return HeProtection(cfg, prep, entry, identities)
    raise ValueError(f"unknown protection {entry.protection!r}")


def params_digest(params: np.ndarray) -> bytes:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(params, dtype=np.float32).tobytes()).digest()

