"""report.html: every section present, every number traced to the run files, no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixture_run import SITES, make_run, text_only_report
from htmlcheck import check_cell, parse, problems, sources_for

from privehr.report import render_report
from privehr.report.load import ReportInputError, load_run
from privehr.report.report import SECTIONS, build_figures, report_html


@pytest.fixture(scope="module")
def html(run_dir: Path) -> str:
    out = render_report(run_dir)
    assert out == run_dir / "report.html"
    return out.read_text(encoding="utf-8")


def test_every_section_present_and_non_empty(html):
    page = parse(html)
    assert page.sections == [sid for sid, _ in SECTIONS]
    for sid, _ in SECTIONS:
        start = html.index(f'data-section="{sid}"')
        end = html.index("</section>", start)
        assert len(html[start:end]) > 200, sid


def test_every_number_matches_the_run_files(html, run_dir):
    assert problems(html, run_dir) == []


def test_key_numbers_are_traced(html, run_dir):
    page = parse(html)
    keys = {c.attrs["data-key"] for c in page.cells}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for i, c in enumerate(metrics["configs"]):
        assert f"configs/{i}/global/auroc" in keys, c["name"]
        assert f"configs/{i}/privacy/epsilon" in keys, c["name"]
        if "simulation_exact" in c:
            assert f"configs/{i}/simulation_exact/auroc" in keys, c["name"]
    for i in range(len(SITES)):
        assert f"sites/{i}/patients" in keys
    assert any(k.startswith("attacks/membership/") for k in keys)
    assert any(k.startswith("attacks/inversion/") for k in keys)
    assert any(k.startswith("attacks/audit/") for k in keys)
    assert any(k.startswith("attacks/positive_controls/") for k in keys)
    assert any(c.attrs.get("data-src") == "rounds" for c in page.cells)
    assert any(c.attrs.get("data-src") == "ledger" for c in page.cells)


def test_small_cells_are_suppressed(html, run_dir):
    page = parse(html)
    suppressed = {c.attrs["data-key"] for c in page.cells if c.attrs.get("data-suppressed")}
    # the 4-patient excluded site, the 8-patient subgroup, and 10 % of 40 examples
    assert "excluded_sites/0/patients" in suppressed
    assert "configs/0/subgroups/race_ethnicity/asian/n" in suppressed
    assert "sites/0/prevalence" in suppressed
    assert "4 patients" not in html  # the excluded site's reason text would reveal its count
    shown = {c.attrs["data-key"] for c in page.cells if not c.attrs.get("data-suppressed")}
    assert "sites/1/prevalence" in shown  # 0.3 x 50 examples = 15 cases, 35 non-cases
    assert "configs/0/subgroups/race_ethnicity/asian/auroc" not in shown


def test_checker_catches_a_wrong_number(html, run_dir):
    """The check must be able to fail: perturb one metric and one loose number."""
    src = sources_for(run_dir)
    page = parse(html)
    cell = next(c for c in page.cells if c.attrs["data-key"] == "configs/2/global/auroc")
    assert check_cell(cell, src) is None
    cell.text = f"{float(cell.text) + 0.01:.3f}"
    assert check_cell(cell, src) is not None
    assert problems(html.replace("</main>", "<p>AUROC 0.93</p></main>"), run_dir)
    assert problems(html.replace("</main>", '<img src="https://x.org/a.png"></main>'), run_dir)
    assert problems(html.replace("</style>", "@import 'x.css';</style>"), run_dir)


def test_self_contained(html):
    page = parse(html)
    assert "script" not in page.tags or all(u[2].startswith("data:") for u in page.urls)
    imgs = [u for u in page.urls if u[0] == "img"]
    assert imgs and all(u[2].startswith("data:image/png;base64,") for u in imgs)


def test_attack_absence_is_visible(bare_run_dir):
    run_dir = bare_run_dir
    html = render_report(run_dir).read_text(encoding="utf-8")
    page = parse(html)
    assert page.not_run >= 1
    assert "not run" in html
    assert problems(html, run_dir) == []


def test_summary_compares_attack_auc_with_and_without_dp(html):
    start = html.index('data-section="summary"')
    summary = html[start:html.index("</section>", start)]
    assert 'data-key="attacks/membership/fedavg/lira_online/auc"' in summary
    assert 'data-key="attacks/positive_controls/memorising_kernel/lira_online/auc"' in summary
    assert 'data-key="attacks/membership/fedavg_dp_local_eps2/lira_online/auc"' in summary
    assert "no better than a coin flip" in summary  # DP config: CI [0.45, 0.55] covers 0.5
    assert "better than a coin flip" in summary


def test_missing_metrics_names_the_fix(tmp_path):
    with pytest.raises(ReportInputError, match="metrics.json"):
        render_report(tmp_path)


def test_renders_from_the_run_alone(run_dir, tmp_path):
    """Only files in RUN_DIR are read: a copy elsewhere renders the same numbers."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.html", "*.lock"))
    run = load_run(run_dir)
    figs = build_figures(run)
    a = report_html(run, figs)
    b = report_html(load_run(copy), figs)
    keys_a = [(c.attrs["data-key"], c.text) for c in parse(a).cells]
    keys_b = [(c.attrs["data-key"], c.text) for c in parse(b).cells]
    assert keys_a == keys_b


def test_skipped_attack_stage_shows_its_reason(tmp_path):
    run_dir = make_run(tmp_path / "skipped", attacks=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["attacks"] = {"skipped": "sites ['north-1'] have a finite privacy budget"}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    html = text_only_report(run_dir)
    assert parse(html).not_run >= 1
    assert html.count("have a finite privacy budget") >= 2  # summary and attacks section
    assert problems(html, run_dir) == []


def test_prevalence_suppression_counts_examples_not_store_patients(tmp_path):
    """Encounter-level tasks: a big store with few examples must not reveal a small case count."""
    run_dir = make_run(tmp_path / "enc", attacks=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["sites"][1].update(patients=500, train_examples=35, test_examples=15, prevalence=0.18)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    html = text_only_report(run_dir)
    page = parse(html)
    cell = next(c for c in page.cells if c.attrs["data-key"] == "sites/1/prevalence")
    assert cell.attrs.get("data-suppressed")  # 0.18 x 50 examples = 9 positives
    assert problems(html, run_dir) == []


def test_warns_when_released_counts_are_far_from_exact(tmp_path):
    run_dir = make_run(tmp_path / "noisy", attacks=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["configs"][4]["global"]["n"] = 400  # exact view says 60
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    html = text_only_report(run_dir)
    assert "noisy evaluation histograms" in html
    assert html.count("noisy evaluation histograms of these configurations") == 1
    assert problems(html, run_dir) == []


def test_no_cell_points_at_a_missing_path_in_a_full_run(html):
    """Absent paths print "–"; in a complete run every path asked for must exist (no typos)."""
    assert "absent" not in html


def test_nan_metric_prints_a_dash(html):
    page = parse(html)
    cell = next(c for c in page.cells
                if c.attrs["data-key"] == "configs/0/subgroups/age_band/18-39/auroc")
    assert cell.text == "–"
    assert not any(c.attrs["data-key"] == "configs/0/subgroups/age_band/18-39/ci/auroc/0"
                   for c in page.cells)


def test_unreadable_ledger_is_reported_not_dropped(tmp_path):
    run_dir = make_run(tmp_path / "broken", attacks=False)
    (run_dir / "stores" / "south-22.duckdb.ledger.jsonl").write_text("not json\n")
    html = text_only_report(run_dir)
    assert "could not be read" in html
    assert 'south-<wbr>22</span> could not be read' in html


def test_dp_auc_ceiling_is_shown_and_flags_contradictions(tmp_path):
    from privehr.report.values import dp_auc_ceiling

    assert dp_auc_ceiling(1.0, 0.0) == pytest.approx(0.7311, abs=1e-4)  # e/(1+e)
    assert dp_auc_ceiling(50.0, 0.0) == pytest.approx(1.0, abs=1e-9)
    run_dir = make_run(tmp_path / "mia", attacks=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    res = metrics["attacks"]["membership"]["fedavg_dp_local_eps2"]["lira_online"]
    res.update(auc=0.97, auc_ci=[0.93, 0.99])  # ε = 2 allows at most ~0.88
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    html = text_only_report(run_dir)
    assert 'data-op="dp_auc_ceiling"' in html
    assert "contradicts ε" in html
    assert problems(html, run_dir) == []


def test_attack_auc_below_chance_is_flagged(tmp_path):
    run_dir = make_run(tmp_path / "below", attacks=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["attacks"]["membership"]["fedavg"]["threshold"].update(auc=0.41, auc_ci=[0.36, 0.47])
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    html = text_only_report(run_dir)
    assert html.count("CI below chance") == 1
    assert problems(html, run_dir) == []
