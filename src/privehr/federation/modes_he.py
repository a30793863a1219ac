"""FedAvg under CKKS homomorphic encryption (TenSEAL, behind ``privehr.secure.he``).

One designated site (first in the roster's sorted names) is the key holder. Set-up is two
messages, the same in the simulator and a deployment:

1. ``he.ceremony`` to the key holder: it runs the key ceremony, keeps the secret context in its
   own process, and returns the public context with the ceremony record, *signed with its
   identity key* over (study, record digest).
2. ``he.context`` to every site: each site checks that signature against the roster it holds
   and pins the record's context SHA-256. A coordinator that substitutes a context whose secret
   key it holds, or replays another study's ceremony, is refused (``PROTOCOL_ABORT``).

Rounds: sites pre-weight and encrypt explicitly clipped deltas; the coordinator only adds; the
key holder verifies contribution proofs (at least two rostered sites, fresh ciphertexts, each
round once), rounds the sum to 2^-20 (Li–Micciancio) and returns the weighted mean.
Trust model: the key holder could decrypt any single update it obtained; the coordinator alone
cannot. Where that is unacceptable, SecAgg.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.coordinator import RoundAborted
from privehr.federation.handlers import HandlerError
from privehr.federation.identities import Identities
from privehr.federation.modes import PlainProtection


def ceremony_statement(study: str, record_json: bytes) -> bytes:
    """What the key holder signs: this study's ceremony, nothing else (no cross-study replay)."""
    import hashlib

    return json.dumps({"purpose": "privehr-he-ceremony-v1", "study": study,
                       "record_sha256": hashlib.sha256(record_json).hexdigest()}, sort_keys=True).encode()


def verify_ceremony(roster: dict[str, bytes], holder: str, study: str, payload: dict[str, Any]):
    """The pinned record, if the agreed key holder signed this study's ceremony; else None."""
    from privehr.secure.he import CeremonyRecord, HeError

    try:
        Ed25519PublicKey.from_public_bytes(roster[holder]).verify(
            payload["signature"], ceremony_statement(study, payload["record"]))
        record = CeremonyRecord.from_dict(json.loads(payload["record"]))
    except (InvalidSignature, KeyError, ValueError, HeError):
        return None
    return record if record.holder_id == holder else None


class _HeSite:
    """One site's HE state: the key holder's secret context (there only) and its encryptor."""

    def __init__(self, name: str, holder_site: str, identities: Identities):
        self.name, self.holder_site, self.identities = name, holder_site, identities
        self.holder: Any = None  # the key holder's secret context: only ever set in its own process
        self._public = b""
        self.encryptor: Any = None

    def ceremony(self, handlers, msg) -> dict[str, Any]:
        from privehr.secure.he import AGGREGATION_PARAMS, KeyHolder

        if self.name != self.holder_site:
            raise HandlerError(P.ErrorCode.UNKNOWN_KIND)
        if self.holder is None:
            self.holder, self._public, _ = KeyHolder.create(
                AGGREGATION_PARAMS, holder_id=self.name, min_sites=2, roster=self.identities.roster)
        record = json.dumps(self.holder.record.to_dict(), sort_keys=True).encode()
        sig = self.identities.key(self.name).sign(ceremony_statement(msg.study, record))
        return {"context": self._public, "record": record, "signature": sig}

    def context(self, handlers, msg) -> dict[str, Any]:
        from privehr.secure.he import HeError, SiteEncryptor

        record = verify_ceremony(self.identities.roster, self.holder_site, msg.study, msg.payload)
        if record is None:
            raise HandlerError(P.ErrorCode.PROTOCOL_ABORT)
        try:  # load_context checks the context against the record's pinned SHA-256
            self.encryptor = SiteEncryptor(msg.payload["context"], record, site_id=self.name,
                                           signer=self.identities.key(self.name))
        except HeError:
            raise HandlerError(P.ErrorCode.PROTOCOL_ABORT) from None
        return {"pinned": record.context_sha256}

    def encrypt(self, delta, weight, round_id):
        if self.encryptor is None:
            raise HandlerError(P.ErrorCode.PROTOCOL_ABORT)  # no pinned ceremony yet
        return self.encryptor.encrypt(delta, weight, round_id=round_id).to_payload()

    def decrypt(self, aggregate):
        if self.holder is None:
            raise HandlerError(P.ErrorCode.PROTOCOL_ABORT)
        return self.holder.decrypt_aggregate(aggregate, mean=True)


class HeProtection(PlainProtection):
    request_kind = P.HE_TRAIN

    def __init__(self, cfg: StudyConfig, prep: Any, entry: ConfigEntry, identities: Identities | None = None):
        super().__init__(cfg, prep)
        self.entry = entry
        self.site_names = [s.name for s in prep.sites]
        self.key_holder_site = sorted(self.site_names)[0]
        # Identity keys per site (simulation: generated here, standing in for provisioning).
        self.identities = identities or Identities.simulated(self.site_names)
        self.clip = cfg.privacy.update_clip
        self.public_context: bytes = b""
        self.sha256 = ""
        self.pinned_by: list[str] = []
        self.last: dict[str, Any] = {}

    def site_plugins(self, site) -> dict[str, Any]:
        state = _HeSite(site.name, self.key_holder_site, self.identities)
        plugins: dict[str, Any] = {"he_ceremony": state.ceremony, "he_context": state.context,
                                   "he_encrypt": state.encrypt, "he_clip": self.clip}
        if site.name == self.key_holder_site:
            plugins["he_decrypt"] = state.decrypt
        return plugins

    def setup(self, coord) -> None:
        """Key ceremony at the key holder, then every site pins the signed record."""
        holder = self.key_holder_site
        out = coord.exchange(P.HE_CEREMONY, {holder: {}}, 0)
        if holder not in out:
            raise RoundAborted(f"the key holder {holder!r} did not run the HE key ceremony")
        payload = out[holder]
        record = verify_ceremony(self.identities.roster, holder, coord.study, payload)
        if record is None:
            raise RoundAborted(f"the key holder {holder!r} returned a ceremony its identity key did not sign")
        acks = coord.broadcast(P.HE_CONTEXT, {k: payload[k] for k in ("context", "record", "signature")}, 0)
        self.public_context, self.sha256 = payload["context"], record.context_sha256
        self.pinned_by = sorted(s for s, a in acks.items() if a.get("pinned") == self.sha256)

    def train_config(self, round_: int) -> dict[str, Any]:
        return {"mode": "he"}

    def aggregate(self, coord, round_, replies):
        from privehr.secure.he import CoordinatorAggregator

        if len(replies) < 2:
            raise RoundAborted(f"round {round_}: {len(replies)} encrypted update(s); the key holder needs 2+")
        first = next(iter(replies.values()))["update"]
        agg = CoordinatorAggregator(self.public_context, self.sha256, length=int(first["length"]),
                                    round_id=f"{coord.study}/{round_}")
        for r in replies.values():
            agg.add(r["update"])
        payload = agg.result().to_payload()
        out = coord.exchange(P.HE_DECRYPT, {self.key_holder_site: {"aggregate": payload}}, round_)
        if self.key_holder_site not in out:
            raise RoundAborted(f"round {round_}: the key holder did not return the aggregate; model unchanged")
        self.last = {"he_sites": sorted(replies), "ciphertext_bytes": int(sum(len(c) for c in first["chunks"]))
                     if "chunks" in first else None}
        return np.asarray(out[self.key_holder_site]["mean"], dtype=np.float64)

    def round_measurements(self) -> dict[str, Any]:
        return dict(self.last)

    def describe(self) -> dict[str, Any]:
        return {"kind": "he", "scheme": "CKKS (TenSEAL)", "key_holder": self.key_holder_site,
                "context_sha256": self.sha256, "public_context_bytes": len(self.public_context),
                "pinned_by": self.pinned_by, "update_clip": self.clip, "rounding": "2^-20 before release"}
