"""Synthetic sites for protocol tests: no store needed, same shapes as a real task."""

from pathlib import Path

import numpy as np

from privehr.federation.site import SiteData
from privehr.federation.study import PreparedSite


def synthetic_sites(k: int = 3, n: int = 120, d: int = 6, seed: int = 0, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    sites = []
    for i in range(k):
        X = rng.normal(loc=shift * i, size=(n, d))
        p = 1 / (1 + np.exp(-(X @ w - 0.3)))
        y = (rng.random(n) < p).astype(np.float64)
        pid = np.array([f"s{i}p{j}" for j in range(n)])
        cut = int(n * 0.7)
        groups = {"sex": np.where(rng.random(n - cut) < 0.5, "F", "M")}
        data = SiteData(X[:cut], y[:cut], pid[:cut], X[cut:], y[cut:], pid[cut:], groups)
        sites.append(PreparedSite(f"site{i}", Path(f"/nonexistent/site{i}.duckdb"), data, n, float(y.mean())))
    return sites


