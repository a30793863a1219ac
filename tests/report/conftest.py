"""Shared fixtures: one tiny run directory (with and without attacks) per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_run import make_run


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def bare_run_dir(tmp_path_factory) -> Path:
    """The same study without an 'attacks' key (attack stage not run)."""
    return make_run(tmp_path_factory.mktemp("bare"), attacks=False)

