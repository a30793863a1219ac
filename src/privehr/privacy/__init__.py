"""privehr.privacy: differential privacy for patients, accounted per site.

- ``events``      dp_accounting DpEvents (+ our distributed discrete-Gaussian record),
                  JSON through a closed, versioned registry
- ``accountant``  folding + PLD epsilon (reported) and RDP (conservative cross-check)
- ``ledger``      the site's append-only, file-locked, budgeted privacy ledger
- ``calibration`` target epsilon -> noise multiplier
- ``noise`` / ``discrete``  OS-seeded generators, lattice Gaussian mechanism, discrete Gaussian
- ``dpsgd``       patient-level DP-SGD (Opacus hooks or closed-form logistic regression)
- ``stats``       DP counts, sums, standardisation statistics, histograms
"""

from privehr.privacy.accountant import Accountant
from privehr.privacy.calibration import calibrate_noise_multiplier, dpsgd_event
from privehr.privacy.discrete import sample_discrete_gaussian
from privehr.privacy.dpsgd import DpSgdResult, PaddedPatients, dp_sgd_local, pad_by_patient
from privehr.privacy.errors import (
    BudgetExceeded,
    EventFormatError,
    LedgerError,
    PrivacyConfigError,
    PrivacyError,
    UnknownEventType,
    UnsupportedEvent,
)
from privehr.privacy.events import DistributedDiscreteGaussianEvent
from privehr.privacy.ledger import LedgerEntry, PrivacyLedger, ledger_path_for_store
from privehr.privacy.noise import NoiseSource, gaussian_mechanism
from privehr.privacy.stats import (
    DpRelease,
    release_count,
    release_histogram,
    release_standardisation_stats,
    release_sum,
    suppress_small_cells,
)

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
    "ledger_path_for_store",
    "pad_by_patient",
    "release_count",
    "release_histogram",
    "release_standardisation_stats",
    "release_sum",
    "sample_discrete_gaussian",
    "suppress_small_cells",
]
