"""CKKS homomorphic encryption: encrypted aggregation and encrypted scoring.

- :mod:`.ceremony`     key ceremony, public-context export, SHA-256 pinning
- :mod:`.aggregation`  ``KeyHolder`` / ``SiteEncryptor`` / ``CoordinatorAggregator``
- :mod:`.inference`    ``ScoringClient`` / ``ScoringHost`` / ``QueryBudget``
- :mod:`.backend`      the small CKKS interface; :mod:`.tenseal_backend` implements it

What it protects: the coordinator (or model host) holds only public contexts and never sees an
individual update (or a patient's features or score). What it does not: the single secret-key
holder can decrypt any ciphertext it obtains, and it cannot verify that an "aggregate" it is
asked to decrypt really is a sum -- where the coordinator may lie, use SecAgg.
"""

from privehr.secure.he.aggregation import (
    CoordinatorAggregator,
    KeyHolder,
    SiteEncryptor,
    aggregate_error_bound,
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
from privehr.secure.he.payloads import (
    EncryptedAggregate,
    EncryptedUpdate,
    ScoringRequest,
    ScoringResponse,
)

__all__ = [
    "AGGREGATION_PARAMS",
    "SCORING_PARAMS",
    "AggregationError",
    "CeremonyRecord",
    "CiphertextError",
    "CkksBackend",
    "CkksParams",
    "ContextMismatchError",
    "CoordinatorAggregator",
    "DecryptionUnavailableError",
    "EncryptedAggregate",
    "EncryptedUpdate",
    "HeError",
    "HeParameterError",
    "KeyHolder",
    "PublicContext",
    "QueryBudget",
    "QueryBudgetExceededError",
    "ScoringClient",
    "ScoringHost",
    "ScoringRequest",
    "ScoringResponse",
    "ScoringStats",
    "SiteEncryptor",
    "aggregate_error_bound",
    "load_context",
    "score_encrypted",
    "scores_frame",
    "sha256_hex",
]
