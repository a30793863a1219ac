"""Encrypted scoring of a site's patients against a federated model it never sees in the clear.

The scoring site standardises its own features with the model's (public) preprocessing,
encrypts them under its own CKKS key, and the model host evaluates the logistic regression on
ciphertext; only the site decrypts. The host never sees features or scores; the site never
receives weights (one-hot masked, re-randomised responses; a per-site query budget at the host).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from privehr.federation.handlers import standardise


def score_patients(
    X: np.ndarray,
    pseudonyms: np.ndarray,
    params: np.ndarray,
    standardizer: dict[str, Any],
    *,
    site_id: str,
    budget: int | None = None,
    out_csv: Path | None = None,
) -> dict[str, Any]:
    """Score encrypted; compare with plaintext scoring; write (pseudonym, score) if asked."""
    from privehr.secure.he import LinearModel, QueryBudget, score_encrypted, scores_frame

    Z = standardise(np.asarray(X, dtype=np.float64), standardizer["mean"], standardizer["std"]).astype(np.float64)
    model = LinearModel.from_flat(params, Z.shape[1])
    t0 = time.perf_counter()
    probs, stats = score_encrypted(Z, model, site_id=site_id,
                                   budget=QueryBudget(budget if budget is not None else len(Z)))
    seconds = time.perf_counter() - t0
    plain = 1.0 / (1.0 + np.exp(-(Z @ np.asarray(params[:-1], np.float64) + float(params[-1]))))
    if out_csv is not None:
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        scores_frame(pseudonyms, probs).to_csv(out_csv, index=False)
    return {
        "site": site_id,
        "patients": int(len(Z)),
        "max_abs_deviation_from_plaintext": float(np.max(np.abs(probs - plain))) if len(Z) else 0.0,
        "seconds": seconds,
        "patients_per_second": float(len(Z) / seconds) if seconds > 0 else None,
        "request_bytes": int(stats.request_bytes),
        "response_bytes": int(stats.response_bytes),
        "public_context_bytes": int(stats.public_context_bytes),
        "scores_file": str(out_csv) if out_csv is not None else None,
    }
