"""privehr.report: the study report and the slide deck, rendered from a run directory alone.

``render_report(run_dir)`` writes ``RUN_DIR/report.html``; ``render_slides(run_dir)`` writes
``RUN_DIR/slides.html``. Both are single self-contained files (inline CSS, figures as
``data:`` URIs, no network), and every number in them carries the JSON path it was read from
(``data-key``), so a test can check each one against ``metrics.json``.
"""

from pathlib import Path

from privehr.report.load import ReportInputError, load_run
from privehr.report.report import REPORT_FILE, build_figures, render_report, report_html
from privehr.report.slides import SLIDES_FILE, render_slides, slides_html


def render_all(run_dir: Path) -> tuple[Path, Path]:
    """Write report.html and slides.html, loading the run and drawing the figures once."""
    run = load_run(run_dir)
    figs = build_figures(run)
    report, slides = Path(run_dir) / REPORT_FILE, Path(run_dir) / SLIDES_FILE
    report.write_text(report_html(run, figs), encoding="utf-8")
    slides.write_text(slides_html(run, figs), encoding="utf-8")
    return report, slides


__all__ = ["ReportInputError", "render_all", "render_report", "render_slides"]
