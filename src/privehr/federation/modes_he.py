"""FedAvg under CKKS homomorphic encryption (TenSEAL, behind ``privehr.secure.he``).

One designated site is the key holder: it runs the key ceremony and is the only party that
can decrypt. Every site pins the public context's SHA-256 at set-up; the coordinator receives
the public context only, adds the sites' (pre-weighted, explicitly clipped) ciphertexts and
asks the key holder to decrypt the *aggregate*. The key holder verifies contribution proofs
(at least two rostered sites, fresh ciphertexts, each round once), rounds the sum to 2^-20
(Li–Micciancio) and returns the weighted mean. Trust model: the key holder could decrypt any
single update it obtained; the coordinator alone cannot. Where that is unacceptable, SecAgg.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.coordinator import RoundAborted
from privehr.federation.identities import Identities
from privehr.federation.modes import PlainProtection


class HeProtection(PlainProtection):
    request_kind = P.HE_TRAIN

    def __init__(self, cfg: StudyConfig, prep: Any, entry: ConfigEntry, identities: Identities | None = None):
        from privehr.secure.he import AGGREGATION_PARAMS, KeyHolder

        super().__init__(cfg, prep)
        self.entry = entry
        self.site_names = [s.name for s in prep.sites]
        self.key_holder_site = sorted(self.site_names)[0]
        # Identity keys per site (simulation: generated here, standing in for provisioning).
        self.identities = identities or Identities.simulated(self.site_names)
        roster = self.identities.roster
        # The ceremony runs at the key-holder site; only the public context and its hash leave it.
        self._holder, self.public_context, self.sha256 = KeyHolder.create(
            AGGREGATION_PARAMS, holder_id=self.key_holder_site, min_sites=2, roster=roster)
        self.record = self._holder.record
        self.clip = cfg.privacy.update_clip
        self.last: dict[str, Any] = {}

    def site_plugins(self, site) -> dict[str, Any]:
        from privehr.secure.he import SiteEncryptor

        encryptor = SiteEncryptor(self.public_context, self.record, site_id=site.name, signer=self.identities.key(site.name))
        plugins: dict[str, Any] = {
            "he_encrypt": lambda delta, weight, round_id: encryptor.encrypt(delta, weight, round_id=round_id).to_payload(),
            "he_clip": self.clip,
        }
        if site.name == self.key_holder_site:
            holder = self._holder
            plugins["he_decrypt"] = lambda aggregate: holder.decrypt_aggregate(aggregate, mean=True)
        return plugins

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
                "update_clip": self.clip, "rounding": "2^-20 before release"}
