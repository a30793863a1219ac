"""The trust-boundary diagram is generated from the run's configs, with or without Graphviz."""

from __future__ import annotations

from privehr.report import diagram
from privehr.report.diagram import CROSSES, diagram_html, protections_run, trust_boundary_dot
from privehr.report.load import load_run


def test_dot_names_what_ran(run_dir):
    run = load_run(run_dir)
    dot = trust_boundary_dot(run)
    assert protections_run(run) == ["none", "secagg", "dp_local", "ddp", "he"]
    for prot in protections_run(run):
        assert CROSSES[prot][0] in dot
    for site in ("north-1", "south-22", "east-303"):
        assert f"site {site} (trust boundary)" in dot
    assert dot.count("subgraph cluster_site") == 3
    assert "raw EHR store" in dot and "never leaves" in dot


def test_dot_collapses_many_sites_and_omits_protections_not_run(run_dir):
    run = load_run(run_dir)
    run.metrics["sites"] = [{"site": f"s{i}", "patients": 50} for i in range(9)]
    run.metrics["configs"] = [c for c in run.metrics["configs"] if c["protection"] != "he"]
    dot = trust_boundary_dot(run)
    assert dot.count("subgraph cluster_site") == diagram.MAX_DRAWN_SITES
    assert "6 more sites" in dot
    assert CROSSES["he"][0] not in dot


def test_without_graphviz_the_dot_source_is_embedded(run_dir, monkeypatch):
    monkeypatch.setattr(diagram.shutil, "which", lambda name: None)
    html = diagram_html(load_run(run_dir))
    assert "<svg" not in html
    assert 'class="dot-source"' in html and "digraph federation" in html
    assert "not installed" in html


def test_failed_graphviz_falls_back(run_dir, monkeypatch):
    monkeypatch.setattr(diagram.shutil, "which", lambda name: "/nonexistent/dot")
    html = diagram_html(load_run(run_dir))
    assert 'class="dot-source"' in html
