from fedkit import synthetic_sites

from privehr.federation.config import ConfigEntry, parse_config
from privehr.federation.loso import run_loso
from privehr.federation.runner import LedgerBook
from privehr.federation.study import PreparedStudy


def test_leave_one_site_out_scores_every_site_on_a_model_trained_without_it(tmp_path):
    cfg = parse_config({"study": {"bootstrap": 10}, "federation": {"rounds": 3},
                        "configs": [{"name": "loso", "method": "loso"}]})
    sites = synthetic_sites(k=3, n=150, shift=0.5)
    for s in sites:
        s.store = tmp_path / f"{s.name}.duckdb"
    book = LedgerBook(PreparedStudy(cfg, sites, []), "s")
    res = run_loso(cfg, sites, ConfigEntry(name="loso", method="loso"), book=book, study_id="s")
    assert set(res.entry["per_site"]) == {"site0", "site1", "site2"}
    assert 0.5 < res.entry["loso_mean_auroc"] <= 1.0
    # site0 trains in the two folds it is not held out of (stats, 3 updates and an evaluation
    # each) and only scores in its own fold: every one of those releases is in its ledger
    led = book.ledgers["site0"]
    kinds = [e.kind for e in led.entries()]
    assert kinds.count("model_update") == 2 * 3 and kinds.count("standardisation_stats") == 2
    assert kinds.count("histogram") == 2 + 1
    assert res.entry["privacy"]["epsilon"] is None  # plain FedAvg folds: non-private
