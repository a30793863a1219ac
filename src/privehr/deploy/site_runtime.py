"""The site side of a deployment: approved study → own store → ``SiteNode``, with audit.

Why a long-lived object: a SecAgg round spans several messages and the site's secrets for it
(identity key, this round's masks) must live in one process the site controls. Flower starts
a fresh ClientApp process per message and ships its code from the coordinator; here instead
the site's own installed privehr holds the ``SiteNode`` in memory (see ``site_worker``).

Order of checks for every request, before anything touches the store:
1. the study hash must be in the site's approved list (else ``STUDY_NOT_APPROVED``);
2. the configuration name must exist in the site's *own* copy of that study;
3. only then is the store opened (once per study/configuration) and the request handled.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from privehr.deploy.approve import ApprovalList, StudyNotApproved
from privehr.deploy.audit_log import AuditKeys, AuditLog, SignedHead
from privehr.deploy.provision import Roster, load_identity_key
from privehr.federation import protocol as P
from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.site import SiteData, SiteNode
from privehr.federation.study import PreparedSite, site_delta
from privehr.federation.wire import Message, encode

log = logging.getLogger(__name__)


def load_site_data(store: Path, cfg: StudyConfig, name: str, index: int) -> PreparedSite:
    """Build the study's task from the site's own store, split as the simulator's ``prepare``.

    ``index`` is the site's position in the roster (sorted names): its split seed is
    ``study.seed + index``, so an in-process run over the same stores gives the same split.
    """
    from privehr.ehr.features import build_task_data
    from privehr.ehr.store import open_store
    from privehr.ehr.tasks import BUILTIN_TASKS
    from privehr.learning.split import patient_split

    store = Path(store)
    if not store.exists():
        raise FileNotFoundError(f"store: {store} does not exist; ingest the site's export first (privehr ingest)")
    con = open_store(store)
    try:
        td = build_task_data(con, BUILTIN_TASKS[cfg.study.task], None)
    finally:
        con.close()
    n_pat = len(np.unique(td.patient_id))
    tr, te = patient_split(td.patient_id, td.y, test_frac=cfg.study.test_fraction, seed=cfg.study.seed + index)
    data = SiteData(
        X_train=td.X[tr].astype(np.float64), y_train=td.y[tr].astype(np.float64), pid_train=td.patient_id[tr],
        X_test=td.X[te].astype(np.float64), y_test=td.y[te].astype(np.float64), pid_test=td.patient_id[te],
        groups_test={k: np.asarray(v)[te] for k, v in td.groups.items()},
    )
    return PreparedSite(name, store, data, n_pat, float(np.mean(td.y)))


@dataclass
class _Session:
    node: SiteNode
    ledger: Any


class SiteRuntime:
    """Answers privehr requests for one site. Holds its identity key, never another site's."""

    def __init__(self, credentials: Path, store: Path, *, audit_path: Path | None = None):
        self.credentials = Path(credentials)
        info = json.loads((self.credentials / "site.json").read_text(encoding="utf-8"))
        self.name: str = info["site"]
        self.store = Path(store)
        self.roster = Roster.load(self.credentials / "roster.json")
        if self.name not in self.roster.sites:
            raise ValueError(f"credentials: site {self.name!r} is not on its own roster; re-provision")
        self.index = self.roster.index(self.name)
        self.approvals = ApprovalList(self.credentials)
        self.audit = AuditLog(audit_path or self.credentials / "audit.jsonl", self.name,
                              AuditKeys.load(self.credentials / "audit.key"))
        self.audit.append("open", store=str(self.store))
        self._sessions: dict[tuple[str, str], _Session] = {}
        self.store_opened = 0  # how many times the store was read (tests check refusals keep it 0)

    # ------------------------------------------------------------------ entry point
    def handle(self, payload: bytes, *, study_hash: str, config: str, coordinator_head: bytes | None = None,
               stage: str = "") -> tuple[bytes, bytes]:
        """(reply bytes, our signed head). Never raises: failures become fixed error codes."""
        if coordinator_head:
            try:
                self.audit.record_peer_head(SignedHead.from_bytes(coordinator_head),
                                            self.roster.audit_key("coordinator"))
            except ValueError:
                self.audit.append("note", text="malformed coordinator head")
        self.audit.message("in", peer="coordinator", study=study_hash, round_=None, kind=stage, data=payload)
        try:
            session = self._session(study_hash, config)
        except StudyNotApproved:
            self.audit.append("refusal", study=study_hash, config=config, code=int(P.ErrorCode.STUDY_NOT_APPROVED))
            reply = self._error(P.ErrorCode.STUDY_NOT_APPROVED)
        except Exception as exc:  # noqa: BLE001 - fixed code out, type name in the local log only
            log.warning("site %s: could not start study %s: %s", self.name, study_hash[:12], type(exc).__name__)
            self.audit.append("refusal", study=study_hash, config=config, code=int(P.ErrorCode.INTERNAL))
            reply = self._error(P.ErrorCode.INTERNAL)
        else:
            before = len(session.ledger.entries())
            reply = session.node.handle(payload)
            code = session.node.last_error
            if code is not None:  # e.g. budget exhausted, privacy parameters not the approved ones
                self.audit.append("refusal", study=study_hash, config=config, code=int(code))
            for entry in session.ledger.entries()[before:]:
                # The ledger's running ε after this release ("inf" once anything non-private left).
                eps = float(entry.epsilon)
                self.audit.append("epsilon", study=study_hash, config=config, round=entry.round,
                                  release=entry.kind, ledger_seq=entry.seq,
                                  epsilon_total="inf" if math.isinf(eps) else eps)
        self.audit.message("out", peer="coordinator", study=study_hash, round_=None, kind=stage, data=reply)
        return reply, self.audit.signed_head().to_bytes()

    def close(self) -> None:
        self.audit.append("close")
        self.audit.signed_head()

    # ------------------------------------------------------------------ internals
    def _error(self, code: P.ErrorCode) -> bytes:
        return encode(Message(P.ERROR, "", 0, self.name, "coordinator", {"code": int(code)}))

    def _session(self, study_hash: str, config: str) -> _Session:
        key = (study_hash, config)
        if key in self._sessions:
            return self._sessions[key]
        cfg = self.approvals.load(study_hash)  # raises StudyNotApproved before any store access
        entry = next((c for c in cfg.configs if c.name == config), None)
        if entry is None or entry.method not in ("fedavg", "fedprox"):
            raise StudyNotApproved(study_hash)
        self.store_opened += 1
        site = load_site_data(self.store, cfg, self.name, self.index)
        session = self._build(cfg, entry, site, study_hash)
        self._sessions[key] = session
        self.audit.append("connect", study=study_hash, config=config, patients=None)
        return session

    def _build(self, cfg: StudyConfig, entry: ConfigEntry, site: PreparedSite, study_hash: str) -> _Session:
        from dp_accounting.dp_event import NonPrivateDpEvent

        from privehr.deploy.site_protection import site_plugins
        from privehr.federation.handlers import SiteHandlers
        from privehr.privacy.ledger import PrivacyLedger, ledger_path_for_store

        budget = cfg.privacy.budget_epsilon
        ledger = PrivacyLedger(ledger_path_for_store(self.store), site=self.name, delta=site_delta(site.n_patients),
                               epsilon_max=None if math.isinf(budget) else budget)
        study_id = f"{cfg.study.name}-{study_hash[:12]}"

        def charge(msg, release) -> None:
            event = release.event if release.event is not None else NonPrivateDpEvent()
            ledger.charge(event, study=study_id, config=entry.name, round=msg.round, kind=release.kind,
                          meta=release.meta)

        plugins = site_plugins(entry, cfg, site, load_identity_key(self.credentials), self.roster.identity_keys())
        handlers = SiteHandlers(site.data, model_kind=cfg.study.model, hidden=cfg.study.hidden, seed=cfg.study.seed,
                                n_boot=cfg.study.bootstrap, plugins=plugins)
        node = SiteNode(self.name, handlers, charge, ledger.check)  # pre-check: refuse before data is touched
        return _Session(node, ledger)
