import pytest

from privehr.deploy.approve import ApprovalList, StudyNotApproved, approve_file, study_summary
from privehr.federation import protocol as P
from privehr.federation.config import load_config

STUDY = """
[study]
name = "htn"
task = "hypertension_onset"
[federation]
rounds = 2
[privacy]
budget_epsilon = 4.0
[[configs]]
name = "fedavg"
method = "fedavg"
"""


@pytest.fixture
def study(tmp_path):
    p = tmp_path / "study.toml"
    p.write_text(STUDY)
    return p


def test_approve_pins_hash_and_copy(study, tmp_path):
    site = tmp_path / "site"
    a = approve_file(study, site)
    cfg = load_config(study)
    assert a.config_hash == cfg.config_hash()
    assert a.summary["rounds"] == 2 and a.summary["budget_epsilon"] == 4.0
    lst = ApprovalList(site)
    assert lst.is_approved(a.config_hash)
    assert lst.load(a.config_hash) == cfg


def test_changed_study_is_not_approved(study, tmp_path):
    site = tmp_path / "site"
    approve_file(study, site)
    changed = study.read_text().replace("rounds = 2", "rounds = 3")
    other = tmp_path / "other.toml"
    other.write_text(changed)
    h = load_config(other).config_hash()
    with pytest.raises(StudyNotApproved) as exc:
        ApprovalList(site).load(h)
    assert exc.value.error_code == P.ErrorCode.STUDY_NOT_APPROVED


def test_edited_copy_after_approval_is_refused(study, tmp_path):
    site = tmp_path / "site"
    a = approve_file(study, site)
    copy = site / "approved" / f"{a.config_hash}.json"
    copy.write_text(copy.read_text().replace('"rounds": 2', '"rounds": 50'))
    with pytest.raises(StudyNotApproved):
        ApprovalList(site).load(a.config_hash)


def test_revoke(study, tmp_path):
    site = tmp_path / "site"
    a = approve_file(study, site)
    assert ApprovalList(site).revoke(a.config_hash)
    assert not ApprovalList(site).is_approved(a.config_hash)
    assert not ApprovalList(site).revoke(a.config_hash)


def test_summary_lists_configs(study):
    s = study_summary(load_config(study))
    assert s["configs"] == [{"name": "fedavg", "method": "fedavg", "protection": "none", "epsilon": None}]
