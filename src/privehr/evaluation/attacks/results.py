"""Frozen result records for attacks and audits, each a JSON-able release.

Why records and not loose dicts: an attack result is evidence that ends up in a report and,
because it is computed from patients' data, it is itself a *release*. Like a ``DpEvent`` it
is an immutable value with a stable meaning; fields are never removed or redefined, new
fields are optional (``SCHEMA_VERSION`` bumps when one is added).

Ledger: an attack result is a non-private release (it is computed on raw records with no
noise), so the site's ledger should charge it as ε = ∞ under ``ATTACK_RELEASE_KIND``.
:func:`release_metadata` gives what the lead needs to build that ledger entry; this package
does not touch the ledger itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

ATTACK_RELEASE_KIND = "attack"
attack_release_kind = ATTACK_RELEASE_KIND  # spelling used in the issue
SCHEMA_VERSION = 1


def _json_float(value: float | None) -> float | None:
    """NaN/inf are not JSON: map NaN to None, keep finite values, inf to None too."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class MembershipAttackResult:
    """Outcome of one membership-inference attack against one final model.

    ``tpr_at_fpr`` holds (fpr, tpr) pairs only for FPRs resolvable with ``n_nonmembers``
    (fpr >= 1/n_nonmembers); requested but unresolvable FPRs are in ``fprs_unresolved``.
    """

    attack: str
    auc: float
    auc_ci: tuple[float, float]
    ci_level: float
    n_bootstrap: int
    tpr_at_fpr: tuple[tuple[float, float], ...]
    fprs_unresolved: tuple[float, ...]
    n_members: int
    n_nonmembers: int
    n_shadow: int = 0
    release_kind: str = ATTACK_RELEASE_KIND

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "release_kind": self.release_kind,
            "attack": self.attack,
            "auc": self.auc,
            "auc_ci": [self.auc_ci[0], self.auc_ci[1]],
            "ci_level": self.ci_level,
            "n_bootstrap": self.n_bootstrap,
            "tpr_at_fpr": [{"fpr": f, "tpr": t} for f, t in self.tpr_at_fpr],
            "fprs_unresolved": list(self.fprs_unresolved),
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
            "n_shadow": self.n_shadow,
        }


@dataclass(frozen=True)
class InversionResult:
    """How well an observer reconstructed patient record(s) from what it saw.

    Metrics compare the reconstruction with the *best-matching* true record of the batch
    (max cosine) and with the batch-average record. ``binary_exact_fraction`` is the share
    of binary features recovered exactly after rounding at 0.5; ``binary_baseline_fraction``
    is what guessing each binary feature's population majority value achieves on the same
    record, so a reconstruction only leaks beyond the prior if it beats the baseline.
    Values are means over ``n_trials`` independent batches. ``cosine_ceiling`` (DP settings
    only) is the signal-to-noise guide 1/sqrt(1 + σ² d) for a single record, not a bound.
    ``cosine_chance`` is the same best-match cosine for a random Gaussian direction: with
    large batches the max over records is well above 0 even for a useless reconstruction.
    ``binary_rero_bound`` (DP settings only) is the reconstruction-robustness bound that the
    Gaussian mechanism itself implies for recovering one binary feature of a fixed target
    record (see ``inversion_suite``); compare it with ``binary_exact_fraction`` at batch 1.
    ``reidentification_rate`` is how often the population record closest to the
    reconstruction (linkage against a list of all candidates) belongs to the batch;
    ``reidentification_chance`` = batch size / population size is a blind guess.
    """

    setting: str
    batch_size: int
    n_features: int
    cosine: float
    cosine_to_mean: float
    relative_l2: float
    binary_exact_fraction: float | None
    binary_baseline_fraction: float | None
    n_trials: int = 1
    noise_multiplier: float = 0.0
    n_sites: int = 1
    cosine_ceiling: float | None = None
    cosine_chance: float | None = None
    binary_rero_bound: float | None = None
    reidentification_rate: float | None = None
    reidentification_chance: float | None = None
    release_kind: str = ATTACK_RELEASE_KIND

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["schema_version"] = SCHEMA_VERSION
        out["attack"] = "update_inversion"
        for key in ("cosine", "cosine_to_mean", "relative_l2", "binary_exact_fraction",
                    "binary_baseline_fraction", "cosine_ceiling", "cosine_chance",
                    "binary_rero_bound", "reidentification_rate", "reidentification_chance"):
            out[key] = _json_float(out[key])
        return out


@dataclass(frozen=True)
class AuditResult:
    """One-run privacy audit (Steinke, Nasr, Jagielski 2023): an empirical ε lower bound.

    With probability at least ``confidence`` over the canary coin flips, the training run is
    *not* (ε, δ)-DP for any ε below ``eps_lower_bound``. A bound above the ledger's ε means
    the implementation or its accounting is broken.
    """

    eps_lower_bound: float
    correct: int
    guesses: int
    m: int
    confidence: float
    delta: float = 0.0
    k_plus: int = 0
    k_minus: int = 0
    eps_claimed: float | None = None
    release_kind: str = ATTACK_RELEASE_KIND

    @property
    def consistent_with_claim(self) -> bool | None:
        """False when the audit refutes the claimed ε (lower bound above it)."""
        if self.eps_claimed is None:
            return None
        return self.eps_lower_bound <= self.eps_claimed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["schema_version"] = SCHEMA_VERSION
        out["attack"] = "one_run_audit"
        # ε = ∞ (a non-private run) is a claim, not a missing value: keep it as "inf".
        claimed = self.eps_claimed
        out["eps_claimed"] = "inf" if claimed == math.inf else _json_float(claimed)
        out["consistent_with_claim"] = self.consistent_with_claim
        return out


def release_metadata(name: str, result: dict[str, Any] | Any) -> dict[str, Any]:
    """What a site's ledger needs to record an attack release (charged as non-private).

    ``result`` is a result record or its ``to_dict()``; only its summary keys are copied so
    the ledger entry stays small.
    """
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    return {
        "kind": ATTACK_RELEASE_KIND,
        "name": name,
        "private": False,
        "schema_version": SCHEMA_VERSION,
        "attack": data.get("attack", name),
    }
