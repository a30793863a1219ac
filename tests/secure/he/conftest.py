"""Shared, expensive HE fixtures: one key ceremony per test session."""

from __future__ import annotations

import pytest

from privehr.secure.he.aggregation import KeyHolder


@pytest.fixture(scope="session")
def ceremony() -> tuple[KeyHolder, bytes, str]:
    """(key_holder, public_context_bytes, pinned_sha256) at the default N=8192 parameters."""
    return KeyHolder.create(holder_id="site-a", min_sites=2)
