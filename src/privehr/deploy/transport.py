"""The coordinator's ``Transport`` over a Flower 1.42 ``Grid`` (runs inside the ServerApp).

Each request becomes one ``query.privehr`` Flower message carrying our wire bytes opaquely
(see ``records``). The protocol's own per-stage deadline decides dropouts: we push all
messages, pull until every site answered or ``deadline_s`` passed, and report every site
without a usable reply as ``None``. Flower's heartbeat would take up to ~60 s to notice a dead
SuperNode; its error replies (e.g. code 5, NODE_UNAVAILABLE) count as dropouts when they come
sooner. Replies are matched by ``reply_to_message_id``, never by ``src_node_id`` (errors made
by the SuperLink carry the SuperLink's id). Messages get ``ttl`` = 2 × the deadline so an
abandoned request does not stay deliverable for Flower's default 12 h.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from privehr.deploy import records as R
from privehr.deploy.audit_log import AuditLog, SignedHead

log = logging.getLogger(__name__)

MIN_TTL_S = 60.0


class FlowerTransport:
    """``exchange(requests, stage=, deadline_s=) -> {site: bytes | None}`` over a Flower Grid."""

    def __init__(self, grid: Any, nodes: dict[str, int], *, study_hash: str, config: str,
                 audit: AuditLog | None = None, site_audit_keys: dict[str, Any] | None = None,
                 poll_s: float = 0.25, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.grid = grid
        self.nodes = dict(nodes)
        self.study_hash = study_hash
        self.config = config
        self.audit = audit
        self.site_audit_keys = site_audit_keys or {}
        self.poll_s = poll_s
        self._clock, self._sleep = clock, sleep
        self.round = 0
        self.dropouts: list[dict[str, Any]] = []

    def exclude(self, sites: list[str]) -> None:
        """Stop asking these sites (e.g. their privacy budget is exhausted)."""
        for s in sites:
            self.nodes.pop(s, None)

    def start_round(self, round_: int) -> None:
        self.round = round_

    def _message(self, site: str, data: bytes, stage: str, deadline_s: float):
        from flwr.app import ConfigRecord, Message, RecordDict

        head = self.audit.signed_head().to_bytes() if self.audit else b""
        rec = ConfigRecord({R.PAYLOAD: data, R.STUDY: self.study_hash, R.CONFIG: self.config, R.STAGE: stage,
                            R.HEAD: head})
        return Message(RecordDict({R.RECORD: rec}), dst_node_id=self.nodes[site], message_type=R.MESSAGE_TYPE,
                       group_id=f"round-{self.round}", ttl=max(2 * deadline_s, MIN_TTL_S))

    def exchange(self, requests: dict[str, bytes], *, stage: str, deadline_s: float) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = dict.fromkeys(requests)
        why: dict[str, str] = {s: "not connected" for s in requests if s not in self.nodes}
        msgs = [(s, self._message(s, b, stage, deadline_s)) for s, b in requests.items() if s in self.nodes]
        if self.audit:
            for s, _ in msgs:
                self.audit.message("out", peer=s, study=self.study_hash, round_=self.round, kind=stage,
                                   data=requests[s])
        ids = list(self.grid.push_messages([m for _, m in msgs])) if msgs else []
        pending = {}
        for (s, _), mid in zip(msgs, ids, strict=True):
            if mid:
                pending[mid] = s
            else:
                why[s] = "rejected by the SuperLink"
        t_end = self._clock() + deadline_s
        while pending:
            for reply in self.grid.pull_messages(list(pending)):
                site = pending.pop(reply.metadata.reply_to_message_id, None)
                if site is not None:
                    out[site], reason = self._accept(site, reply, stage)
                    if reason:
                        why[site] = reason
            if not pending or self._clock() >= t_end:
                break
            self._sleep(self.poll_s)
        for site in pending.values():
            why[site] = f"no reply within the {deadline_s:g} s deadline"
        for site, reason in why.items():
            self._dropped(site, stage, reason)
        return out

    def _accept(self, site: str, reply: Any, stage: str) -> tuple[bytes | None, str]:
        if reply.has_error():
            return None, f"flower error {reply.error.code}"
        try:
            rec = reply.content[R.RECORD]
            data = rec[R.PAYLOAD]
            head = rec.get(R.HEAD, b"")
        except (KeyError, TypeError):
            return None, "malformed reply"
        if not isinstance(data, bytes):
            return None, "malformed reply"
        if self.audit:
            if head:
                try:
                    self.audit.record_peer_head(SignedHead.from_bytes(head), self.site_audit_keys.get(site))
                except ValueError:
                    self.audit.append("note", text=f"malformed head from {site}")
            self.audit.message("in", peer=site, study=self.study_hash, round_=self.round, kind=stage, data=data)
        return data, ""

    def _dropped(self, site: str, stage: str, why: str) -> None:
        self.dropouts.append({"site": site, "stage": stage, "round": self.round, "why": why})
        log.info("site %s dropped at stage %s round %d (%s)", site, stage, self.round, why)
        if self.audit:
            self.audit.append("note", peer=site, round=self.round, kind=stage, text=f"dropped: {why}")
