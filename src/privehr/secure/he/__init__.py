"""CKKS homomorphic encryption: encrypted aggregation and encrypted scoring.

- :mod:`.ceremony`     key ceremony, public-context export, SHA-256 pinning
- :mod:`.aggregation`  ``SiteEncryptor`` / ``CoordinatorAggregator``; :mod:`.keyholder` ``KeyHolder``
- :mod:`.contribution` sealed tokens that let the key holder verify an aggregate's sites
- :mod:`.inference`    ``ScoringClient`` / ``ScoringHost`` / ``QueryBudget``; models in
  :mod:`.scoring_models` (``LinearModel``, optional quadratic ``PolyMlp``)
- :mod:`.backend`      the small CKKS interface; :mod:`.tenseal_backend` implements it

What it protects: the coordinator (or model host) holds only public contexts and never sees an
individual update (or a patient's features or score). What it does not: the single secret-key
holder can decrypt any ciphertext it obtains (it checks, with a roster of site keys, that an
aggregate sums >= min_sites genuine contributions); if it colludes with the coordinator, every
update is exposed -- where that is unacceptable, use SecAgg.
"""

from privehr.secure.he.aggregation import (
    AggregationStats,
    CoordinatorAggregator,
    SiteEncryptor,
    aggregate_encrypted,
)
from privehr.secure.he.backend import AGGREGATION_PARAMS, SCORING_PARAMS, CkksBackend, CkksParams
from privehr.secure.he.ceremony import CeremonyRecord, PublicContext, load_context, sha256_hex
from privehr.secure.he.errors import (
    AggregationError,
    CiphertextError,
    ContextMismatchError,
    DecryptionUnavailableError,
    HeError,
    HeParameterError,
    QueryBudgetExceededError,
)
from privehr.secure.he.inference import (
    QueryBudget,
    ScoringClient,
    ScoringHost,
    ScoringStats,
    score_encrypted,
    scores_frame,
)
from privehr.secure.he.keyholder import KeyHolder
from privehr.secure.he.packing import aggregate_error_bound
from privehr.secure.he.payloads import (
    ContributionProof,
    EncryptedAggregate,
    EncryptedUpdate,
    ScoringRequest,
    ScoringResponse,
)
from privehr.secure.he.scoring_models import MLP_SCORING_PARAMS, LinearModel, PolyMlp

__all__ = [
    "AGGREGATION_PARAMS",
    "MLP_SCORING_PARAMS",
    "SCORING_PARAMS",
    "AggregationError",
    "AggregationStats",
    "CeremonyRecord",
    "CiphertextError",
    "CkksBackend",
    "CkksParams",
    "ContextMismatchError",
    "ContributionProof",
    "CoordinatorAggregator",
    "DecryptionUnavailableError",
    "EncryptedAggregate",
    "EncryptedUpdate",
    "HeError",
    "HeParameterError",
    "KeyHolder",
    "LinearModel",
    "PolyMlp",
    "PublicContext",
    "QueryBudget",
    "QueryBudgetExceededError",
    "ScoringClient",
    "ScoringHost",
    "ScoringRequest",
    "ScoringResponse",
    "ScoringStats",
    "SiteEncryptor",
    "aggregate_encrypted",
    "aggregate_error_bound",
    "load_context",
    "score_encrypted",
    "scores_frame",
    "sha256_hex",
]
