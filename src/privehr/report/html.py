"""HTML building blocks shared by the report and the slides: page shell, CSS, tables.

Why no template engine: the pages are small, and plain functions keep every number flowing
through :func:`privehr.report.values.cell`. Nothing here references an external resource:
system fonts only, inline CSS, images as ``data:`` URIs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from privehr.report.values import esc

BASE_CSS = """
:root { --ink:#1d2330; --muted:#5b6472; --line:#d9dee7; --accent:#1f3a93; --warn:#a13d00; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; } h2 { border-bottom: 2px solid var(--line);
     padding-bottom: .2rem; margin-top: 2.2rem; } h3 { margin-bottom: .3rem; }
.wide { overflow-x: auto; } th .id { font-size: .8em; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .86rem; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .55rem; text-align: right;
         vertical-align: top; }
th:first-child, td:first-child, td.l, th.l { text-align: left; }
th { background: #f4f6fa; font-weight: 600; }
.ci { color: var(--muted); font-size: .8em; } .n { white-space: nowrap; } .note { color: var(--muted); font-size: .9rem; }
.suppressed { color: var(--muted); font-style: italic; }
.warn { color: var(--warn); font-weight: 600; }
.id { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .92em; }
img.plot { max-width: 100%; border: 1px solid var(--line); }
.diagram svg { max-width: 100%; height: auto; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; font-size: .8rem; }
.cards { display: grid; grid-template-columns: 1fr 1fr; gap: .6rem; }
.cards .span { grid-column: 1 / -1; } .card .id { word-break: break-all; } .card h3 { margin: .3rem 0; font-size: 1rem; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .4rem 1rem; margin: .6rem 0; }
.notrun { border-left: 4px solid var(--warn); padding: .3rem .8rem; background: #fff6ef; }
nav.toc a { margin-right: .8rem; font-size: .85rem; }
@media print { nav.toc { display: none; } h2 { break-before: page; } }
"""


def ident(name: object) -> str:
    """An identifier (site or configuration name) that may contain digits."""
    text = esc(name).replace("_", "_<wbr>").replace("-", "-<wbr>")
    return f'<span class="id">{text}</span>'


def table(header: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """Cells are already-escaped HTML (from ``cell``/``ident``)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return (f'<div class="wide"><table{klass}><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{esc(sid)}" data-section="{esc(sid)}"><h2>{esc(title)}</h2>{body}</section>'


def img(uri: str | None, alt: str, missing: str) -> str:
    if uri is None:
        return f'<p class="note">{esc(missing)}</p>'
    return f'<img class="plot" alt="{esc(alt)}" src="{uri}">'


def not_run(what: str) -> str:
    return f'<div class="notrun" data-not-run="1"><strong>Not run:</strong> {esc(what)}</div>'


def page(title: str, body: str, *, css: str = BASE_CSS, script: str = "") -> str:
    js = f"<script>{script}</script>" if script else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{css}</style></head>"
            f"<body>{body}{js}</body></html>\n")
