"""Every number in the report is a traceable cell: a value read from a run file plus its path.

Why: a report that types numbers by hand drifts from the run it describes. Each number is
rendered by :func:`cell`, which reads it from the data and writes its JSON path into the HTML
(``data-key``) so a test (or a reviewer) can map every figure back to ``metrics.json``,
``rounds.jsonl`` or a site's ledger. Derived figures say how they were derived (``data-agg``
over a ``*`` wildcard, ``data-div`` by another path, ``data-scale``), never more.

Small cells: counts of patients below :data:`MIN_CELL` are shown as ``<11`` (a common
disclosure-control rule for health statistics); the cell keeps its path so the test can check
that the hidden value really is small.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MIN_CELL = 11
INFINITY = "∞"
MISSING = "–"

Path = str  # "configs/3/global/auroc"; "*" matches every key/index at that level


def split(path: Path) -> list[str]:
    return [p for p in path.split("/") if p != ""]


def _step(node: Any, key: str) -> Any:
    if isinstance(node, Mapping):
        return node[key]
    if isinstance(node, Sequence) and not isinstance(node, str):
        return node[int(key)]
    raise KeyError(key)


def resolve_all(data: Any, path: Path) -> list[Any]:
    """All values at ``path`` (several when it holds ``*``); KeyError if a step is missing."""
    nodes = [data]
    for key in split(path):
        nxt: list[Any] = []
        for node in nodes:
            if key == "*":
                if isinstance(node, Mapping):
                    nxt.extend(node.values())
                elif isinstance(node, Sequence) and not isinstance(node, str):
                    nxt.extend(node)
                else:
                    raise KeyError(path)
            else:
                nxt.append(_step(node, key))
        nodes = nxt
    return nodes


def lookup(data: Any, path: Path, default: Any = None) -> Any:
    try:
        values = resolve_all(data, path)
    except (KeyError, IndexError, ValueError, TypeError):
        return default
    return values[0] if len(values) == 1 else default


def aggregate(values: Iterable[Any], agg: str) -> float | None:
    values = list(values)
    if agg == "count":
        return float(len(values))
    nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not nums:
        return None
    if agg == "mean":
        return sum(nums) / len(nums)
    if agg == "sum":
        return float(sum(nums))
    if agg == "max":
        return max(nums)
    if agg == "min":
        return min(nums)
    raise ValueError(f"agg={agg!r}: must be count, mean, sum, max or min")


def dp_auc_ceiling(epsilon: float, delta: float) -> float:
    """Largest ROC AUC any membership test can reach against an (ε, δ)-DP release.

    The ROC of every test lies below TPR = min(1, e^ε·FPR + δ, 1 − e^−ε·(1 − δ − FPR))
    (the (ε, δ) hypothesis-testing bound); this is the area under that curve. An attack AUC
    whose lower confidence bound is above it contradicts the claimed (ε, δ) — or the attack's
    members and non-members are not exchangeable.
    """
    e = math.exp(epsilon)
    f1 = (1.0 - delta) / (e + 1.0)  # where the two sloped pieces meet
    rest = 1.0 - delta - f1
    return e * f1 * f1 / 2 + delta * f1 + rest - rest * rest / (2 * e) + delta


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def fmt_number(value: Any, digits: int | str, *, none: str = INFINITY) -> str:
    """The one way numbers are printed (the test parses exactly this form).

    ``digits`` is a number of decimals, or ``"g"`` for three significant digits (δ values).
    """
    if value is None or (isinstance(value, float) and math.isinf(value) and value > 0):
        return none
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    if digits == "g":
        return f"{float(value):.3g}"
    if digits == 0:
        return f"{round(float(value)):,d}"
    return f"{float(value):,.{digits}f}"


def _attrs(attrs: Mapping[str, Any]) -> str:
    return "".join(f' {k}="{html.escape(str(v), quote=True)}"' for k, v in attrs.items()
                   if v is not None)


def cell(data: Any, path: Path, digits: int | str = 3, *, src: str = "metrics", agg: str | None = None,
         div: Path | None = None, scale: float | None = None, count: bool = False,
         none: str = INFINITY, unit: str = "", tag: str = "span", cls: str = "n",
         resolve_data: Any = None, cases_of: Path | None = None,
         auc_ceiling_delta: Path | None = None) -> str:
    """HTML for one number read at ``path`` (``data`` is what the path is resolved in).

    ``count=True`` marks a patient count: values below :data:`MIN_CELL` print as ``<11``.
    ``cases_of`` marks a proportion (e.g. prevalence): it is hidden when ``value × N`` (the
    number of cases it implies) or ``N − cases`` is below :data:`MIN_CELL`, where ``N`` is the
    sum of the ``+``-separated paths in ``cases_of``.
    ``auc_ceiling_delta`` turns the ε at ``path`` into :func:`dp_auc_ceiling` (ε, δ at that
    path); ``data-op="dp_auc_ceiling"`` says so in the HTML.
    ``resolve_data`` lets a caller resolve in a derived view (rounds/ledger tables) while the
    attribute still names the source file (``src``).
    """
    base = data if resolve_data is None else resolve_data
    value: Any
    try:
        found = resolve_all(base, path)
    except (KeyError, IndexError, ValueError, TypeError):
        return f'<{tag} class="{cls} absent">{MISSING}</{tag}>'  # nothing to trace: not in file
    value = aggregate(found, agg) if agg is not None else (found[0] if len(found) == 1 else None)
    if div is not None and value is not None:
        d = lookup(base, div)
        value = None if not d else float(value) / float(d)
    if auc_ceiling_delta is not None:
        d = lookup(base, auc_ceiling_delta)
        value = (dp_auc_ceiling(float(value), float(d))
                 if is_number(value) and is_number(d) else None)
    raw = value
    if scale is not None and is_number(value):
        value = float(value) * scale
    attrs: dict[str, Any] = {"class": cls, "data-key": path,
                             "title": path if src == "metrics" else f"{src}: {path}"}
    if src != "metrics":
        attrs["data-src"] = src
    if agg:
        attrs["data-agg"] = agg
    if auc_ceiling_delta:
        attrs["data-op"] = "dp_auc_ceiling"
        attrs["data-delta"] = auc_ceiling_delta
    if div:
        attrs["data-div"] = div
    if scale is not None:
        attrs["data-scale"] = repr(scale)
    hide = count and is_number(value) and value < MIN_CELL
    if cases_of is not None and is_number(raw):
        attrs["data-cases"] = cases_of
        total = sum(float(lookup(base, part) or 0) for part in cases_of.split("+"))
        cases = float(raw) * total
        hide = round(cases) < MIN_CELL or round(total - cases) < MIN_CELL
    if hide:
        attrs["data-suppressed"] = "1"
        attrs["class"] = cls + " suppressed"
        text = f"&lt;{MIN_CELL}" + (" cases" if cases_of else "")
    else:
        text = html.escape(fmt_number(value, digits, none=none)) + unit
    return f"<{tag}{_attrs(attrs)}>{text}</{tag}>"


def ci_cell(data: Any, path: Path, metric: str, digits: int = 3) -> str:
    """``0.560 [0.408, 0.694]`` for ``path/metric`` and ``path/ci/metric/{0,1}``."""
    def blank(x: Any) -> bool:
        return x is None or (isinstance(x, float) and math.isnan(x))

    if blank(lookup(data, f"{path}/ci/{metric}/0")) or blank(lookup(data, f"{path}/{metric}")):
        return cell(data, f"{path}/{metric}", digits, none=MISSING)
    return (f"{cell(data, f'{path}/{metric}', digits, none=MISSING)} "
            f"<span class=ci>[{cell(data, f'{path}/ci/{metric}/0', digits, none=MISSING)}, "
            f"{cell(data, f'{path}/ci/{metric}/1', digits, none=MISSING)}]</span>")


def text_cell(data: Any, path: Path, *, tag: str = "span", cls: str = "t") -> str:
    """A string read from the data (names may hold digits; the test checks them verbatim)."""
    value = lookup(data, path)
    return (f'<{tag} class="{cls}" data-key="{html.escape(path, quote=True)}" data-text="1">'
            f"{html.escape('' if value is None else str(value))}</{tag}>")


def const(value: int | str, name: str) -> str:
    """A policy constant of this module (e.g. the small-cell threshold), labelled as such."""
    return f'<span class="c" data-const="{html.escape(name)}">{html.escape(str(value))}</span>'


def esc(text: Any) -> str:
    return html.escape(str(text))
