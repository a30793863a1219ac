import dataclasses
import json
import math

import pytest

from privehr.evaluation import attacks
from privehr.evaluation.attacks.results import (
    AuditResult,
    InversionResult,
    MembershipAttackResult,
    release_metadata,
)


def membership():
    return MembershipAttackResult(
        attack="lira_online", auc=0.8, auc_ci=(0.7, 0.9), ci_level=0.95, n_bootstrap=1000,
        tpr_at_fpr=((0.1, 0.4),), fprs_unresolved=(0.01, 0.001), n_members=60,
        n_nonmembers=60, n_shadow=16)


def test_results_are_frozen_and_json_able():
    inv = InversionResult(setting="masked_words", batch_size=1, n_features=3, cosine=math.nan,
                          cosine_to_mean=0.0, relative_l2=math.inf, binary_exact_fraction=None,
                          binary_baseline_fraction=None)
    audit = AuditResult(eps_lower_bound=0.4, correct=60, guesses=100, m=200, confidence=0.95)
    for res in (membership(), inv, audit):
        with pytest.raises(dataclasses.FrozenInstanceError):
            res.release_kind = "other"
        d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
        assert d["release_kind"] == "attack" and d["schema_version"] == 1
    assert inv.to_dict()["cosine"] is None and inv.to_dict()["relative_l2"] is None


def test_audit_claim_consistency():
    base = dict(correct=60, guesses=100, m=200, confidence=0.95)
    assert AuditResult(eps_lower_bound=0.4, **base).consistent_with_claim is None
    assert AuditResult(eps_lower_bound=0.4, eps_claimed=1.0, **base).consistent_with_claim
    over = AuditResult(eps_lower_bound=1.4, eps_claimed=1.0, **base)
    assert over.to_dict()["consistent_with_claim"] is False
    inf_claim = AuditResult(eps_lower_bound=3.0, eps_claimed=math.inf, **base)
    assert inf_claim.consistent_with_claim and inf_claim.to_dict()["eps_claimed"] == "inf"


def test_release_metadata_marks_attack_as_non_private():
    meta = release_metadata("mia/lira_online", membership())
    assert meta == {"kind": "attack", "name": "mia/lira_online", "private": False,
                    "schema_version": 1, "attack": "lira_online"}
    assert release_metadata("x", {"attack": "update_inversion"})["attack"] == "update_inversion"
    assert attacks.attack_release_kind == attacks.ATTACK_RELEASE_KIND == "attack"
