"""The federation's trust boundaries as a Graphviz diagram, generated from the run's configs.

Why generated: a hand-drawn architecture picture shows what was *meant* to run. This one is
built from ``metrics.json``: one box per site (raw store and local training stay inside the
box), the coordinator outside, and one arrow per protection that actually ran, labelled with
what crosses the boundary. With ``dot`` installed the DOT source becomes inline SVG; without
it the DOT source is embedded with a note (never a fetched image).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

from privehr.report.load import RunData

MAX_DRAWN_SITES = 3

#: What leaves a site under each protection, in the coordinator's words.
CROSSES = {
    "none": ("plain model update", "#555555"),
    "secagg": ("masked update (SecAgg: only the sum is readable)", "#1f77b4"),
    "dp_local": ("DP-SGD update (noise added inside the site)", "#d62728"),
    "ddp": ("noisy masked update (distributed DP under SecAgg)", "#2ca02c"),
    "he": ("CKKS ciphertext (coordinator holds no secret key)", "#9467bd"),
}


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def protections_run(run: RunData) -> list[str]:
    """Protections of the federated configurations that ran, in first-seen order."""
    fed = [c for c in run.configs if c.get("method") not in ("centralised", "site_only")]
    return list(dict.fromkeys(str(c.get("protection", "none")) for c in fed))


def trust_boundary_dot(run: RunData) -> str:
    """DOT source: sites as clusters (trust boundaries), coordinator, one protected edge each."""
    sites = [str(s["site"]) for s in run.metrics.get("sites", [])]
    prots = protections_run(run)
    drawn = sites[:MAX_DRAWN_SITES]
    crossing = [CROSSES.get(p, (f"{p} update", ""))[0] for p in prots] or ["nothing (baselines)"]
    lines = [
        "digraph federation {",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, nodesep=0.3, ranksep=0.9];',
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica",'
        " fontsize=10];",
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for i, site in enumerate(drawn):
        lines += [
            f"  subgraph cluster_site{i} {{",
            f"    label={_q('site ' + site + ' (trust boundary)')}; style=dashed; color=\"#b22222\";",
            f"    raw{i} [label={_q('raw EHR store' + chr(10) + '(never leaves)')}, "
            'fillcolor="#fde0dc"];',
            f"    train{i} [label={_q('local training' + chr(10) + 'outbound gate + ledger')}];",
            f"    raw{i} -> train{i};",
            "  }",
            f'  train{i} -> agg [penwidth=1.6, color="#333333"];',
            f"  model -> train{i} [style=dotted, arrowsize=0.6];",
        ]
    hidden = len(sites) - len(drawn)
    if hidden > 0:
        lines.append(f"  more [label={_q(f'… {hidden} more sites, same boundary')}, "
                     'shape=note, fillcolor="#f3f3f3"];')
        lines.append('  more -> agg [style=dashed, color="#888888"];')
    lines += [
        "  subgraph cluster_coord {",
        '    label="coordinator (untrusted: may lie)"; color="#1f3a93";',
        '    agg [label="aggregate\\n(sum · unmask · add ciphertexts)", fillcolor="#dde7f7"];',
        '    model [label="global model\\n(released)", fillcolor="#e8f4e8"];',
        "    agg -> model;",
        "  }",
        '  crosses [shape=note, fillcolor="#fffbe6", label="What crosses a site boundary in this '
        'run:\\l' + "".join(_q("• " + c)[1:-1] + "\\l" for c in crossing) + '"];',
        '  crosses -> agg [style=invis];',
        "}",
    ]
    return "\n".join(lines)


def render_svg(dot_source: str, *, timeout: float = 20.0) -> str | None:
    """Inline SVG from the ``dot`` program, or None when it is not installed or fails."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "-Tsvg"], input=dot_source.encode(), capture_output=True,  # noqa: S603
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    svg = proc.stdout.decode("utf-8", "replace")
    svg = re.sub(r"<\?xml[^>]*\?>", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>", "", svg, flags=re.S)
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    return svg.strip()


def diagram_html(run: RunData) -> str:
    """The diagram as inline SVG, or the DOT source with a note saying how to render it."""
    src = trust_boundary_dot(run)
    svg = render_svg(src)
    if svg is not None:
        return f'<div class="diagram">{svg}</div>'
    return ('<p class="note">Graphviz <code>dot</code> is not installed here, so the diagram is '
            "embedded as DOT source; render it with <code>dot -Tsvg</code>.</p>"
            f'<pre class="dot-source">{html.escape(src)}</pre>')
