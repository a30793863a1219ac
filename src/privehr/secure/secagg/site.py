"""The site's side of SecAgg/SecAgg+: an explicit state machine over the five stages.

Threat model: the coordinator may lie (substitute keys, invent sites, tell sites different
survivor sets, send different models, ask for both share kinds of one site); other sites may
send garbage. The site trusts only its own roster of identity keys. It aborts, revealing no
share, on any inconsistency. Every secret (X25519 private keys, the self-mask seed, the shares
it holds, its input) lives in this object only -- never in payloads, transport state or logs.

Not protected: a coordinator colluding with ``t`` or more sites of one neighbourhood can
reconstruct that site's secrets (the threshold assumption); the sum itself is released.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.secure.secagg import constants as c
from privehr.secure.secagg.config import SecAggConfig
from privehr.secure.secagg.errors import SecAggAborted, SecAggCryptoError
from privehr.secure.secagg.graph import is_connected, neighbourhoods, share_points
from privehr.secure.secagg.keys import (
    CryptoCheckFailed,
    channel_key,
    commit_seed,
    new_x25519,
    open_share,
    pair_mask_seed,
    private_raw,
    public_raw,
    seal_share,
    self_mask_seed,
    verify_signature,
)
from privehr.secure.secagg.messages import (
    SIGNATURE_BYTES,
    Payload,
    advert_statement,
    check_advert,
    consistency_statement,
    require_bytes_map,
    require_ids,
    transcript_hash,
)
from privehr.secure.secagg.prg import MaskExpander
from privehr.secure.secagg.shamir import SHARE_BYTES, RandomSource, decode_share, split

_DONE = "done"


class SecAggSite:
    """One site in one round. Call ``set_input`` before the masked-input stage.

    ``handle(stage, payload)`` answers the coordinator's payload for ``stage``; stages must come
    in protocol order, and after an abort every call raises ``SecAggAborted``.
    """

    def __init__(
        self,
        site_id: str,
        identity_key: Ed25519PrivateKey,
        roster: Mapping[str, bytes],
        config: SecAggConfig,
        rng: RandomSource = secrets,
    ) -> None:
        if site_id not in roster:
            raise ValueError(f"site_id={site_id!r} is not in the roster; fix: provision it")
        if identity_key.public_key().public_bytes_raw() != roster[site_id]:
            raise ValueError(f"identity_key of {site_id!r} does not match its roster entry")
        self.site_id = site_id
        self.config = config
        self._identity = identity_key
        self._roster = dict(roster)
        self._rng = rng
        self._cfg = config.digest()
        self._next = c.STAGE_ADVERTISE
        self._input: np.ndarray | None = None
        self._held: dict[str, tuple[bytes, bytes]] = {}  # owner -> (sk share, b share)
        self._revealed: dict[str, str] = {}  # owner -> share kind revealed
        self._channel: dict[str, bytes] = {}  # peer -> AES-GCM key of the share channel
        self._pair_seeds: dict[str, bytes] = {}  # peer -> pairwise mask seed

    # -- public API ---------------------------------------------------------------------------
    @property
    def expected_stage(self) -> str:
        return self._next

    def set_input(self, vector: np.ndarray) -> None:
        """The quantised update: ``dim`` unsigned words, each < 2**bits."""
        arr = np.asarray(vector)
        cfg = self.config
        if arr.shape != (cfg.dim,) or arr.dtype.kind != "u":
            raise ValueError(
                f"input of {self.site_id!r}: expected shape ({cfg.dim},) unsigned ints, got "
                f"shape {arr.shape} dtype {arr.dtype}; fix: quantise with privehr.secure.quantize"
            )
        if cfg.bits < 64 and arr.size and int(arr.max()) > cfg.modulus_mask:
            raise ValueError(
                f"input of {self.site_id!r}: a word exceeds 2**{cfg.bits}-1; fix: encode mod 2^b"
            )
        self._input = arr.astype(cfg.word_dtype, copy=True)

    def handle(
        self, stage: str, payload: Mapping[str, Any], *, model_digest: bytes | None = None
    ) -> Payload:
        """Answer ``payload`` for ``stage``; ``model_digest`` (advertise only) is the digest of
        the global model this site received, computed locally (model_hash_check)."""
        if not isinstance(payload, Mapping):
            self._abort()
            raise SecAggAborted(stage, "malformed payload: not a dict")
        if model_digest is not None and (
            not isinstance(model_digest, bytes) or len(model_digest) > 64
        ):
            raise ValueError("model_digest: expected at most 64 bytes (e.g. a SHA-256 digest)")
        if self._next != stage:
            reason = f"stage out of order: expected {self._next!r}"
            self._abort()
            raise SecAggAborted(stage, reason)
        try:
            if payload.get(c.KEY_STAGE, stage) != stage:
                raise SecAggAborted(stage, "payload names another stage")
            if payload.get(c.KEY_ROUND) != self.config.round_id:
                raise SecAggAborted(stage, "payload carries another round id")
            handler = {
                c.STAGE_ADVERTISE: lambda: self._advertise(model_digest or b""),
                c.STAGE_SHARE: lambda: self._share(payload),
                c.STAGE_MASKED: lambda: self._masked(payload),
                c.STAGE_CONSISTENCY: lambda: self._consistency(payload),
                c.STAGE_UNMASK: lambda: self._unmask(payload),
            }[stage]
            reply = handler()
        except SecAggAborted:
            self._abort()
            raise
        except CryptoCheckFailed as exc:
            self._abort()
            raise SecAggCryptoError(stage) from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._abort()
            raise SecAggAborted(stage, f"malformed payload ({type(exc).__name__})") from exc
        i = c.STAGES.index(stage)
        self._next = c.STAGES[i + 1] if i + 1 < len(c.STAGES) else _DONE
        reply[c.KEY_STAGE] = stage
        return reply

    # -- stages -------------------------------------------------------------------------------
    def _advertise(self, model_digest: bytes) -> Payload:
        self._c_sk = new_x25519(self._rng)
        self._s_sk = new_x25519(self._rng)
        self._b = self._rng.token_bytes(32)
        advert = {
            c.KEY_C_PK: public_raw(self._c_sk),
            c.KEY_S_PK: public_raw(self._s_sk),
            c.KEY_COMMIT: commit_seed(self._b, self._cfg, self.site_id),
            c.KEY_MODEL_DIGEST: bytes(model_digest),
        }
        advert[c.KEY_SIGNATURE] = self._identity.sign(
            advert_statement(self._cfg, self.site_id, advert)
        )
        self._advert = advert
        return dict(advert)

    def _share(self, payload: Mapping[str, Any]) -> Payload:
        stage = c.STAGE_SHARE
        raw = payload.get(c.KEY_ADVERTISED)
        if not isinstance(raw, Mapping):
            raise SecAggAborted(stage, f"malformed payload: {c.KEY_ADVERTISED!r} must be a dict")
        unknown = sorted(sid for sid in raw if sid not in self._roster)
        if unknown:
            raise SecAggAborted(stage, f"advertised sites not in the local roster: {unknown}")
        adverts = {sid: check_advert(stage, a) for sid, a in raw.items()}
        if adverts.get(self.site_id) != self._advert:
            raise SecAggCryptoError(stage, self.site_id)
        for sid, advert in adverts.items():
            try:
                verify_signature(
                    self._roster[sid],
                    advert[c.KEY_SIGNATURE],
                    advert_statement(self._cfg, sid, advert),
                )
            except CryptoCheckFailed as exc:
                raise SecAggCryptoError(stage, sid) from exc
        mine = self._advert[c.KEY_MODEL_DIGEST]
        differing = sorted(s for s, a in adverts.items() if a[c.KEY_MODEL_DIGEST] != mine)
        if differing:
            raise SecAggAborted(stage, f"model digest differs from this site's at {differing}")
        self._need_members(stage, adverts, "advertised")
        self._adverts = adverts
        self._transcript = transcript_hash(self._cfg, adverts)
        graph = neighbourhoods(list(adverts), self.config.effective_degree, self._transcript)
        self._graph = graph
        self._neighbours = graph[self.site_id]
        points = share_points(list(adverts))
        holders = sorted(self._neighbours | {self.site_id})
        xs = [points[h] for h in holders]
        t = self.config.threshold
        sk_shares = split(private_raw(self._s_sk), t, xs, self._rng)
        b_shares = split(self._b, t, xs, self._rng)
        out: dict[str, bytes] = {}
        # Both agreements per neighbour happen here, once: the channel key is reused to open the
        # shares relayed back, and the pairwise seeds leave only PRG work for the masking stage.
        for holder in holders:
            x = points[holder]
            if holder == self.site_id:
                self._held[holder] = (sk_shares[x], b_shares[x])
                continue
            self._pair_seeds[holder] = pair_mask_seed(
                self._s_sk, adverts[holder][c.KEY_S_PK], self._cfg, self.site_id, holder
            )
            key = channel_key(
                self._c_sk, adverts[holder][c.KEY_C_PK], self._cfg, self.site_id, holder
            )
            self._channel[holder] = key
            out[holder] = seal_share(
                key, self._rng, self._cfg, self.site_id, holder, sk_shares[x] + b_shares[x]
            )
        self._my_x = points[self.site_id]
        return {c.KEY_CIPHERTEXTS: out}

    def _masked(self, payload: Mapping[str, Any]) -> Payload:
        stage = c.STAGE_MASKED
        u2 = set(require_ids(stage, payload, c.KEY_U2))
        if not u2 <= set(self._adverts) or self.site_id not in u2:
            raise SecAggAborted(stage, "share senders are not a subset of the advertised sites")
        self._need_members(stage, u2, "share senders")
        cts = require_bytes_map(stage, payload, c.KEY_CIPHERTEXTS, 12 + 2 * SHARE_BYTES + 16)
        expected = (u2 & self._neighbours) - {self.site_id}
        if set(cts) != expected:
            raise SecAggAborted(stage, "relayed ciphertexts do not match the share senders")
        for sender, blob in cts.items():
            try:
                plain = open_share(self._channel[sender], self._cfg, sender, self.site_id, blob)
                sk_share, b_share = plain[:SHARE_BYTES], plain[SHARE_BYTES:]
                if (
                    decode_share(sk_share)[0] != self._my_x
                    or decode_share(b_share)[0] != self._my_x
                ):
                    raise CryptoCheckFailed
            except (CryptoCheckFailed, ValueError) as exc:
                raise SecAggCryptoError(stage, sender) from exc
            self._held[sender] = (sk_share, b_share)
        if self._input is None:
            raise SecAggAborted(stage, f"no input set on {self.site_id!r}; call set_input first")
        self._u2 = u2
        cfg = self.config
        masked = self._input
        prg = MaskExpander(cfg.dim, cfg.word_dtype)
        masked += prg.expand(self_mask_seed(self._b, self._cfg, self.site_id))
        for peer in sorted(expected):
            mask = prg.expand(self._pair_seeds[peer])
            if self.site_id < peer:
                masked += mask
            else:
                masked -= mask
        self._input = None
        self._pair_seeds.clear()
        if cfg.bits not in (32, 64):
            masked &= masked.dtype.type(cfg.modulus_mask)
        return {c.KEY_MASKED: masked}

    def _consistency(self, payload: Mapping[str, Any]) -> Payload:
        stage = c.STAGE_CONSISTENCY
        u3 = require_ids(stage, payload, c.KEY_SURVIVORS)
        if not set(u3) <= self._u2 or self.site_id not in u3:
            raise SecAggAborted(stage, "survivors are not a subset of the share senders")
        self._need_members(stage, u3, "survivors")
        if not is_connected(self._graph, u3):
            raise SecAggAborted(
                stage, "survivor graph is disconnected: unmasking would expose partial sums"
            )
        self._u3 = frozenset(u3)
        statement = consistency_statement(self._cfg, self._transcript, self._u3)
        return {c.KEY_SIGNATURE: self._identity.sign(statement)}

    def _unmask(self, payload: Mapping[str, Any]) -> Payload:
        stage = c.STAGE_UNMASK
        survivors = set(require_ids(stage, payload, c.KEY_SURVIVORS))
        dropped = set(require_ids(stage, payload, c.KEY_DROPPED))
        both = sorted(survivors & dropped)
        if both:
            raise SecAggAborted(stage, f"refused: asked for both share kinds of {both}")
        if survivors != self._u3:
            raise SecAggAborted(stage, "survivor set differs from the one this site signed")
        if dropped != self._u2 - self._u3:
            raise SecAggAborted(stage, "dropped set is not share senders minus survivors")
        sigs = require_bytes_map(stage, payload, c.KEY_SIGNATURES, SIGNATURE_BYTES)
        if not set(sigs) <= self._u3 or len(sigs) < self.config.threshold:
            raise SecAggAborted(stage, "fewer than t consistency signatures from survivors")
        statement = consistency_statement(self._cfg, self._transcript, self._u3)
        for sid, sig in sigs.items():
            try:
                verify_signature(self._roster[sid], sig, statement)
            except CryptoCheckFailed as exc:
                raise SecAggCryptoError(stage, sid) from exc
        b_out: dict[str, bytes] = {}
        sk_out: dict[str, bytes] = {}
        for owner, (sk_share, b_share) in sorted(self._held.items()):
            kind = "b" if owner in survivors else "sk" if owner in dropped else None
            if kind is None:
                continue
            if self._revealed.setdefault(owner, kind) != kind:  # defence in depth
                raise SecAggAborted(stage, f"refused: both share kinds of {owner!r}")
            (b_out if kind == "b" else sk_out)[owner] = b_share if kind == "b" else sk_share
        self._held.clear()
        self._channel.clear()
        return {c.KEY_B_SHARES: b_out, c.KEY_SK_SHARES: sk_out}

    # -- helpers ------------------------------------------------------------------------------
    def _need_members(self, stage: str, members: Any, what: str) -> None:
        if len(members) < self.config.min_survivors:
            raise SecAggAborted(
                stage,
                f"only {len(members)} {what}; a round needs at least "
                f"max(t, 3) = {self.config.min_survivors}",
            )

    def _abort(self) -> None:
        self._next = "aborted"
        self._held.clear()
        self._pair_seeds.clear()
        self._channel.clear()
        self._input = None
