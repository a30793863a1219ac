"""A real (small) study on bundled Synthea exports: reproducible, complete run directory."""

import json
from pathlib import Path

import pytest

from privehr.federation.config import parse_config
from privehr.federation.runner import run_study

ROOT = Path(__file__).resolve().parents[2]
EXPORTS = ["data/synthea/ma-113-synthea-v2.5", "data/synthea/pool/jigneshsheth-diabetes-predictor",
           "data/synthea/pool/pauljohnston131-com661"]
TIMING = {"seconds", "timings", "encrypted_scoring"}


def _cfg(store_dir="stores", **privacy):
    return parse_config({
        "study": {"name": "t", "seed": 5, "task": "readmission_30d", "bootstrap": 20},
        "data": {"exports": EXPORTS, "store_dir": str(store_dir)},
        "federation": {"rounds": 2, "local_epochs": 1},
        "privacy": privacy,
        "attacks": {"enabled": False},
        "configs": [{"name": "centralised", "method": "centralised"},
                    {"name": "site_only", "method": "site_only"},
                    {"name": "fedavg", "method": "fedavg"},
                    {"name": "fedavg_secagg", "method": "fedavg", "protection": "secagg"}],
    })


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


@pytest.mark.slow
@pytest.mark.integration
def test_same_seed_gives_identical_metrics_and_a_complete_run_dir(tmp_path):
    # Same stores (pseudonyms are keyed by each store's secret) and same seed -> same metrics.
    a = run_study(_cfg(tmp_path / "stores"), tmp_path / "a", ROOT)
    b = run_study(_cfg(tmp_path / "stores"), tmp_path / "b", ROOT)
    # The stores' ledgers outlive studies: the second run adds to the first, never resets it.
    la, lb = a.pop("ledger_totals"), b.pop("ledger_totals")
    assert all(lb[s]["entries"] == 2 * la[s]["entries"] for s in la)
    assert _strip(a) == _strip(b)
    run = tmp_path / "a"
    for name in ("metrics.json", "config.resolved.json", "rounds.jsonl", "summary.md", "models/fedavg.npy"):
        assert (run / name).exists(), name
    m = json.loads((run / "metrics.json").read_text())
    by = {c["name"]: c for c in m["configs"]}
    # SecAgg changes what the coordinator sees, not the model (up to fixed-point quantisation)
    assert abs(by["fedavg"]["global"]["auroc"] - by["fedavg_secagg"]["global"]["auroc"]) < 1e-3
    assert by["centralised"]["note"].startswith("simulation only")
    assert by["fedavg"]["privacy"]["epsilon"] is None  # plain releases: ε = ∞, never a finite number
    assert set(by["fedavg"]["bytes"]) == {s["site"] for s in m["sites"]}
    assert len(m["sites"]) == 3 and m["encrypted_scoring"]["max_abs_deviation_from_plaintext"] < 1e-3


@pytest.mark.slow
@pytest.mark.integration
def test_seeded_noise_mode_is_marked_not_private(tmp_path):
    cfg = parse_config({**_cfg().model_dump(mode="json"),
                        "privacy": {"seeded_noise_for_tests": 3},
                        "configs": [{"name": "dp", "method": "fedavg", "protection": "dp_local", "epsilon": 3.0}]})
    m = run_study(cfg, tmp_path / "s", ROOT)
    assert "TEST MODE" in m["study"]["noise"]
    assert m["configs"][0]["privacy"]["epsilon"] is None  # seeded noise is never reported as private
