"""Wire records of the HE protocols: frozen values that become plain payload dicts.

Federation routes payloads as ``dict[str, Any]`` of None/bool/int/float/str/bytes/list/dict;
every record here converts with ``to_payload()`` / ``from_payload()``. Ciphertexts travel as
bytes. The wire keys and kinds live in this one module (Flower's ``secaggplus_constants``
habit); ``from_payload`` checks kind and version and names the missing key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from privehr.secure.he.errors import HeParameterError

PAYLOAD_VERSION = 1
KIND_UPDATE = "he.update"
KIND_AGGREGATE = "he.aggregate"
KIND_SCORING_REQUEST = "he.scoring.request"
KIND_SCORING_RESPONSE = "he.scoring.response"


def _check_kind(payload: dict[str, Any], kind: str, keys: tuple[str, ...]) -> None:
    if not isinstance(payload, dict):
        raise HeParameterError([f"payload must be a dict, got {type(payload).__name__}"])
    problems = []
    if payload.get("kind") != kind:
        problems.append(f"kind={payload.get('kind')!r} must be {kind!r}; pass the right message")
    if payload.get("version") != PAYLOAD_VERSION:
        problems.append(
            f"version={payload.get('version')!r} must be {PAYLOAD_VERSION}; the peer runs an "
            "incompatible privehr"
        )
    problems += [f"{kind} payload lacks key {k!r}" for k in keys if k not in payload]
    if problems:
        raise HeParameterError(problems)


def _chunks(value: Any, field: str) -> tuple[bytes, ...]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(c, bytes | bytearray) for c in value
    ):
        raise HeParameterError([f"{field} must be a list of bytes (one ciphertext per chunk)"])
    return tuple(bytes(c) for c in value)


@dataclass(frozen=True)
class ContributionProof:
    """A site's secret tokens sealed to the key holder, optionally signed by the site.

    See :mod:`privehr.secure.he.contribution`: it lets the key holder check that an aggregate
    sums exactly the claimed sites. ``signature`` is empty when no roster is in use.
    """

    site_id: str
    round_id: str
    sealed_tokens: bytes
    signature: bytes = b""

    def to_dict(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "round_id": self.round_id,
            "sealed_tokens": self.sealed_tokens,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ContributionProof:
        keys = ("site_id", "round_id", "sealed_tokens", "signature")
        if not isinstance(data, dict) or any(k not in data for k in keys):
            raise HeParameterError([f"a contribution proof must be a dict with keys {keys}"])
        if not isinstance(data["sealed_tokens"], bytes | bytearray) or not isinstance(
            data["signature"], bytes | bytearray
        ):
            raise HeParameterError(["sealed_tokens and signature must be bytes"])
        return cls(
            site_id=str(data["site_id"]),
            round_id=str(data["round_id"]),
            sealed_tokens=bytes(data["sealed_tokens"]),
            signature=bytes(data["signature"]),
        )


@dataclass(frozen=True)
class EncryptedUpdate:
    """One site's pre-weighted, chunked, encrypted update (what the site sends).

    ``length`` is the update's length; the chunks also carry the contribution tokens after it.
    """

    site_id: str
    round_id: str
    context_sha256: str
    length: int
    weight: float
    chunks: tuple[bytes, ...]
    proof: ContributionProof

    @property
    def nbytes(self) -> int:
        """Ciphertext bytes on the wire (the chunks only)."""
        return sum(len(c) for c in self.chunks)

    def to_payload(self) -> dict[str, Any]:
        return {
            "kind": KIND_UPDATE,
            "version": PAYLOAD_VERSION,
            "site_id": self.site_id,
            "round_id": self.round_id,
            "context_sha256": self.context_sha256,
            "length": self.length,
            "weight": self.weight,
            "chunks": list(self.chunks),
            "proof": self.proof.to_dict(),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> EncryptedUpdate:
        keys = ("site_id", "round_id", "context_sha256", "length", "weight", "chunks", "proof")
        _check_kind(payload, KIND_UPDATE, keys)
        return cls(
            site_id=str(payload["site_id"]),
            round_id=str(payload["round_id"]),
            context_sha256=str(payload["context_sha256"]),
            length=int(payload["length"]),
            weight=float(payload["weight"]),
            chunks=_chunks(payload["chunks"], "chunks"),
            proof=ContributionProof.from_dict(payload["proof"]),
        )


@dataclass(frozen=True)
class EncryptedAggregate:
    """The coordinator's encrypted weighted sum, with the clear metadata needed to decode it.

    ``site_ids`` and ``total_weight`` are the coordinator's *claims*; the key holder cannot
    verify from the ciphertext that it really is the sum over those sites.
    """

    round_id: str
    context_sha256: str
    length: int
    total_weight: float
    site_ids: tuple[str, ...]
    chunks: tuple[bytes, ...]
    proofs: tuple[ContributionProof, ...]

    @property
    def nbytes(self) -> int:
        return sum(len(c) for c in self.chunks)

    def to_payload(self) -> dict[str, Any]:
        return {
            "kind": KIND_AGGREGATE,
            "version": PAYLOAD_VERSION,
            "round_id": self.round_id,
            "context_sha256": self.context_sha256,
            "length": self.length,
            "total_weight": self.total_weight,
            "site_ids": list(self.site_ids),
            "chunks": list(self.chunks),
            "proofs": [p.to_dict() for p in self.proofs],
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> EncryptedAggregate:
        keys = (
            "round_id",
            "context_sha256",
            "length",
            "total_weight",
            "site_ids",
            "chunks",
            "proofs",
        )
        _check_kind(payload, KIND_AGGREGATE, keys)
        if not isinstance(payload["proofs"], list | tuple):
            raise HeParameterError(["proofs must be a list of contribution-proof dicts"])
        return cls(
            round_id=str(payload["round_id"]),
            context_sha256=str(payload["context_sha256"]),
            length=int(payload["length"]),
            total_weight=float(payload["total_weight"]),
            site_ids=tuple(str(s) for s in payload["site_ids"]),
            chunks=_chunks(payload["chunks"], "chunks"),
            proofs=tuple(ContributionProof.from_dict(p) for p in payload["proofs"]),
        )


@dataclass(frozen=True)
class ScoringRequest:
    """A scoring site's encrypted features: per batch of up to N/2 patients, one ciphertext per
    feature (patient i of the batch sits in slot i of every feature's ciphertext)."""

    site_id: str
    context_sha256: str
    n_patients: int
    n_features: int
    batches: tuple[tuple[bytes, ...], ...]

    @property
    def nbytes(self) -> int:
        return sum(len(c) for batch in self.batches for c in batch)

    def to_payload(self) -> dict[str, Any]:
        return {
            "kind": KIND_SCORING_REQUEST,
            "version": PAYLOAD_VERSION,
            "site_id": self.site_id,
            "context_sha256": self.context_sha256,
            "n_patients": self.n_patients,
            "n_features": self.n_features,
            "batches": [list(b) for b in self.batches],
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ScoringRequest:
        keys = ("site_id", "context_sha256", "n_patients", "n_features", "batches")
        _check_kind(payload, KIND_SCORING_REQUEST, keys)
        batches = payload["batches"]
        if not isinstance(batches, list | tuple):
            raise HeParameterError(["batches must be a list of lists of bytes"])
        return cls(
            site_id=str(payload["site_id"]),
            context_sha256=str(payload["context_sha256"]),
            n_patients=int(payload["n_patients"]),
            n_features=int(payload["n_features"]),
            batches=tuple(_chunks(b, "batches[i]") for b in batches),
        )


@dataclass(frozen=True)
class ScoringResponse:
    """Encrypted logits: one ciphertext per batch, patient i of the batch in slot i."""

    n_patients: int
    chunks: tuple[bytes, ...]

    @property
    def nbytes(self) -> int:
        return sum(len(c) for c in self.chunks)

    def to_payload(self) -> dict[str, Any]:
        return {
            "kind": KIND_SCORING_RESPONSE,
            "version": PAYLOAD_VERSION,
            "n_patients": self.n_patients,
            "chunks": list(self.chunks),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ScoringResponse:
        _check_kind(payload, KIND_SCORING_RESPONSE, ("n_patients", "chunks"))
        return cls(
            n_patients=int(payload["n_patients"]), chunks=_chunks(payload["chunks"], "chunks")
        )
