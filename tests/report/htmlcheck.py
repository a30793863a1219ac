"""Independent checks of a rendered page: every number traced to the run files, no network.

Written apart from privehr.report.values on purpose: the path resolution, aggregation and
number parsing are re-implemented here so a bug in the renderer cannot hide itself.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from privehr.privacy.ledger import PrivacyLedger

MIN_CELL = 11
VOID = {"br", "img", "meta", "link", "input", "hr", "wbr", "source", "col", "area", "base",
        "embed", "param", "track"}
SKIP_TEXT = {"style", "script", "svg", "head", "title"}


@dataclass
class Cell:
    attrs: dict[str, str]
    text: str = ""


@dataclass
class Page:
    cells: list[Cell] = field(default_factory=list)
    loose_digits: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    consts: list[tuple[str, str]] = field(default_factory=list)
    urls: list[tuple[str, str, str]] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    slides: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    not_run: int = 0


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.stack: list[tuple[str, dict[str, str], list[str]]] = []

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: (v or "") for k, v in attrs_list}
        self.page.tags.append(tag)
        for k in ("src", "href", "action", "poster", "data"):
            if k in attrs:
                self.page.urls.append((tag, k, attrs[k]))
        if "data-section" in attrs:
            self.page.sections.append(attrs["data-section"])
        if "data-slide" in attrs:
            self.page.slides.append(attrs["data-slide"])
        if "data-not-run" in attrs:
            self.page.not_run += 1
        if tag in VOID:
            return
        self.stack.append((tag, attrs, []))

    def handle_startendtag(self, tag, attrs_list):
        self.handle_starttag(tag, attrs_list)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        while self.stack:
            t, attrs, texts = self.stack.pop()
            text = "".join(texts)
            if self.stack:
                self.stack[-1][2].append(text)
            if "data-key" in attrs:
                self.page.cells.append(Cell(attrs, text))
            if "id" in attrs.get("class", "").split() and "data-key" not in attrs:
                self.page.ids.append(text)
            if "data-const" in attrs:
                self.page.consts.append((attrs["data-const"], text))
            if t == "style":
                self.page.styles.append(text)
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.stack:
            self.stack[-1][2].append(data)
        if not re.search(r"\d", data):
            return
        tags = tuple(t for t, _, _ in self.stack)
        if SKIP_TEXT & set(tags):
            return
        if any("dot-source" in a.get("class", "") for _, a, _ in self.stack):
            return
        covered = any(("data-key" in a or "data-const" in a
                       or "id" in a.get("class", "").split()) for _, a, _ in self.stack)
        if not covered:
            self.page.loose_digits.append((data, tags))


def parse(html: str) -> Page:
    p = _Parser()
    p.feed(html)
    p.close()
    return p.page


# -- resolving paths, independently -----------------------------------------------------------
def resolve(data: Any, path: str) -> list[Any]:
    nodes = [data]
    for key in [k for k in path.split("/") if k]:
        nxt = []
        for node in nodes:
            if key == "*":
                nxt.extend(node.values() if isinstance(node, dict) else node)
            elif isinstance(node, dict):
                nxt.append(node[key])
            else:
                nxt.append(node[int(key)])
        nodes = nxt
    return nodes


def auc_ceiling_numeric(eps: float, delta: float, n: int = 200_001) -> float:
    """Area under min(1, e^ε x + δ, 1 − e^−ε (1 − δ − x)) by the trapezoid rule."""
    import numpy as np

    x = np.linspace(0.0, 1.0, n)
    t = np.clip(np.minimum.reduce([np.ones_like(x), np.exp(eps) * x + delta,
                                   1 - np.exp(-eps) * (1 - delta - x)]), 0.0, 1.0)
    return float(np.trapezoid(t, x))


def value_of(cell: Cell, sources: dict[str, Any]) -> Any:
    a = cell.attrs
    data = sources[a.get("data-src", "metrics")]
    vals = resolve(data, a["data-key"])
    agg = a.get("data-agg")
    if agg == "count":
        v: Any = len(vals)
    elif agg:
        nums = [x for x in vals if isinstance(x, int | float) and not isinstance(x, bool)]
        v = {"mean": lambda: sum(nums) / len(nums), "sum": lambda: sum(nums),
             "max": lambda: max(nums), "min": lambda: min(nums)}[agg]() if nums else None
    else:
        assert len(vals) == 1, a
        v = vals[0]
    if a.get("data-op") == "dp_auc_ceiling":
        delta = resolve(data, a["data-delta"])[0]
        v = None if v is None or delta is None else auc_ceiling_numeric(v, delta)
    if "data-div" in a and v is not None:
        d = resolve(data, a["data-div"])[0]
        v = None if not d else v / d
    if "data-scale" in a and isinstance(v, int | float):
        v = v * float(a["data-scale"])
    return v


def check_cell(cell: Cell, sources: dict[str, Any]) -> str | None:
    """None when the displayed text matches the value at the cell's path."""
    a = cell.attrs
    text = cell.text.strip()
    try:
        v = value_of(cell, sources)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        return f"{a['data-key']}: does not resolve ({exc!r})"
    where = f"{a.get('data-src', 'metrics')}:{a['data-key']} shows {text!r} for {v!r}"
    if a.get("data-text"):
        return None if text == ("" if v is None else str(v)).strip() else where
    if a.get("data-suppressed"):
        if "data-cases" in a:
            total = sum(resolve(sources[a.get("data-src", "metrics")], part)[0]
                        for part in a["data-cases"].split("+"))
            raw = resolve(sources[a.get("data-src", "metrics")], a["data-key"])[0]
            cases = raw * total
            ok = round(cases) < MIN_CELL or round(total - cases) < MIN_CELL
        else:
            ok = isinstance(v, int | float) and v < MIN_CELL
        return None if ok and text.startswith(f"<{MIN_CELL}") else where
    if text == "∞":
        return None if v is None or (isinstance(v, float) and math.isinf(v)) else where
    if text == "–":
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else where
    if isinstance(v, bool) or not isinstance(v, int | float):
        return where
    num = text.replace(",", "").replace("%", "").strip()
    try:
        shown = float(num)
    except ValueError:
        return where
    if "e" in num.lower():
        return None if math.isclose(shown, v, rel_tol=5e-3) else where
    decimals = len(num.split(".")[1]) if "." in num else 0
    return None if abs(shown - v) <= 0.5 * 10 ** (-decimals) + 1e-9 else where


# -- run sources ------------------------------------------------------------------------------
def sources_for(run_dir: Path) -> dict[str, Any]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rounds: dict[str, list[dict[str, Any]]] = {}
    rounds_file = run_dir / "rounds.jsonl"
    lines = rounds_file.read_text().splitlines() if rounds_file.is_file() else []
    for line in lines:
        if line.strip():
            row = json.loads(line)
            rounds.setdefault(row["config"], []).append(row)
    ledger: dict[str, dict[str, Any]] = {}
    sid = metrics["study"]["id"]
    for path in sorted((run_dir / "stores").glob("*.ledger.jsonl")):
        led = PrivacyLedger(path)
        entries = led.entries()
        mine = [e for e in entries if e.study == sid]
        ledger[led.site] = {
            "releases_all": len(entries), "studies": len({e.study for e in entries}),
            "releases_study": len(mine),
            "non_private_study": sum(type(e.event).__name__ == "NonPrivateDpEvent" for e in mine),
            "shared_patient_factor": led.shared_patient_factor,
        }
    return {"metrics": metrics, "rounds": rounds, "ledger": ledger}


def identifiers(metrics: Any) -> set[str]:
    out: set[str] = set()

    def walk(x: Any, path: str) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                out.add(str(k))
                walk(v, f"{path}/{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{path}/{i}")
        elif isinstance(x, str):
            out.add(x)

    walk(metrics, "")
    return out


def problems(html: str, run_dir: Path) -> list[str]:
    """Every reason the page fails the "numbers come from the files, no network" contract."""
    page = parse(html)
    src = sources_for(run_dir)
    found = [p for c in page.cells if (p := check_cell(c, src))]
    found += [f"digits outside a traced cell: {t!r} in {'>'.join(tags)}"
              for t, tags in page.loose_digits]
    known = identifiers(src["metrics"]) | {run_dir.name}
    for ident in page.ids:
        if re.search(r"\d", ident) and not all(part in known for part in ident.split("/")):
            found.append(f"identifier with digits not in the run files: {ident!r}")
    found += [f"constant {n}={t!r}" for n, t in page.consts if n == "MIN_CELL" and t != str(MIN_CELL)]
    for tag, attr, url in page.urls:
        if not (url.startswith("data:") or url.startswith("#")):
            found.append(f"external resource <{tag} {attr}={url[:60]!r}>")
    for css in page.styles:
        if "@import" in css or re.search(r"url\((?!\s*['\"]?data:)", css):
            found.append("stylesheet imports or fetches a resource")
    for m in re.finditer(r"https?://", html):
        before = html[max(0, m.start() - 16): m.start()]
        if not re.search(r"xmlns(:\w+)?=\"$", before):
            found.append(f"network address in page: {html[m.start(): m.start() + 60]!r}")
    if "link" in page.tags:
        found.append("<link> element present")
    return found
