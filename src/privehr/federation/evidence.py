"""Privacy evidence for a finished study run: attacks and audits against our own outputs.

:func:`run_evidence` returns what the runner stores as ``metrics["attacks"]``:

- ``membership``: loss-threshold and LiRA (offline/online) attacks on the final model of every
  configuration whose final model differs. Candidates are the patients of one real site (the one
  with the most training patients): its training patients are members, its held-out test
  patients non-members. SecAgg and HE reproduce the plain FedAvg model (only what the
  coordinator sees changes), so they are skipped with a note; attack the plain configuration.
- ``inversion``: ``run_inversion_suite`` on that site's standardised training rows (logistic
  regression update seen in the clear, under SecAgg masks, as an aggregate, under DP noise).
- ``audit``: one-run audits (Steinke et al. 2023) with coordinate canaries, once for
  patient-level DP-SGD calibrated to ε = 3 (its ledger ε from ``privehr.privacy``) and once
  non-private; the lower bound must never exceed the ledger ε.
- ``positive_controls``: the same attacks against non-private models that memorise a small
  subset (a Gaussian-kernel classifier, and an overfit logistic regression). If the kernel's
  AUCs are not clearly above 0.5 the attacks are broken and low AUCs elsewhere mean nothing.
- ``ledger_charges``: every result here is computed from patients' rows without noise, so it
  is a non-private release of each site whose rows it used; the runner records these charges.

Shadow models (LiRA) mimic how the target was trained (``cfg.study.model``, the federation's
epochs/lr/batch size): for models trained on every site they train on the other sites'
training rows plus half of the candidate pool; for site-only models on the pool half alone.
Shadow sets do not depend on the target, so they are trained once and shared by all targets.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privehr.evaluation.attacks import (
    AttackInputError,
    coordinate_canaries,
    input_canary_scorer,
    one_run_audit,
    run_inversion_suite,
    run_membership_attacks,
)
from privehr.federation.config import StudyConfig
from privehr.federation.study import PreparedSite, PreparedStudy

Predict = Callable[[np.ndarray], np.ndarray]
TrainFn = Callable[[np.ndarray, np.ndarray, int], Predict]

EVIDENCE_SCHEMA_VERSION = 1
SAME_MODEL_AS_PLAIN = ("secagg", "he")  # protections that change what is seen, not the model
AUDIT_EPSILON = 3.0
AUDIT_DELTA = 1e-5
AUDIT_STEPS = 100
# A canary's private coordinate carries this value: its clipped gradient then lies almost
# entirely on that coordinate (|x| / sqrt(x² + 1) ≈ 0.995 of the clip norm), the strongest
# canary a linear model allows.
CANARY_VALUE = 10.0
POSITIVE_CONTROL_PATIENTS = 25  # per side: members and non-members


def run_evidence(cfg: StudyConfig, prep: PreparedStudy, metrics: dict[str, Any],
                 run_dir: Path) -> dict[str, Any]:
    """All attack/audit evidence for a run whose models are in ``run_dir/models``.

    ``metrics`` is the runner's metrics dict (its ``configs`` entries name the models; a
    federated entry's ``standardizer`` is used when present). Returns the ``metrics["attacks"]``
    dict, including ``ledger_charges`` (pop it before storing if the runner prefers).
    """
    t0 = time.perf_counter()
    from privehr.learning.train import torch_threads

    if not cfg.attacks.enabled:
        return {"schema_version": EVIDENCE_SCHEMA_VERSION, "enabled": False,
                "ledger_charges": [], "seconds": 0.0}
    site = attacked_site(prep)
    seed = cfg.study.seed
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - t
        return out

    pool = pooled_candidates(prep)
    site_only = {**metrics, "configs": [c for c in metrics.get("configs", []) if c.get("method") == "site_only"]}
    shared = {**metrics, "configs": [c for c in metrics.get("configs", []) if c.get("method") != "site_only"]}
    with torch_threads(1):  # tiny models: one thread is ~30x faster per step (learning.train)
        shadows = ShadowTrainers(cfg, prep, site)
        pool_shadows = ShadowTrainers(cfg, prep, pool, others=[])
        membership = timed("membership", lambda: {
            # models trained on every site: candidates are every site's patients (members = all
            # training patients, non-members = all held-out patients); site-only models: one site
            **membership_evidence(cfg, prep, shared, Path(run_dir), pool, pool_shadows, seed),
            **membership_evidence(cfg, prep, site_only, Path(run_dir), site, shadows, seed)})
        inversion = timed("inversion", lambda: inversion_evidence(cfg, prep, site, seed))
        audit = timed("audit", lambda: audit_evidence(cfg, site, seed))
        controls = timed("positive_controls", lambda: positive_control(cfg, site, seed))
    charges = []
    for name, res in membership.items():
        if res.get("skipped"):
            continue
        used = [site] if res.get("attacked_site") == site.name else prep.sites
        charges += [{"site": s.name, "kind": "attack", "config": name} for s in used]
    if shadows.pooled_used:  # other sites' training rows trained the site-only shadows
        charges += [{"site": s.name, "kind": "attack", "config": "membership_shadows"}
                    for s in prep.sites if s.name != site.name]
    charges += [{"site": site.name, "kind": "attack", "config": "inversion"},
                {"site": site.name, "kind": "audit", "config": "audit_dp_sgd"},
                {"site": site.name, "kind": "audit", "config": "audit_non_private"},
                {"site": site.name, "kind": "attack", "config": "positive_control"}]
    return {
        "schema_version": EVIDENCE_SCHEMA_VERSION,
        "attacked_site": site.name,
        "membership": membership,
        "inversion": inversion,
        "audit": audit,
        "positive_controls": controls,
        "ledger_charges": charges,
        "timings": timings,
        "seconds": time.perf_counter() - t0,
    }


def pooled_candidates(prep: PreparedStudy) -> PreparedSite:
    """Every site's patients as one candidate pool (simulation harness only): members are all
    training patients, non-members all held-out test patients — far tighter CIs than one site."""
    from privehr.federation.site import SiteData

    def cat(attr: str) -> np.ndarray:
        return np.concatenate([getattr(s.data, attr) for s in prep.sites])

    data = SiteData(cat("X_train"), cat("y_train"), np.concatenate(
        [np.char.add(f"{s.name}/", s.data.pid_train.astype(str)) for s in prep.sites]),
        cat("X_test"), cat("y_test"), np.concatenate(
        [np.char.add(f"{s.name}/", s.data.pid_test.astype(str)) for s in prep.sites]))
    return PreparedSite("all-sites", prep.sites[0].store, data, sum(s.n_patients for s in prep.sites), 0.0)


def attacked_site(prep: PreparedStudy) -> PreparedSite:
    """The site with the most training patients (first on ties): the most candidates."""
    return max(prep.sites, key=lambda s: len(np.unique(s.data.pid_train)))


# ----------------------------------------------------------------------------- models
def _torch_train_fn(cfg: StudyConfig, extra: tuple[np.ndarray, np.ndarray] | None) -> TrainFn:
    """Train like the study's baselines (``methods._train_alone``), on ``extra`` rows + X.

    Standardises with the training rows' own mean/std, as the centralised baseline does.
    """
    from privehr.federation.methods import _standardise_pooled
    from privehr.learning.models import make_model
    from privehr.learning.train import local_train, predict_proba

    def train(X: np.ndarray, y: np.ndarray, seed: int) -> Predict:
        if extra is not None:
            X, y = np.concatenate([extra[0], X]), np.concatenate([extra[1], y])
        mean, std = _standardise_pooled(X)
        model = make_model(cfg.study.model, X.shape[1], hidden=cfg.study.hidden, seed=int(seed))
        local_train(model, torch.from_numpy(((X - mean) / std).astype(np.float32)),
                    torch.from_numpy(np.asarray(y, np.float32)),
                    epochs=cfg.federation.rounds * cfg.federation.local_epochs,
                    lr=cfg.federation.lr, batch_size=cfg.federation.batch_size,
                    generator=torch.Generator().manual_seed(int(seed)))
        return lambda Z: predict_proba(model, torch.from_numpy(((Z - mean) / std).astype(np.float32)))

    return train


def _memoised(train_fn: TrainFn) -> tuple[TrainFn, dict]:
    """Cache trainings by (seed, data digest): every target reuses the same shadow set."""
    cache: dict[tuple, Predict] = {}

    def train(X: np.ndarray, y: np.ndarray, seed: int) -> Predict:
        digest = hashlib.sha256(np.ascontiguousarray(X).tobytes()
                                + np.ascontiguousarray(y).tobytes()).hexdigest()
        key = (int(seed), X.shape, digest)
        if key not in cache:
            cache[key] = train_fn(X, y, seed)
        return cache[key]

    return train, cache


class ShadowTrainers:
    """Shadow ``TrainFn``s for targets trained on every site (``pooled``) or on the site alone."""

    def __init__(self, cfg: StudyConfig, prep: PreparedStudy, site: PreparedSite,
                 others: list[PreparedSite] | None = None):
        others = [s for s in prep.sites if s.name != site.name] if others is None else others
        extra = (np.concatenate([s.data.X_train for s in others]),
                 np.concatenate([s.data.y_train for s in others])) if others else None
        self.pooled, self._pooled_cache = _memoised(_torch_train_fn(cfg, extra))
        self.site_alone, _ = _memoised(_torch_train_fn(cfg, None))
        self.has_others = extra is not None

    @property
    def pooled_used(self) -> bool:
        """Whether other sites' rows trained shadows (those sites are then charged too)."""
        return self.has_others and bool(self._pooled_cache)


def _load_target(cfg: StudyConfig, params: np.ndarray, d: int, mean: np.ndarray,
                 std: np.ndarray) -> Predict:
    from privehr.learning.models import make_model, set_flat
    from privehr.learning.train import predict_proba

    model = make_model(cfg.study.model, d, hidden=cfg.study.hidden, seed=cfg.study.seed)
    set_flat(model, np.asarray(params, np.float32))
    from privehr.federation.handlers import standardise

    # exactly the inputs the sites fed the model (z-scores clipped like handlers.standardise)
    return lambda Z: predict_proba(model, torch.from_numpy(standardise(Z, mean, std)))


# ------------------------------------------------------------------------- membership
def _target(cfg: StudyConfig, prep: PreparedStudy, entry: dict[str, Any], run_dir: Path,
            site: PreparedSite, shadows: ShadowTrainers) -> tuple[Predict, TrainFn, str] | str:
    """(target predict, shadow trainer, note) for one config entry, or the reason to skip."""
    from privehr.federation.methods import _predict, _standardise_pooled, _train_alone

    method, protection = entry.get("method"), entry.get("protection", "none")
    d = site.data.X_train.shape[1]
    if protection in SAME_MODEL_AS_PLAIN:
        return (f"skipped: {protection} changes what the coordinator sees, not the final model "
                "(equal to the plain FedAvg model up to quantisation); see the plain config")
    if method not in ("centralised", "site_only", "fedavg", "fedprox"):
        return f"skipped: method {method!r} has no single final model to attack"
    if method == "site_only":
        i = next(j for j, s in enumerate(prep.sites) if s.name == site.name)
        model, mean, std = _train_alone(cfg, site.data.X_train, site.data.y_train, cfg.study.seed + i)
        return (lambda Z: _predict(model, Z, mean, std), shadows.site_alone,
                "site-only model of the attacked site, retrained deterministically exactly as "
                "methods.run_site_only does (its parameters are not saved); shadows on the site alone")
    path = run_dir / "models" / f"{entry['name']}.npy"
    if not path.exists():
        return f"skipped: no model file {path.name}"
    params = np.load(path)
    pooled_note = ("members are every site's training patients, non-members every site's held-out "
                   "patients; shadows train centrally (plain SGD, an approximation of the run's "
                   "federated training) on half of the candidates"
                   if site.name == "all-sites" else
                   f"members are {site.name}'s training patients, one site's share of a model "
                   "trained on every site; shadows train centrally (plain SGD, an approximation "
                   "of the run's federated training) on the other sites' training rows plus half "
                   "of the candidates")
    if protection != "none":
        pooled_note += "; shadows are non-private (a DP-aware attacker could mimic the noise)"
    std_entry = entry.get("standardizer")
    if std_entry is not None:
        mean, std = np.asarray(std_entry["mean"]), np.asarray(std_entry["std"])
        how = "inputs standardised with the run's recorded standardizer"
    else:
        mean, std = _standardise_pooled(np.concatenate([s.data.X_train for s in prep.sites]))
        how = ("inputs standardised with mean/std recomputed by the simulation harness from the "
               "pooled training rows of all sites")
        if method != "centralised":
            how += (" (the run used federated statistics; these equal them for plain runs and "
                    "approximate the DP-noised ones)")
    return _load_target(cfg, params, d, mean, std), shadows.pooled, f"{pooled_note}; {how}"


def membership_evidence(cfg: StudyConfig, prep: PreparedStudy, metrics: dict[str, Any],
                        run_dir: Path, site: PreparedSite, shadows: ShadowTrainers,
                        seed: int) -> dict[str, Any]:
    """Threshold + LiRA on each config's final model; skipped configs get a note."""
    data = site.data
    out: dict[str, Any] = {}
    for entry in metrics.get("configs", []):
        got = _target(cfg, prep, entry, run_dir, site, shadows)
        if isinstance(got, str):
            out[entry["name"]] = {"skipped": True, "note": got}
            continue
        target, train_fn, note = got
        try:
            res = run_membership_attacks(
                data.X_train, data.y_train.astype(np.int64), data.X_test,
                data.y_test.astype(np.int64), train_fn, target=target,
                n_shadow=_even(cfg.attacks.n_shadow), seed=seed, global_variance=True,
                ids_train=data.pid_train, ids_out=data.pid_test)
        except AttackInputError as exc:  # e.g. too few held-out patients: say so, go on
            out[entry["name"]] = {"skipped": True, "note": f"skipped: {exc}"}
            continue
        out[entry["name"]] = {
            "threshold": res["loss_threshold"], "lira_offline": res["lira_offline"],
            "lira_online": res["lira_online"], "attacked_site": site.name, "unit": res["unit"],
            "n_members": res["n_members"], "n_nonmembers": res["n_nonmembers"],
            "protection": entry.get("protection", "none"), "epsilon": _entry_eps(entry),
            "note": note + "; LiRA uses a pooled σ (global_variance) because shadows are few",
        }
    return out


def _even(n: int) -> int:
    """LiRA needs an even shadow count, at least 16 (attacks.lira.MIN_SHADOWS)."""
    return max(16, n + (n % 2))


def _entry_eps(entry: dict[str, Any]) -> float | None:
    eps = (entry.get("privacy") or {}).get("epsilon")
    return None if eps is None or not math.isfinite(eps) else float(eps)


# -------------------------------------------------------------------------- inversion
def _site_standardised(X: np.ndarray) -> np.ndarray:
    from privehr.federation.methods import _standardise_pooled

    mean, std = _standardise_pooled(X)
    return (X - mean) / std


def inversion_evidence(cfg: StudyConfig, prep: PreparedStudy, site: PreparedSite,
                       seed: int) -> dict[str, Any]:
    """Update inversion on the attacked site's standardised training rows (logistic regression)."""
    X = _site_standardised(site.data.X_train)
    n = X.shape[0]
    batches = tuple(b for b in (1, 2, 4, 8, 16, 32, 64) if b <= n)
    res = run_inversion_suite(
        X, site.data.y_train.astype(np.int64), batch_sizes=batches,
        dp_batch_sizes=tuple(b for b in (1, 8) if b <= n), n_sites=max(1, min(4, len(prep.sites))),
        lr=cfg.federation.lr, clip_norm=cfg.privacy.clip_norm, seed=seed)
    res["site"] = site.name
    res["note"] = ("logistic regression from a zero model; rows standardised with the site's own "
                   "mean/std as the model sees them, so 0/1 indicators are no longer 0/1 and the "
                   "binary-feature metrics are empty; the reconstruction is exact up to that "
                   "affine map")
    return res


# ------------------------------------------------------------------------------ audit
def _dpsgd_train_fn(pid: np.ndarray, *, noise_multiplier: float, sampling_prob: float,
                    clip_norm: float, lr: float, steps: int, noise: Any,
                    events: list) -> TrainFn:
    """Patient-level DP-SGD logistic regression from a zero model; canaries are own patients.

    Zero initialisation: a random start would put every canary's private weight at a random
    value, noise that only hides inclusion (the DP guarantee does not depend on the start).
    """
    from privehr.learning.models import make_model, set_flat
    from privehr.learning.train import predict_proba
    from privehr.privacy.dpsgd import dp_sgd_local, pad_by_patient

    def train(X: np.ndarray, y: np.ndarray, seed: int) -> Predict:
        ids = np.concatenate([np.asarray(pid).astype(str),
                              [f"canary-{i}" for i in range(X.shape[0] - len(pid))]])
        padded = pad_by_patient(X, y.astype(np.float64), ids)
        model = make_model("logreg", X.shape[1], seed=int(seed) % (2**31))
        set_flat(model, np.zeros(X.shape[1] + 1, np.float32))
        res = dp_sgd_local(model, padded.Xp, padded.mask, padded.y, sampling_prob=sampling_prob,
                           noise_multiplier=noise_multiplier, clip_norm=clip_norm, steps=steps,
                           lr=lr, noise=noise)
        events.append(res.event)
        return lambda Z: predict_proba(model, torch.from_numpy(np.asarray(Z, np.float32)))

    return train


def audit_evidence(cfg: StudyConfig, site: PreparedSite, seed: int, *, noise: Any = None,
                   steps: int = AUDIT_STEPS) -> dict[str, Any]:
    """One-run audits of DP-SGD at ε = 3 and of the same training without noise."""
    from privehr.privacy.accountant import Accountant
    from privehr.privacy.calibration import calibrate_noise_multiplier
    from privehr.privacy.noise import NoiseSource

    noise = noise if noise is not None else NoiseSource.secure()
    m = cfg.attacks.audit_canaries
    k = max(1, m // 5)
    X = _site_standardised(site.data.X_train)
    y = site.data.y_train.astype(np.int64)
    canaries = coordinate_canaries(m, X.shape[1], value=CANARY_VALUE, label=1)
    q, clip = cfg.privacy.sampling_rate, cfg.privacy.clip_norm
    sigma = calibrate_noise_multiplier(AUDIT_EPSILON, AUDIT_DELTA, q, steps)
    acc = Accountant()  # one instance: the charged event's ε is then a cache hit
    out: dict[str, Any] = {}
    for name, nm in (("dp_sgd", sigma), ("non_private", 0.0)):
        events: list = []
        train = _dpsgd_train_fn(site.data.pid_train, noise_multiplier=nm, sampling_prob=q,
                                clip_norm=clip, lr=cfg.federation.lr, steps=steps, noise=noise,
                                events=events)
        scorer = input_canary_scorer(X, y, train)
        if nm > 0:
            from privehr.privacy.calibration import dpsgd_event

            ledger_eps = float(acc.epsilon(dpsgd_event(q, nm, steps), AUDIT_DELTA))
        else:
            ledger_eps = math.inf
        res = one_run_audit(scorer, canaries, m, k, k, AUDIT_DELTA, 0.05, seed,
                            eps_claimed=ledger_eps)
        charged = float(acc.epsilon(events[0], AUDIT_DELTA)) if events else math.inf
        out[name] = {**res.to_dict(), "site": site.name, "noise_multiplier": nm,
                     "sampling_prob": q, "steps": steps, "clip_norm": clip,
                     "canary_value": CANARY_VALUE,
                     "ledger_epsilon": ledger_eps if math.isfinite(ledger_eps) else None,
                     "charged_epsilon": charged if math.isfinite(charged) else None}
    out["dp_sgd"]["target_epsilon"] = AUDIT_EPSILON
    out["dp_sgd"]["noise"] = repr(noise)
    out["note"] = (f"{m} coordinate canaries (value {CANARY_VALUE}, label 1), each its own patient, "
                   f"added to {site.name}'s standardised training rows; guesses on the "
                   f"{k} highest and {k} lowest scores, 95% confidence; ledger_epsilon is the "
                   "PLD accountant's ε for the same DP-SGD parameters, charged_epsilon that of the "
                   "event the run returned (None when the noise source is not private)")
    return out


# -------------------------------------------------------------------- positive control
def overfit_logreg(l2: float = 1e-2, max_iter: int = 500) -> TrainFn:
    """Weakly regularised logistic regression by L-BFGS, fitted to convergence.

    Why not l2 → 0: on separable data the fit saturates, members *and* easy non-members then
    all sit at the probability clip, and the tied scores hide membership.
    """
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    def train(X: np.ndarray, y: np.ndarray, seed: int) -> Predict:
        mean, std = X.mean(0), X.std(0)
        std[std < 1e-6] = 1.0
        Z = np.hstack([(X - mean) / std, np.ones((X.shape[0], 1))])
        s = 2.0 * np.asarray(y, float) - 1.0

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            m = s * (Z @ w)
            grad = -(Z.T @ (s * expit(-m))) / len(m) + l2 * w
            return float(-log_expit(m).mean() + 0.5 * l2 * w @ w), grad

        w = minimize(loss, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B",
                     options={"maxiter": max_iter}).x
        return lambda A: expit(np.hstack([(A - mean) / std, np.ones((A.shape[0], 1))]) @ w)

    return train


def memorising_kernel(bandwidth: float = 0.5, prior_weight: float = 1e-3) -> TrainFn:
    """Gaussian-kernel classifier whose bandwidth is half the median nearest-neighbour distance.

    Every training row is its own prototype, so a member's own label dominates its prediction
    while a non-member gets a blend near the prevalence: the textbook memorising model.
    """

    def train(X: np.ndarray, y: np.ndarray, seed: int) -> Predict:
        mean, std = X.mean(0), X.std(0)
        std[std < 1e-6] = 1.0
        T, yt = (X - mean) / std, np.asarray(y, float)
        d2 = ((T[:, None, :] - T[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d2, np.inf)
        h2 = max(float(np.median(d2.min(1))), 1e-12) * bandwidth**2
        prior = float(yt.mean())

        def predict(A: np.ndarray) -> np.ndarray:
            U = (A - mean) / std
            k = np.exp(-((U[:, None, :] - T[None, :, :]) ** 2).sum(-1) / (2.0 * h2))
            return (k @ yt + prior_weight * prior) / (k.sum(1) + prior_weight)

        return predict

    return train


def positive_control(cfg: StudyConfig, site: PreparedSite, seed: int,
                     n_patients: int = POSITIVE_CONTROL_PATIENTS) -> dict[str, Any]:
    """Attacks on non-private models of a few of the site's patients that memorise them.

    ``memorising_kernel`` must be clearly above chance or the attack code is broken;
    ``overfit_logreg`` shows how much the study's model family memorises the same patients.
    """
    d = site.data
    X = np.concatenate([d.X_train, d.X_test])
    y = np.concatenate([d.y_train, d.y_test]).astype(np.int64)
    pid = np.concatenate([d.pid_train, d.pid_test]).astype(str)
    patients = np.random.default_rng(seed).permutation(np.unique(pid))
    half = min(n_patients, len(patients) // 2)
    members, nonmembers = np.isin(pid, patients[:half]), np.isin(pid, patients[half:2 * half])
    out: dict[str, Any] = {}
    for name, train_fn, what in (
        ("memorising_kernel", memorising_kernel(), "Gaussian-kernel classifier (bandwidth half "
         "the median nearest-neighbour distance)"),
        ("overfit_logreg", overfit_logreg(), "logistic regression, L2 1e-2, fitted to "
         "convergence by L-BFGS (no early stopping)"),
    ):
        res = run_membership_attacks(X[members], y[members], X[nonmembers], y[nonmembers],
                                     train_fn, n_shadow=_even(cfg.attacks.n_shadow), seed=seed,
                                     global_variance=True, ids_train=pid[members],
                                     ids_out=pid[nonmembers])
        low = min(res[k]["auc_ci"][0] for k in ("loss_threshold", "lira_offline", "lira_online"))
        out[name] = {
            "threshold": res["loss_threshold"], "lira_offline": res["lira_offline"],
            "lira_online": res["lira_online"], "attacked_site": site.name, "unit": res["unit"],
            "n_members": res["n_members"], "n_nonmembers": res["n_nonmembers"],
            "clearly_above_chance": bool(low > 0.5),
            "note": (f"non-private {what} trained on {half} of {site.name}'s patients; non-members "
                     f"are {half} others; clearly_above_chance: the lowest 95% CI bound of the "
                     "three attacks exceeds 0.5"),
        }
    return out
