"""A bare run directory (one baseline, no ledgers, no rounds) still renders, honestly."""

from __future__ import annotations

import json
from pathlib import Path

from htmlcheck import parse, problems

from privehr.report import render_report, render_slides
from privehr.report.report import SECTIONS


def _bare(root: Path) -> Path:
    root.mkdir(parents=True)
    block = {"auroc": 0.61, "auprc": 0.2, "brier": 0.1, "ece": 0.05, "accuracy": 0.9,
             "ci": {"auroc": [0.5, 0.7]}, "n": 30, "n_pos": 4}
    metrics = {
        "schema_version": 1,
        "study": {"id": "bare-0", "name": "bare", "task": "t1", "model": "logreg", "seed": 1,
                  "config_hash": "00"},
        "sites": [{"site": "only-1", "patients": 30, "train_examples": 20, "test_examples": 10,
                   "prevalence": 0.2}],
        "configs": [{"name": "centralised", "method": "centralised", "protection": "none",
                     "global": block, "privacy": {"private": False, "epsilon": None},
                     "rounds": 0, "seconds": 0.5, "bytes": {}}],
    }
    (root / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_bare_run_renders_with_visible_gaps(tmp_path):
    run_dir = _bare(tmp_path / "bare")
    report = render_report(run_dir).read_text(encoding="utf-8")
    slides = render_slides(run_dir).read_text(encoding="utf-8")
    assert parse(report).sections == [sid for sid, _ in SECTIONS]
    assert problems(report, run_dir) == []
    assert problems(slides, run_dir) == []
    assert "not run" in report
    assert "No private configuration ran" in report
    assert "No site ledger was found" in report
