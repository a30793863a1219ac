"""The slide deck: ``RUN_DIR/slides.html``, one self-contained file built from the run alone.

Why a second rendering and not a PDF of the report: a talk needs one idea per screen. The deck
reuses the report's figures (:func:`privehr.report.report.build_figures`: nothing is drawn
twice) and its traceable cells. Arrow keys, space or a click advance; ``@media print`` puts
one slide per page.
"""

from __future__ import annotations

from pathlib import Path

from privehr.report.html import BASE_CSS, page, table
from privehr.report.load import RunData, load_run
from privehr.report.narrative import attacker_summary, limits
from privehr.report.report import (
    Figures,
    best_private,
    build_figures,
    noise_banner,
    reference,
)
from privehr.report.sections_privacy import ledger_view
from privehr.report.values import cell, ci_cell, esc, text_cell

SLIDES_FILE = "slides.html"

SLIDE_CSS = BASE_CSS + """
body { background: #10141c; }
.slide { display: none; background: #fff; width: 100vw; min-height: 100vh; padding: 3vh 5vw;
         flex-direction: column; }
.slide.active { display: flex; }
.slide h2 { font-size: 2rem; margin-top: 0; border: none; color: var(--accent); }
.slide img.plot { max-height: 60vh; align-self: center; }
.slide .diagram svg { max-height: 65vh; }
.slide { font-size: 1.25rem; } .slide ul li { margin-bottom: .5rem; }
.slide table { font-size: .8rem; } .slide h1 { font-size: 2.6rem; margin-top: 20vh; }
.cols { display: flex; gap: 2rem; align-items: flex-start; } .cols > * { flex: 1 1 0; min-width: 0; }
.cols img.plot { max-width: 100%; }
.slide pre { font-size: .75rem; max-height: 22vh; }
.small { font-size: .95rem; }
.sites-grid { columns: 3; font-size: .75rem; list-style: none; padding: 0; }
.sites-grid li { margin: 0 0 .15rem; break-inside: avoid; }
.pageno { position: fixed; right: 1rem; bottom: .6rem; color: #888; font-size: .8rem; }
@media print {
  body { background: #fff; } .pageno { display: none; }
  .slide { display: flex !important; min-height: auto; height: 100vh; overflow: hidden;
           break-after: page;
           page-break-after: always; }
}
"""

SLIDE_JS = """
(function () {
  var slides = document.querySelectorAll('.slide'); var i = 0;
  var no = document.querySelector('.pageno');
  function show(k) { i = Math.max(0, Math.min(slides.length - 1, k));
    slides.forEach(function (s, j) { s.classList.toggle('active', j === i); });
    if (no) { no.textContent = (i + 1) + ' / ' + slides.length; } }
  document.addEventListener('keydown', function (e) {
    if (['ArrowRight', 'PageDown', ' ', 'Enter'].indexOf(e.key) >= 0) { show(i + 1); e.preventDefault(); }
    if (['ArrowLeft', 'PageUp', 'Backspace'].indexOf(e.key) >= 0) { show(i - 1); e.preventDefault(); }
    if (e.key === 'Home') { show(0); } if (e.key === 'End') { show(slides.length - 1); } });
  document.addEventListener('click', function (e) {
    if (e.target.closest('a, summary, details')) { return; }
    show(e.clientX < window.innerWidth / 4 ? i - 1 : i + 1); });
  var start = parseInt((location.hash || '').replace('#', ''), 10);
  show(isNaN(start) ? 0 : start - 1);
})();
"""


def _slide(sid: str, title: str, body: str) -> str:
    return (f'<section class="slide" id="s-{esc(sid)}" data-slide="{esc(sid)}">'
            f"<h2>{esc(title)}</h2>{body}</section>")


def _img(uri: str | None, alt: str, missing: str) -> str:
    return (f'<img class="plot" alt="{esc(alt)}" src="{uri}">' if uri
            else f'<p class="note">{esc(missing)}</p>')


def _question(run: RunData) -> str:
    m = run.metrics
    items = "".join(
        f"<li>{text_cell(m, f'sites/{i}/site', cls='t id')}: "
        f"{cell(m, f'sites/{i}/patients', 0, count=True)} patients, "
        f"{cell(m, f'sites/{i}/test_examples', 0, count=True)} test examples</li>"
        for i in range(len(m.get("sites", []))))
    task = text_cell(m, "task_definition", tag="pre") if m.get("task_definition") else ""
    return (f"<p>Can {cell(m, 'sites/*', 0, agg='count')} hospitals train "
            f"{text_cell(m, 'study/task', cls='t id')} together without any patient record "
            f"leaving a site? {cell(m, 'sites/*/patients', 0, agg='sum')} patients; model "
            f"{text_cell(m, 'study/model', cls='t id')}.</p>{task}"
            f'<ul class="sites-grid">{items}</ul>')


def _buys(run: RunData, figs: Figures) -> str:
    m = run.metrics
    rows = []
    for label, i in (("centralised (pooled, simulation only)", reference(run, "centralised")),
                     ("site-only", reference(run, "site_only")),
                     ("best private federated", best_private(run))):
        if i is not None:
            rows.append([esc(label), text_cell(m, f"configs/{i}/name", cls="t id"),
                         ci_cell(m, f"configs/{i}/global", "auroc"),
                         cell(m, f"configs/{i}/privacy/epsilon", 2)])
    return ('<div class="cols"><div>'
            + _img(figs.privacy_utility, "AUROC against epsilon", "No private configuration ran.")
            + "</div><div>" + table(["reference", "configuration", "AUROC [CI]", "ε"], rows)
            + "</div></div>")


def _cost_table(run: RunData) -> str:
    m = run.metrics
    rows = []
    for i, c in enumerate(run.configs):
        r_key = f"configs/{i}/rounds_completed"
        if not c.get("bytes") or not c.get("rounds_completed"):
            continue
        rows.append([text_cell(m, f"configs/{i}/name", cls="t id"),
                     text_cell(m, f"configs/{i}/protection"),
                     cell(m, f"configs/{i}/seconds", 2, div=r_key),
                     cell(m, f"configs/{i}/bytes/*/up", 0, agg="mean", div=r_key)])
    return table(["configuration", "protection", "seconds per round",
                  "bytes up per site per round"], rows)


def _utility(run: RunData) -> str:
    m = run.metrics
    rows = [[text_cell(m, f"configs/{i}/name", cls="t id"), text_cell(m, f"configs/{i}/protection"),
             ci_cell(m, f"configs/{i}/global", "auroc"), cell(m, f"configs/{i}/global/ece"),
             cell(m, f"configs/{i}/privacy/epsilon", 2)]
            for i, c in enumerate(run.configs) if c.get("global")]
    return table(["configuration", "protection", "AUROC [CI]", "ECE", "ε"], rows)


def _reproduce(run: RunData) -> str:
    m = run.metrics
    name = str(m.get("study", {}).get("name", ""))
    d = f'<span class="id">{esc(run.run_dir.name)}</span>'
    study = f'<span class="id">{esc(name)}</span>'
    if m.get("study", {}).get("command"):
        cmd = text_cell(m, "study/command", cls="t id")  # recorded by the CLI that ran the study
    else:
        cmd = (f"privehr demo --out {d}" if name == "demo"
               else f"privehr study {study}.toml --out {d}")
    return (f"<p>Command:</p><pre>{cmd}\nprivehr report {d}\nprivehr present {d}</pre>"
            "<p>The resolved configuration is saved as <code>config.resolved.json</code>; its "
            f"hash is {text_cell(m, 'study/config_hash', cls='t id')} (study id "
            f"{text_cell(m, 'study/id', cls='t id')}, seed {cell(m, 'study/seed', 0)}). "
            "A re-run with the same configuration must print the same hash.</p>")


def slides_html(run: RunData, figs: Figures | None = None) -> str:
    figs = figs or build_figures(run)
    m = run.metrics
    view = ledger_view(run)
    bullets = "".join(f"<li>{s}</li>" for s in attacker_summary(run, brief=True))
    slides = [
        _slide("title", "Federated learning with measurable privacy",
               f"<h1>{text_cell(m, 'study/name')}: {text_cell(m, 'study/task', cls='t id')}</h1>"
               f"<p>Study {text_cell(m, 'study/id', cls='t id')} · "
               f"{cell(m, 'sites/*', 0, agg='count')} sites · "
               f"{cell(m, 'configs/*', 0, agg='count')} configurations</p>"
               + noise_banner(m)
               + "<p class=note>← → or click to move; print for one slide per page.</p>"),
        _slide("question", "The question", _question(run)),
        _slide("threat-model", "Threat model: what crosses the trust boundary",
               figs.diagram + "<p class=note>The coordinator may lie; raw records never leave "
               "a site; only protected updates cross.</p>"),
        _slide("buys", "What each protection costs and buys", _buys(run, figs)),
        _slide("utility", "Utility of every configuration", _utility(run)),
        _slide("attacker", "What an attacker could learn",
               f'<div class="cols"><div class="small"><ul>{bullets}</ul></div>'
               + (f"<div>{_img(figs.membership, 'membership inference', '')}</div>"
                  if figs.membership else "") + "</div>"),
        _slide("audit", "Audit lower bound vs ledger ε",
               '<div class="cols"><div>'
               + _img(figs.audit, "audit", "The one-run audit was not run in this study.")
               + "</div><div>"
               + _img(figs.ledger, "ledger", "No private ledger curve in this run.")
               + "</div></div>"),
        _slide("cost", "Cost: time and bytes per round",
               '<div class="cols"><div>'
               + _img(figs.cost, "cost", "No federated configuration exchanged bytes.")
               + f"</div><div>{_cost_table(run)}</div></div>"),
        _slide("limits", "Limits and assumptions",
               "<ul>" + "".join(f"<li>{s}</li>" for s in limits(run, view)) + "</ul>"),
        _slide("reproduce", "How to reproduce", _reproduce(run)),
    ]
    return page(f"privehr slides — {m.get('study', {}).get('name', '')}",
                "".join(slides) + '<div class="pageno"></div>', css=SLIDE_CSS,
                script=SLIDE_JS)


def render_slides(run_dir: Path) -> Path:
    """Write ``RUN_DIR/slides.html`` from the run directory's files; return its path."""
    run = load_run(run_dir)
    out = Path(run_dir) / SLIDES_FILE
    out.write_text(slides_html(run), encoding="utf-8")
    return out



