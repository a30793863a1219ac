"""The SQL row rules on their own: what counts as blank, on every kind of edge value."""

from __future__ import annotations

import duckdb
import pytest

from privehr.ehr.ingest_rules import _present, blank

EDGE = [None, "", " ", "   ", " a", "a", "\t", " \t", "\t ", "!", "\x01", "\u00e9", " \u00e9",
        "\u00a0", " " * 20, " " * 20 + "x", "abc ", "\n", " \n", "\r"]  # fmt: skip


@pytest.mark.parametrize("value", EDGE)
def test_blank_means_null_or_only_spaces(value):
    """``blank`` uses a byte-wise ``< '!'`` shortcut; it must agree with the plain rule."""
    con = duckdb.connect()
    got_blank, got_present = con.execute(
        f"SELECT {blank('x')}, {_present('x')} FROM (SELECT ?::VARCHAR AS x)", [value]
    ).fetchone()
    expected = value is None or value.strip(" ") == ""
    assert got_blank is expected
    assert got_present is (None if value is None else not expected)
