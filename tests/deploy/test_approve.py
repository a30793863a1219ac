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


def test_dp_study_without_agreed_delta_is_refused_at_approval(tmp_path):
    from typer.testing import CliRunner

    from privehr.deploy.cli import deploy_app

    p = tmp_path / "dp.toml"
    p.write_text(STUDY + '[[configs]]\nname = "dp"\nmethod = "fedavg"\nprotection = "ddp"\nepsilon = 3.0\n')
    res = CliRunner().invoke(deploy_app, ["site", "approve", str(p), "--credentials", str(tmp_path / "site")])
    assert res.exit_code == 2 and "privacy.delta" in res.output and "'dp'" in res.output
    assert not ApprovalList(tmp_path / "site").approved()
    p.write_text(p.read_text().replace("budget_epsilon = 4.0", "budget_epsilon = 4.0\ndelta = 1e-6"))
    assert approve_file(p, tmp_path / "site").summary["configs"][1]["protection"] == "ddp"
