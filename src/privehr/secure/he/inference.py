"""Encrypted scoring: a site outside the federation scores its patients against a model it never
sees, and the model host never sees the patients or their scores.

Protocol (logistic regression, logits = X w + b; :class:`~.scoring_models.PolyMlp` likewise)::

    host = ScoringHost(LinearModel(w, b), budget=QueryBudget(10_000))
    client = ScoringClient("clinic-7")                  # own CKKS key, secret stays here
    host.register_site("clinic-7", client.public_context.data, client.public_context.sha256)
    request = client.encrypt_features(X)                # -> host
    response = host.score(request)                      # -> client (budget charged first)
    probabilities = client.decrypt_scores(response)     # sigmoid applied at the site

Packing: *patients in slots*. For each batch of up to N/2 patients the client sends one
ciphertext per feature j, slot i holding x[i, j]. For a linear model the host
computes ``sum_j ct_j * (w_j * mask) + b * mask`` with plaintext multiplications only: no
rotations, so no Galois keys (~35 MB) are ever generated or shipped, and no slot ever holds a
partial sum
(TenSEAL's ``dot`` leaves partial sums x_j w_j in the other slots, from which the key holder
reads every weight). ``mask`` is 1 on the declared patients' slots and 0 elsewhere, so padding
slots cannot be used as free extra queries and do not reveal the bias.

Re-randomisation: the host adds a fresh encryption, under the site's public key, of Gaussian
flooding noise (``flood_sigma``, default 2^-17 ~ 7.6e-6). The fresh encryption hides which
linear combination of the site's ciphertexts produced the result; the noise drowns the
rounding residue of the encoded weights. Scores stay within 1e-3 of plaintext (tested).

Query budget: d+1 exact scores determine a linear model, so the host charges every declared
patient against a per-site :class:`QueryBudget` *before* evaluating and refuses past it.
Not protected (stated plainly):

- A client that crafts its own ciphertexts can also use the imaginary half of each slot,
  obtaining up to two linear evaluations per charged patient; set budgets with that factor.
- Circuit privacy assumes the client generated its key honestly (SEAL's key generator).
  A client that crafts a trapdoored public key could undo the re-randomisation and solve for
  the weights from a single response; maliciously circuit-private HE is out of scope, so
  register only sites bound by an agreement, and treat the budget as the hard limit only
  against honest-key clients.
- The flooding noise is drawn from NumPy's PCG64 seeded from OS entropy (inject ``rng`` to
  control it); it is a heuristic circuit-privacy measure, not a proof.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from privehr.secure.he.backend import SCORING_PARAMS, CkksBackend, CkksParams, default_backend
from privehr.secure.he.ceremony import load_context, run_ceremony
from privehr.secure.he.errors import (
    CiphertextError,
    HeParameterError,
    QueryBudgetExceededError,
)
from privehr.secure.he.payloads import ScoringRequest, ScoringResponse
from privehr.secure.he.scoring_models import MLP_SCORING_PARAMS, LinearModel, PolyMlp

ScoringModel = LinearModel | PolyMlp

DEFAULT_FLOOD_SIGMA = 2.0**-17
MAX_FLOOD_SIGMA = 1e-4


@dataclass
class QueryBudget:
    """Per-site count of patients scored, with a hard limit. Explicit, serialisable state."""

    limit_per_site: int
    used: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lim = self.limit_per_site
        if isinstance(lim, bool) or not isinstance(lim, int) or lim < 1:
            raise HeParameterError(
                [f"limit_per_site={lim!r} must be an int >= 1 (patients a site may score)"]
            )

    def remaining(self, site_id: str) -> int:
        return self.limit_per_site - self.used.get(site_id, 0)

    def charge(self, site_id: str, n_patients: int) -> None:
        """Record ``n_patients`` for ``site_id`` or raise without recording anything."""
        if n_patients > self.remaining(site_id):
            raise QueryBudgetExceededError(
                f"site {site_id!r} asked to score {n_patients} patient(s) but has "
                f"{self.remaining(site_id)} of its {self.limit_per_site} left; d+1 exact scores "
                "determine a linear model, so the host refuses. Agree a larger budget with the "
                "model owner or score fewer patients"
            )
        self.used[site_id] = self.used.get(site_id, 0) + n_patients

    def to_dict(self) -> dict[str, Any]:
        return {"limit_per_site": self.limit_per_site, "used": dict(self.used)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryBudget:
        used = {str(k): int(v) for k, v in dict(data.get("used", {})).items()}
        return cls(limit_per_site=int(data["limit_per_site"]), used=used)


def _check_features(x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise HeParameterError(
            [f"features have shape {arr.shape}; expected (n_patients, n_features) with both > 0"]
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise HeParameterError(["features must be finite numbers; impute missing values first"])
    return arr.astype(np.float64)


class ScoringClient:
    """The scoring site: owns the key, encrypts features, decrypts its own scores.

    For a :class:`PolyMlp` host use ``ScoringClient.for_model(site_id, model)`` (N=16384 and
    relinearisation keys); the defaults fit logistic regression.
    """

    @classmethod
    def for_model(
        cls, site_id: str, model: ScoringModel, *, backend: CkksBackend | None = None
    ) -> ScoringClient:
        if model.needs_relin_keys:
            return cls(site_id, MLP_SCORING_PARAMS, relin_keys=True, backend=backend)
        return cls(site_id, SCORING_PARAMS, backend=backend)

    def __init__(
        self,
        site_id: str,
        params: CkksParams = SCORING_PARAMS,
        *,
        relin_keys: bool = False,
        backend: CkksBackend | None = None,
    ) -> None:
        if params.multiplicative_levels < 1:
            raise HeParameterError(
                [f"params={params!r} allow no plaintext multiplication; use (60, 40, 60)"]
            )
        self._backend = backend or default_backend()
        self._ctx, self.public_context, self.record = run_ceremony(
            params, site_id, backend=self._backend, relin_keys=relin_keys
        )
        self.site_id = site_id
        self.slots = params.slot_count

    def encrypt_features(self, features: np.ndarray) -> ScoringRequest:
        """Encrypt (n, d) features: per batch of <= N/2 patients, one full-slot ciphertext per
        feature (padding slots hold 0)."""
        x = _check_features(features)
        n, d = x.shape
        batches = []
        for start in range(0, n, self.slots):
            block = x[start : start + self.slots]
            cts = []
            for j in range(d):
                column = np.zeros(self.slots)
                column[: block.shape[0]] = block[:, j]
                ct = self._backend.encrypt(self._ctx, column)
                cts.append(self._backend.ciphertext_to_bytes(ct))
            batches.append(tuple(cts))
        return ScoringRequest(
            site_id=self.site_id,
            context_sha256=self.public_context.sha256,
            n_patients=n,
            n_features=d,
            batches=tuple(batches),
        )

    def decrypt_all_slots(self, response: ScoringResponse) -> np.ndarray:
        """Every slot of every returned ciphertext, shape (batches, N/2) -- for audits."""
        rows = []
        for blob in response.chunks:
            ct = self._backend.ciphertext_from_bytes(self._ctx, blob)
            values = self._backend.decrypt(self._ctx, ct)
            if values.shape != (self.slots,):
                raise CiphertextError("response ciphertext rejected")
            rows.append(values)
        return np.stack(rows)

    def decrypt_logits(self, response: ScoringResponse) -> np.ndarray:
        """Logits in input order."""
        slots = self.decrypt_all_slots(response)
        return slots.reshape(-1)[: response.n_patients].copy()

    def decrypt_scores(self, response: ScoringResponse) -> np.ndarray:
        """Probabilities (sigmoid of the logits) in input order."""
        return expit(self.decrypt_logits(response))


@dataclass
class _Registered:
    ctx: Any
    sha256: str
    slots: int


class ScoringHost:
    """The model host: evaluates its model (LinearModel or PolyMlp) on a registered site's
    ciphertexts. One site id = one budget: identities must come from an agreement (Sybil)."""

    def __init__(
        self,
        model: ScoringModel,
        *,
        budget: QueryBudget,
        flood_sigma: float = DEFAULT_FLOOD_SIGMA,
        rng: np.random.Generator | None = None,
        backend: CkksBackend | None = None,
    ) -> None:
        problems = []
        if not isinstance(model, LinearModel | PolyMlp):
            problems.append(
                f"model is a {type(model).__name__}; pass a LinearModel or PolyMlp "
                "(e.g. LinearModel.from_flat(get_flat(model), n_features))"
            )
        if isinstance(flood_sigma, bool) or not isinstance(flood_sigma, int | float) or not (
            0 < flood_sigma <= MAX_FLOOD_SIGMA
        ):
            problems.append(
                f"flood_sigma={flood_sigma!r} must be in (0, {MAX_FLOOD_SIGMA}]: > 0 so results "
                "are re-randomised, small so scores stay within 1e-3; use 2^-17"
            )
        if not isinstance(budget, QueryBudget):
            problems.append("budget must be a QueryBudget (the per-site patient limit)")
        if problems:
            raise HeParameterError(problems)
        self.model = model
        self.budget = budget
        self.flood_sigma = float(flood_sigma)
        self._rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
        self._backend = backend or default_backend()
        self._sites: dict[str, _Registered] = {}

    @property
    def n_features(self) -> int:
        return self.model.n_features

    def register_site(self, site_id: str, public_context: bytes, pinned_sha256: str) -> None:
        """Pin a scoring site's public context (refused if it carries a secret key)."""
        ctx = load_context(public_context, pinned_sha256, backend=self._backend)
        problems = []
        depth = self.model.depth
        if self._backend.multiplicative_levels(ctx) < depth:
            problems.append(
                f"site {site_id!r}: context allows {self._backend.multiplicative_levels(ctx)} "
                f"multiplication(s), this model needs {depth}; create the client with "
                "ScoringClient.for_model(site_id, model)"
            )
        if self.model.needs_relin_keys and not self._backend.has_relin_keys(ctx):
            problems.append(
                f"site {site_id!r}: this model squares ciphertexts and needs relinearisation "
                "keys; create the client with ScoringClient.for_model(site_id, model)"
            )
        if problems:
            raise HeParameterError(problems)
        self._sites[site_id] = _Registered(
            ctx, pinned_sha256.lower(), self._backend.slot_count(ctx)
        )

    def score(self, request: ScoringRequest | dict[str, Any]) -> ScoringResponse:
        """Charge the budget, then return encrypted logits (masked and re-randomised)."""
        if isinstance(request, dict):
            request = ScoringRequest.from_payload(request)
        site = self._sites.get(request.site_id)
        if site is None:
            raise HeParameterError(
                [f"site {request.site_id!r} is not registered; call register_site first"]
            )
        n, d = request.n_patients, request.n_features
        problems = []
        if request.context_sha256 != site.sha256:
            problems.append("request was encrypted under another context than the registered one")
        if d != self.n_features:
            problems.append(f"n_features={d}; this model takes {self.n_features}")
        if n < 1 or len(request.batches) != math.ceil(n / site.slots):
            problems.append(
                f"n_patients={n} needs {math.ceil(max(n, 0) / site.slots)} batch(es), "
                f"got {len(request.batches)}"
            )
        if any(len(batch) != d for batch in request.batches):
            problems.append(f"every batch must hold one ciphertext per feature ({d})")
        if problems:
            raise HeParameterError(problems)
        batches = []
        for batch in request.batches:
            cts = [self._backend.ciphertext_from_bytes(site.ctx, blob) for blob in batch]
            if any(self._backend.size(ct) != site.slots for ct in cts):
                raise CiphertextError("request ciphertext rejected")
            batches.append(cts)
        self.budget.charge(request.site_id, n)  # written before anything is released
        chunks = []
        for index, cts in enumerate(batches):
            active = min(site.slots, n - index * site.slots)
            mask = np.zeros(site.slots)
            mask[:active] = 1.0
            acc = self.model.evaluate(self._backend, cts, mask)
            flood = self._rng.normal(0.0, self.flood_sigma, size=site.slots)
            acc = self._backend.add(acc, self._backend.encrypt(site.ctx, flood))
            chunks.append(self._backend.ciphertext_to_bytes(acc))
        return ScoringResponse(n_patients=n, chunks=tuple(chunks))


@dataclass(frozen=True)
class ScoringStats:
    """What one in-process encrypted scoring run cost."""

    n_patients: int
    public_context_bytes: int
    request_bytes: int
    response_bytes: int
    encrypt_seconds: float
    evaluate_seconds: float
    decrypt_seconds: float


def score_encrypted(
    features: np.ndarray,
    model: ScoringModel,
    *,
    site_id: str = "scoring-site",
    budget: QueryBudget | None = None,
    rng: np.random.Generator | None = None,
    backend: CkksBackend | None = None,
) -> tuple[np.ndarray, ScoringStats]:
    """Run client and host in one process (single-machine ``privehr score --encrypted``, demo,
    bench). Returns probabilities in input order and the costs. The roles stay separate: only
    payload dicts pass between them, exactly as over a network."""
    be = backend or default_backend()
    budget = budget if budget is not None else QueryBudget(int(np.asarray(features).shape[0]))
    host = ScoringHost(model, budget=budget, rng=rng, backend=be)
    t0 = time.perf_counter()
    client = ScoringClient.for_model(site_id, model, backend=be)
    host.register_site(site_id, client.public_context.data, client.public_context.sha256)
    request = client.encrypt_features(features)
    t1 = time.perf_counter()
    response = host.score(request.to_payload())
    t2 = time.perf_counter()
    probabilities = client.decrypt_scores(ScoringResponse.from_payload(response.to_payload()))
    t3 = time.perf_counter()
    stats = ScoringStats(
        n_patients=request.n_patients,
        public_context_bytes=client.public_context.nbytes,
        request_bytes=request.nbytes,
        response_bytes=response.nbytes,
        encrypt_seconds=t1 - t0,
        evaluate_seconds=t2 - t1,
        decrypt_seconds=t3 - t2,
    )
    return probabilities, stats


def scores_frame(pseudonyms: Any, probabilities: np.ndarray) -> pd.DataFrame:
    """The file a scoring site keeps: one row per patient, ``patient`` (pseudonym) and
    ``score`` (probability), in input order."""
    ids = [str(p) for p in pseudonyms]
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if len(ids) != probs.size:
        raise HeParameterError(
            [
                f"{len(ids)} pseudonyms but {probs.size} scores; pass them in the same order as "
                "the features that were scored"
            ]
        )
    return pd.DataFrame({"patient": ids, "score": probs})
