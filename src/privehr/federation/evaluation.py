"""Federated evaluation without pooling predictions.

A site never sends per-patient scores. It sends fixed-bin score histograms per label (overall
and per subgroup: sex, race/ethnicity, age band), and the coordinator computes global AUROC,
AUPRC, Brier, calibration and bootstrap CIs from the *summed* histograms. In a private
configuration the counts carry Gaussian noise calibrated to one patient's contribution, the
release is charged to the ledger, and per-site metrics are derived from the noisy histograms
rather than sent (nothing un-noised about the test patients leaves the site).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from privehr.evaluation.histograms import ScoreHistogram, metrics_from_histogram
from privehr.evaluation.metrics import UndefinedMetricWarning, bootstrap_ci, evaluate

METRICS = ("auroc", "auprc", "brier", "ece", "accuracy")
GROUPINGS = ("sex", "race_ethnicity", "age_band")
SITE_CI_METRICS = ("auroc", "brier")


def site_histograms(data, p: np.ndarray, n_bins: int) -> dict[str, Any]:
    """Overall and per-subgroup histograms of this site's test scores (exact counts)."""
    y = data.y_test
    out: dict[str, Any] = {"overall": ScoreHistogram.from_scores(y, p, n_bins).to_vector()}
    subgroups: dict[str, dict[str, np.ndarray]] = {}
    for g in GROUPINGS:
        vals = data.groups_test.get(g)
        if vals is None:
            continue
        subgroups[g] = {
            str(v): ScoreHistogram.from_scores(y[vals == v], p[vals == v], n_bins).to_vector()
            for v in np.unique(vals)
        }
    out["subgroups"] = subgroups
    return out


def noisy_counts(vec: np.ndarray, noise_multiplier: float, sensitivity: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Keep only counts (neg, pos), released with the Gaussian mechanism (lattice-snapped)."""
    from privehr.privacy.noise import gaussian_mechanism

    k = (vec.size - 1) // 3
    return gaussian_mechanism(vec[: 2 * k], l2_sensitivity=sensitivity, noise_multiplier=noise_multiplier, rng=rng)


def histogram_from_counts(counts: np.ndarray) -> ScoreHistogram:
    """Rebuild a histogram from (possibly noisy) counts, using bin centres for Σp and Brier."""
    k = counts.size // 2
    neg = np.clip(np.rint(counts[:k]), 0, None)
    pos = np.clip(np.rint(counts[k:]), 0, None)
    centres = (np.arange(k) + 0.5) / k
    sum_p = (neg + pos) * centres
    sse = float((neg * centres**2).sum() + (pos * (1 - centres) ** 2).sum())
    return ScoreHistogram(neg, pos, sum_p, sse)


def evaluate_site(data, p: np.ndarray, *, dp: dict[str, Any], seed: int, n_boot: int,
                  rng: np.random.Generator | None = None) -> dict[str, Any]:
    """The site's evaluation reply. ``dp`` empty => exact histograms and exact per-site metrics."""
    if dp:
        bins = int(dp["bins"])
        hists = site_histograms(data, p, bins)
        nm, sens = float(dp["noise_multiplier"]), float(dp["sensitivity"])
        assert rng is not None, "private evaluation needs a noise generator"
        return {
            "private": True,
            "overall": noisy_counts(hists["overall"], nm, sens, rng),
            "subgroups": {g: {v: noisy_counts(h, nm, sens, rng) for v, h in hs.items()}
                          for g, hs in hists["subgroups"].items()},
        }
    hists = site_histograms(data, p, 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        metrics = evaluate(data.y_test, p)
        # Per-site CIs for the headline metrics only (each bootstrap costs); global CIs cover all.
        cis = {
            m: list(bootstrap_ci(data.y_test, p, m, n_boot=n_boot, seed=seed, patient_ids=data.pid_test))
            for m in SITE_CI_METRICS
        } if n_boot else {}
    # Undefined metrics (one class in a small test split) travel as None, never as NaN.
    return {"private": False, **hists, "metrics": _nan_to_none(metrics), "ci": _nan_to_none(cis), "n": int(len(p))}


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _hist(vec: np.ndarray, private: bool) -> ScoreHistogram:
    return histogram_from_counts(np.asarray(vec)) if private else ScoreHistogram.from_vector(vec)


def histogram_ci(h: ScoreHistogram, metric: str, n_boot: int, seed: int) -> list[float]:
    """Bootstrap CI from a histogram: resample each class's counts multinomially over bins."""
    n_neg, n_pos = int(h.neg.sum()), int(h.pos.sum())
    if n_boot == 0 or n_neg == 0 or n_pos == 0:
        return [math.nan, math.nan]
    rng = np.random.default_rng(seed)
    k = h.n_bins
    centres_p = np.where(h.neg + h.pos > 0, h.sum_p / np.maximum(h.neg + h.pos, 1), (np.arange(k) + 0.5) / k)
    stats = np.empty(n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for i in range(n_boot):
            neg = rng.multinomial(n_neg, h.neg / n_neg)
            pos = rng.multinomial(n_pos, h.pos / n_pos)
            sse = float((neg * centres_p**2).sum() + (pos * (1 - centres_p) ** 2).sum())
            hb = ScoreHistogram(neg, pos, (neg + pos) * centres_p, sse)
            stats[i] = metrics_from_histogram(hb)[metric]
    lo, hi = np.nanquantile(stats, [0.025, 0.975])
    return [float(lo), float(hi)]


def _metrics_with_ci(h: ScoreHistogram, n_boot: int, seed: int) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        m = metrics_from_histogram(h)
    return {
        "n": int(h.n),
        "n_pos": int(h.pos.sum()),
        **{k: float(m[k]) for k in METRICS},
        "ci": {k: histogram_ci(h, k, n_boot, seed) for k in METRICS},
    }


def combine(replies: dict[str, dict[str, Any]], *, n_boot: int, seed: int) -> dict[str, Any]:
    """Coordinator side: global, per-site and subgroup metrics from the sites' replies."""
    if not replies:
        return {"global": None, "per_site": {}, "subgroups": {}}
    per_site: dict[str, Any] = {}
    total: ScoreHistogram | None = None
    sub_totals: dict[str, dict[str, ScoreHistogram]] = {}
    for site, r in sorted(replies.items()):
        private = bool(r["private"])
        h = _hist(r["overall"], private)
        total = h if total is None else total + h
        if private:
            per_site[site] = _metrics_with_ci(h, n_boot, seed)
        else:
            per_site[site] = {"n": r["n"], "n_pos": int(h.pos.sum()),
                              **{k: _num(r["metrics"][k]) for k in METRICS},
                              "ci": {k: [_num(v) for v in ci] for k, ci in r["ci"].items()}}
        for g, hs in r["subgroups"].items():
            for v, vec in hs.items():
                hv = _hist(vec, private)
                cur = sub_totals.setdefault(g, {}).get(v)
                sub_totals[g][v] = hv if cur is None else cur + hv
    assert total is not None
    subgroups = {g: {v: _metrics_with_ci(h, n_boot // 2, seed) for v, h in sorted(vs.items())}
                 for g, vs in sorted(sub_totals.items())}
    return {"global": _metrics_with_ci(total, n_boot, seed), "per_site": per_site, "subgroups": subgroups}


def exact_metrics(y: np.ndarray, p: np.ndarray, *, n_boot: int, seed: int, pid: np.ndarray | None = None) -> dict[str, Any]:
    """Pooled exact metrics — only for simulation baselines (centralised, site-only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        m = evaluate(y, p)
        ci = {k: list(bootstrap_ci(y, p, k, n_boot=n_boot, seed=seed, patient_ids=pid)) for k in METRICS} if n_boot else {}
    return {"n": int(len(y)), "n_pos": int(np.sum(y)), **{k: float(m[k]) for k in METRICS}, "ci": ci}
