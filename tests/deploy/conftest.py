import glob
from pathlib import Path

import pytest
from deploykit import SITE_NAMES

ROOT = Path(__file__).resolve().parents[2]
POOL = sorted(p for p in glob.glob(str(ROOT / "data/synthea/pool/*")) if Path(p).is_dir())

@pytest.fixture(scope="session")
def stores(tmp_path_factory):
    """Four real de-identified stores ingested from bundled Synthea exports (about 1 s each)."""
    from privehr.ehr.store import ingest

    base = tmp_path_factory.mktemp("stores")
    out = {}
    for name, export in zip(SITE_NAMES, POOL[:4], strict=True):
        out[name] = base / f"{name}.duckdb"
        ingest(Path(export), out[name], site=name)
    return out
