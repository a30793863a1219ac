"""The Flower App: a ServerApp that drives a privehr study, and a ClientApp that refuses.

Flower ships this app (the FAB) from the SuperLink to every SuperNode. Both components are
thin shims over the *installed* privehr of whoever runs them:

- ``server_app`` runs on the coordinator (inside ``flwr-serverapp``): it reads the study, the
  roster and its audit key from paths in the run config, maps registered SuperNode names to
  sites, and drives the rounds with ``FlowerTransport`` (``driver.drive_study``).
- ``client_app`` exists because a Flower App must name one. Sites never run it: ``privehr site
  start`` uses ``--isolation process`` and answers with ``site_worker`` instead. If a SuperNode
  is started by hand without isolation, this shim answers every query with an error rather
  than touching anything local.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from privehr.deploy import records as R

log = logging.getLogger(__name__)

server_app = ServerApp()
client_app = ClientApp()


@client_app.query(R.QUERY_NAME)
def _refuse(msg: Message, context: Context) -> Message:
    return Message(Error(code=2, reason="privehr: run this site with `privehr site start` (process isolation)"),
                   reply_to=msg)


def discover_sites(grid: Grid, names: list[str], *, min_sites: int, wait_s: float,
                   poll_s: float = 1.0) -> dict[str, int]:
    """Map site names to node ids from SuperNode registrations (``--name`` at register time).

    Registered names are bound to each site's authentication key, so a node cannot claim
    another site's name. Unregistered (insecure rehearsal) nodes are asked ``whoami``.
    """
    from privehr.deploy.site_worker import WHOAMI

    t_end = time.monotonic() + wait_s
    found: dict[str, int] = {}
    asked: set[int] = set()
    while True:
        for info in grid.get_nodes():
            name = getattr(info, "name", "") or ""
            if name in names:
                found[name] = int(info.node_id)
            elif not name and info.node_id not in asked:
                asked.add(info.node_id)
                probe = Message(RecordDict({R.RECORD: ConfigRecord({R.STAGE: WHOAMI})}), dst_node_id=info.node_id,
                                message_type=R.MESSAGE_TYPE, ttl=60.0)
                for reply in grid.send_and_receive([probe], timeout=30.0):
                    if not reply.has_error():
                        site = str(reply.content[R.RECORD].get("site", ""))
                        if site in names:
                            found[site] = int(info.node_id)
        if len(found) >= len(names) or (len(found) >= min_sites and time.monotonic() >= t_end):
            return found
        if time.monotonic() >= t_end:
            raise RuntimeError(f"only {sorted(found)} of {names} connected within {wait_s:g} s; "
                               f"need at least {min_sites}")
        time.sleep(poll_s)


def run_server(grid: Grid, *, study: Path, config: str, credentials: Path, out: Path,
               min_sites: int, wait_s: float) -> dict[str, Any]:
    from privehr.deploy.audit_log import AuditKeys, AuditLog
    from privehr.deploy.driver import drive_study
    from privehr.deploy.provision import Roster
    from privehr.deploy.transport import FlowerTransport
    from privehr.federation.config import load_config

    cfg = load_config(study)
    entry = next((c for c in cfg.configs if c.name == config), None)
    if entry is None:
        raise ValueError(f"config: {config!r} is not in {study}; choose one of {[c.name for c in cfg.configs]}")
    h = cfg.config_hash()
    roster = Roster.load(credentials / "roster.json")
    out.mkdir(parents=True, exist_ok=True)
    # One continuous log per party (sites record its signed heads across runs), next to its keys.
    audit = AuditLog(credentials / "audit.jsonl", "coordinator", AuditKeys.load(credentials / "audit.key"))
    audit.append("open", study=h, config=config)
    try:
        nodes = discover_sites(grid, roster.names, min_sites=min_sites, wait_s=wait_s)
        for site, nid in sorted(nodes.items()):
            audit.append("connect", peer=site, node=nid, study=h)
        transport = FlowerTransport(grid, nodes, study_hash=h, config=config, audit=audit,
                                    site_audit_keys={s: roster.audit_key(s) for s in roster.names})
        study_id = f"{cfg.study.name}-{h[:12]}"
        t0 = time.perf_counter()
        res = drive_study(cfg, entry, transport, roster.identity_keys(), study_id)
    except Exception as exc:
        # A failed run still ends its chain on a signed head, so the log verifies and says why.
        audit.append("close", outcome="failed", error=type(exc).__name__)
        audit.signed_head()
        raise
    audit.append("close", outcome="completed")
    audit.signed_head()
    np.save(out / "model.npy", res.params)
    summary = {"audit_log": str(audit.path), "study_id": study_id, "config_hash": h, "config": config, "sites": sorted(nodes),
               "rounds": res.rounds, "dropouts": transport.dropouts, "metrics": res.metrics,
               "bytes": res.bytes, "seconds": time.perf_counter() - t0}
    (out / "result.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=_plain),
                                     encoding="utf-8")
    return summary


def _plain(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    run_server(grid, study=Path(str(rc["study"])), config=str(rc["config"]), credentials=Path(str(rc["credentials"])),
               out=Path(str(rc["out"])), min_sites=int(rc["min-sites"]), wait_s=float(rc["node-wait"]))
