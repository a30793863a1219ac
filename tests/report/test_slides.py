"""slides.html: 8-12 slides, every number traced to the run files, no network, navigable."""

from __future__ import annotations

from pathlib import Path

import pytest
from htmlcheck import parse, problems

from privehr.report import render_slides
from privehr.report.load import load_run
from privehr.report.report import build_figures
from privehr.report.slides import slides_html


@pytest.fixture(scope="module")
def html(run_dir: Path) -> str:
    out = render_slides(run_dir)
    assert out == run_dir / "slides.html"
    return out.read_text(encoding="utf-8")


def test_slide_count_and_topics(html):
    slides = parse(html).slides
    assert 8 <= len(slides) <= 12
    for topic in ("question", "threat-model", "buys", "attacker", "audit", "cost", "limits",
                  "reproduce"):
        assert topic in slides


def test_every_number_matches_the_run_files(html, run_dir):
    assert problems(html, run_dir) == []
    assert len(parse(html).cells) > 50


def test_reproduce_slide_has_command_and_hash(html):
    start = html.index('data-slide="reproduce"')
    slide = html[start:html.index("</section>", start)]
    assert "privehr study <span class=\"id\">tiny</span>.toml --out" in slide
    assert 'data-key="study/config_hash"' in slide


def test_navigation_and_print_layout(html):
    assert "keydown" in html and "ArrowRight" in html and "click" in html
    assert "@media print" in html and "break-after: page" in html


def test_figures_are_the_reports(run_dir):
    """Slides embed exactly the figures the report draws (drawn once, shared)."""
    run = load_run(run_dir)
    figs = build_figures(run)
    html = slides_html(run, figs)
    for uri in (figs.privacy_utility, figs.membership, figs.audit, figs.cost, figs.ledger):
        assert uri is not None and uri in html


def test_attack_absence_is_visible(bare_run_dir):
    run_dir = bare_run_dir
    html = render_slides(run_dir).read_text(encoding="utf-8")
    assert "not run" in html
    assert problems(html, run_dir) == []


def test_render_all_writes_the_same_pages(run_dir, tmp_path):
    import shutil

    from privehr.report import render_all, render_report

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.html", "*.lock"))
    report, slides = render_all(copy)
    assert problems(report.read_text(encoding="utf-8"), copy) == []
    assert problems(slides.read_text(encoding="utf-8"), copy) == []
    assert report.read_text(encoding="utf-8") == render_report(copy).read_text(encoding="utf-8")


def test_seeded_test_noise_is_flagged_on_both_pages(run_dir, tmp_path):
    import json
    import shutil

    from privehr.report import render_all

    copy = tmp_path / "seeded"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.html", "*.lock"))
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["study"]["noise"] = "seeded (TEST MODE: not private)"
    (copy / "metrics.json").write_text(json.dumps(metrics))
    for page in render_all(copy):
        html = page.read_text(encoding="utf-8")
        assert 'class="notrun warn"' in html and "TEST MODE: not private" in html
