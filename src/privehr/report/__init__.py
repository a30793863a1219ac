"""privehr.report: the study report and the slide deck, rendered from a run directory alone.

``render_report(run_dir)`` writes ``RUN_DIR/report.html``; ``render_slides(run_dir)`` writes
``RUN_DIR/slides.html``. Both are single self-contained files (inline CSS, figures as
``data:`` URIs, no network), and every number in them carries the JSON path it was read from
(``data-key``), so a test can check each one against ``metrics.json``.
"""

from privehr.report.report import render_report
from privehr.report.slides import render_slides

__all__ = ["render_report", "render_slides"]
