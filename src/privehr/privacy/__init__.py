"""privehr.privacy: differential privacy for patients, accounted per site.

- ``events``      dp_accounting DpEvents (+ our distributed discrete-Gaussian record),
                  JSON through a closed, versioned registry
- ``accountant``  folding + PLD epsilon (reported) and RDP (conservative cross-check)
- ``ledger``      the site's append-only, file-locked, budgeted privacy ledger
- ``ledger_view``  read-only views: find ledgers in a store/run directory, render them
- ``calibration`` target epsilon -> noise multiplier
- ``noise`` / ``discrete``  OS-seeded generators, lattice Gaussian mechanism, discrete Gaussian
- ``dpsgd``       patient-level DP-SGD (Opacus hooks or closed-form logistic regression)
- ``stats``       DP counts, sums, standardisation statistics, histograms
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy exports: importing the ledger or the discrete sampler must not pull in torch/opacus
# (the CLI and secure aggregation only need those). name -> defining module.
_EXPORTS = {
    "Accountant": "accountant",
    "calibrate_noise_multiplier": "calibration",
    "dpsgd_event": "calibration",
    "sample_discrete_gaussian": "discrete",
    "DpSgdResult": "dpsgd",
    "PaddedPatients": "dpsgd",
    "dp_sgd_local": "dpsgd",
    "pad_by_patient": "dpsgd",
    "BudgetExceeded": "errors",
    "EventFormatError": "errors",
    "LedgerError": "errors",
    "PrivacyConfigError": "errors",
    "PrivacyError": "errors",
    "UnknownEventType": "errors",
    "UnsupportedEvent": "errors",
    "DistributedDiscreteGaussianEvent": "events",
    "LedgerEntry": "ledger",
    "PrivacyLedger": "ledger",
    "ledger_path_for_store": "ledger",
    "find_ledgers": "ledger_view",
    "format_ledger": "ledger_view",
    "ledger_rows": "ledger_view",
    "open_ledger": "ledger_view",
    "NoiseSource": "noise",
    "gaussian_mechanism": "noise",
    "DpRelease": "stats",
    "release_count": "stats",
    "release_histogram": "stats",
    "release_standardisation_stats": "stats",
    "release_sum": "stats",
    "suppress_small_cells": "stats",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'privehr.privacy' has no attribute {name!r}")
    return getattr(importlib.import_module(f"privehr.privacy.{module}"), name)


__all__ = [
    "Accountant",
    "BudgetExceeded",
    "DistributedDiscreteGaussianEvent",
    "DpRelease",
    "DpSgdResult",
    "EventFormatError",
    "LedgerEntry",
    "LedgerError",
    "NoiseSource",
    "PaddedPatients",
    "PrivacyConfigError",
    "PrivacyError",
    "PrivacyLedger",
    "UnknownEventType",
    "UnsupportedEvent",
    "calibrate_noise_multiplier",
    "dp_sgd_local",
    "dpsgd_event",
    "gaussian_mechanism",
    "find_ledgers",
    "format_ledger",
    "ledger_path_for_store",
    "ledger_rows",
    "open_ledger",
    "pad_by_patient",
    "release_count",
    "release_histogram",
    "release_standardisation_stats",
    "release_sum",
    "sample_discrete_gaussian",
    "suppress_small_cells",
]
