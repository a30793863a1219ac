"""Privacy evidence: attacks and audits we run against our own models and updates.

- ``mia``: loss-threshold membership inference and the study entry point
  :func:`run_membership_attacks` (threshold + LiRA offline/online).
- ``lira``: LiRA with balanced shadow models (Carlini et al. 2022).
- ``inversion``: reconstructing patient records from logistic-regression updates, as seen by
  the coordinator in the clear, under SecAgg masks, as an aggregate, and under DP noise;
  ``inversion_suite.run_inversion_suite`` runs all settings for a study.
- ``audit``: one-run canary audit (Steinke, Nasr, Jagielski 2023) giving an empirical ε lower
  bound that must never exceed the ledger's ε.
- ``results``: frozen, JSON-able result records; every result is an ``"attack"`` release
  (non-private, ε = ∞ in the site's ledger; ``release_metadata`` gives the entry).
- ``scoring``: AUROC (shared ``evaluation.metrics``), bootstrap CI, TPR at resolvable FPRs.

Privacy unit: the patient. Membership attacks take optional patient ids so that a patient
with several rows is one candidate.

Models enter only as injected callables (see ``_model_io``), so nothing here depends on how
``privehr.learning`` trains.
"""

from privehr.evaluation.attacks._checks import AttackInputError
from privehr.evaluation.attacks._model_io import estimator_train_fn
from privehr.evaluation.attacks.audit import (
    coordinate_canaries,
    input_canary_scorer,
    one_run_audit,
    pad_for_canaries,
)
from privehr.evaluation.attacks.inversion_suite import run_inversion_suite
from privehr.evaluation.attacks.lira import lira_attack
from privehr.evaluation.attacks.mia import run_membership_attacks, threshold_attack
from privehr.evaluation.attacks.results import (
    ATTACK_RELEASE_KIND,
    AuditResult,
    InversionResult,
    MembershipAttackResult,
    attack_release_kind,
    release_metadata,
)

__all__ = [
    "ATTACK_RELEASE_KIND",
    "AttackInputError",
    "AuditResult",
    "InversionResult",
    "MembershipAttackResult",
    "attack_release_kind",
    "coordinate_canaries",
    "estimator_train_fn",
    "input_canary_scorer",
    "lira_attack",
    "one_run_audit",
    "pad_for_canaries",
    "release_metadata",
    "run_inversion_suite",
    "run_membership_attacks",
    "threshold_attack",
]
