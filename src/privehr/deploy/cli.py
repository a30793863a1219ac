# ruff: noqa: B008  (Typer declares options as argument defaults)
"""``deploy_app``: the deployment commands (mounted by the main ``privehr`` CLI).

    privehr provision --sites a,b,c --out DIR [--superlink HOST:PORT] [--insecure]
    privehr coordinator start --credentials DIR/coordinator [--port 9092] [--state DIR]
    privehr coordinator run STUDY.toml --config NAME --credentials DIR/coordinator --out RUN
    privehr site approve STUDY.toml --credentials DIR/sites/NAME
    privehr site start --store STORE.duckdb --credentials DIR/sites/NAME [--runtime-port 9094]
    privehr audit verify LOG [--roster roster.json] [--peer-log OTHER.jsonl ...]
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

deploy_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                         help="Real multi-site deployment on Flower.")
coordinator_app = typer.Typer(no_args_is_help=True, help="The coordinator: SuperLink and study runs.")
site_app = typer.Typer(no_args_is_help=True, help="A site: approve studies, run its SuperNode.")
audit_app = typer.Typer(no_args_is_help=True, help="Audit logs.")
deploy_app.add_typer(coordinator_app, name="coordinator")
deploy_app.add_typer(site_app, name="site")
deploy_app.add_typer(audit_app, name="audit")
console = Console()
err = Console(stderr=True)


def _fail(msg: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {msg}")
    return typer.Exit(code)


@deploy_app.command("provision")
def provision_cmd(
    sites: str = typer.Option(..., help="comma-separated site names, e.g. a,b,c"),
    out: Path = typer.Option(..., help="output folder (coordinator/ and sites/<name>/)"),
    superlink: str = typer.Option("127.0.0.1:9092", help="address sites dial: HOST:PORT"),
    host: list[str] = typer.Option([], help="extra DNS names / IPs for the SuperLink certificate"),
    insecure: bool = typer.Option(False, "--insecure", help="no TLS, no node authentication (rehearsal only)"),
    site_keys: list[Path] = typer.Option([], help="a site's <site>.public.json from `privehr site keygen` "
                                                  "(repeat per site): no private key is made for that site here"),
) -> None:
    """Create CA, SuperLink certificate, per-site keys and the roster."""
    import warnings

    from privehr.deploy.provision import INSECURE_WARNING, ProvisionError, provision
    from privehr.deploy.site_keys import load_public_keys

    if (out / "coordinator" / "roster.json").exists():
        raise _fail(f"out: {out} already holds a provisioned deployment. Provisioning it again would replace "
                    "every key: registered sites are locked out and existing audit logs no longer verify "
                    "against the new roster. Choose a new --out, use `privehr rotate` for one site's keys, "
                    "or delete the folder first.")
    if insecure:
        err.print(f"[bold red]WARNING:[/] {INSECURE_WARNING}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            public = [load_public_keys(p, insecure=insecure) for p in site_keys]
            res = provision([s.strip() for s in sites.split(",") if s.strip()], out, superlink=superlink,
                            hosts=host, insecure=insecure, site_keys={k["site"]: k for k in public})
    except ProvisionError as exc:
        raise _fail(str(exc)) from None
    console.print(f"coordinator files: {res.coordinator}")
    own = {k["site"] for k in public}
    for name, d in res.sites.items():
        how = ("public files only: copy them into the site's own keygen folder" if name in own
               else "copy this folder to the site; private keys are mode 0600")
        console.print(f"site {name}: {d}  ({how})")


@deploy_app.command("rotate")
def rotate_cmd(
    out: Path = typer.Option(..., help="the folder provision wrote"),
    site: str = typer.Option(..., help="whose keys to replace"),
    kind: list[str] = typer.Option(["supernode", "identity", "audit"], help="supernode | identity | audit"),
) -> None:
    """Replace a site's keys and rewrite the roster everywhere (see docs/deployment.md)."""
    from privehr.deploy.provision import ProvisionError, rotate_site

    try:
        new = rotate_site(out, site, tuple(kind))
    except ProvisionError as exc:
        raise _fail(str(exc)) from None
    console.print(f"rotated {sorted(new)} of {site}; copy the new roster.json to every site and "
                  f"{out / 'sites' / site} to {site}. A new SuperNode key must be registered "
                  "(restart `privehr coordinator start`) after unregistering the old node.")


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@coordinator_app.command("start")
def coordinator_start(
    credentials: Path = typer.Option(..., help="the coordinator/ folder from provision"),
    host: str = typer.Option("127.0.0.1", help="listen address (0.0.0.0 for remote sites)"),
    port: int = typer.Option(9092, help="the SuperLink's single port"),
    state: Path = typer.Option(Path("superlink-state"), help="SuperLink database + logs + FLWR_HOME"),
) -> None:
    """Start the SuperLink (TLS + SuperNode auth, persistent registrations) and register sites."""
    from privehr.deploy import launch
    from privehr.deploy.provision import Roster

    if not (credentials / "roster.json").exists():
        raise _fail(f"credentials: {credentials} holds no roster.json; pass the coordinator/ folder "
                    "written by `privehr provision`")
    if not _port_free(host, port):
        raise _fail(f"port: {host}:{port} is already in use (another SuperLink still running?); stop it or pass "
                    "another --port (and give the sites that address)")
    roster = Roster.load(credentials / "roster.json")
    state.mkdir(parents=True, exist_ok=True)
    link = launch.start("superlink", launch.superlink_argv(credentials, host=host, port=port,
                                                           database=state / "superlink.db",
                                                           insecure=roster.insecure),
                        state / "superlink.log", state / "flwr-home")
    try:
        try:
            link.wait_for("Uvicorn running", 60)
        except launch.LaunchError as exc:
            raise _fail(f"the SuperLink did not start: {exc}", code=1) from None
        dial = f"127.0.0.1:{port}" if host in ("0.0.0.0", "::") else f"{host}:{port}"  # noqa: S104
        launch.write_connection(state / "flwr-home", "privehr", dial,
                                None if roster.insecure else credentials / "ca.crt")
        if not roster.insecure:
            ids = launch.register_sites(credentials / "roster.json", credentials, state / "flwr-home", "privehr")
            console.print(f"registered SuperNodes: {ids}")
        console.print(f"SuperLink up on {host}:{port}; log {link.log}. Ctrl-C stops it.")
        _block_until_signal(link)
    finally:
        link.stop()


@coordinator_app.command("run")
def coordinator_run(
    study: Path = typer.Argument(..., help="the study TOML every site approved"),
    config: str = typer.Option(..., help="which [[configs]] entry to run"),
    credentials: Path = typer.Option(..., help="the coordinator/ folder from provision"),
    out: Path = typer.Option(..., help="run folder: model.npy, result.json, serverapp.log, app/ "
                                       "(the audit log is CREDENTIALS/audit.jsonl)"),
    state: Path = typer.Option(Path("superlink-state"), help="same --state as coordinator start"),
    min_sites: int = typer.Option(3, help="start once this many sites are connected"),
    timeout: float = typer.Option(1800.0, help="give up (and stop the run) after this many seconds"),
) -> None:
    """Submit a study to the running SuperLink and wait for it to finish."""
    from privehr.deploy import launch

    if not (state / "flwr-home" / "config.toml").exists():  # written by `coordinator start` once the SuperLink is up
        raise _fail(f"state: no running SuperLink under {state}. Start `privehr coordinator start --state {state}` "
                    "first, wait for 'SuperLink up', and pass the same --state here.")
    try:
        res = launch.run_deployed_study(study, config, credentials, out, state, min_sites=min_sites,
                                        timeout_s=timeout)
    except launch.LaunchError as exc:
        raise _fail(f"{exc}\nIs `privehr coordinator start --state {state}` still running?", code=1) from None
    console.print(f"run {res['run_id']}: {res['status']}")
    if res["status"] != "finished:completed":
        raise _fail(f"run did not complete: {res['details']} (log: {out / 'serverapp.log'})", code=1)


@site_app.command("keygen")
def site_keygen_cmd(
    site: str = typer.Option(..., help="this site's name, as the coordinator will list it"),
    out: Path = typer.Option(..., help="an empty folder: becomes this site's --credentials"),
    insecure: bool = typer.Option(False, "--insecure", help="no SuperNode key (rehearsal only)"),
) -> None:
    """Make this site's private keys here; send only <site>.public.json to the coordinator."""
    from privehr.deploy.provision import ProvisionError
    from privehr.deploy.site_keys import site_keygen

    try:
        public = site_keygen(site, out, insecure=insecure)
    except ProvisionError as exc:
        raise _fail(str(exc)) from None
    console.print(f"private keys in {out} (mode 0600, never leave this machine); send {public} to the "
                  "coordinator, then copy back ca.crt, roster.json and site.json from its sites/"
                  f"{site}/ folder into {out}")


@site_app.command("approve")
def site_approve(
    study: Path = typer.Argument(..., help="the study TOML to approve"),
    credentials: Path = typer.Option(..., help="this site's folder from provision"),
) -> None:
    """Pin a study's configuration hash; the site will answer only approved studies."""
    from privehr.deploy.approve import approve_file
    from privehr.deploy.site_protection import UnsupportedInDeployment

    try:
        a = approve_file(study, credentials)
    except UnsupportedInDeployment as exc:
        raise _fail(f"{study}: not approved: {exc}") from None
    console.print_json(json.dumps(a.summary))
    console.print(f"approved study {a.name!r}, hash {a.config_hash}")


@site_app.command("start")
def site_start(
    store: Path = typer.Option(..., help="this site's de-identified store (.duckdb)"),
    credentials: Path = typer.Option(..., help="this site's folder from provision"),
    runtime_port: int = typer.Option(9094, help="local port of the SuperNode's Runtime API"),
    superlink: str = typer.Option("", help="override the SuperLink address from site.json"),
    state: Path = typer.Option(Path("site-state"), help="SuperNode log and FLWR_HOME"),
) -> None:
    """Run this site's SuperNode (process isolation) and answer with the site's own privehr.

    The SuperNode is restarted whenever it exits (coordinator not up yet or restarted), so a
    site can be started before or after the coordinator. SIGTERM / Ctrl-C stops both.
    """
    import logging

    from privehr.deploy import launch

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("privehr").addHandler(handler)  # ours only: Flower logs on its own
    logging.getLogger("privehr").setLevel(logging.INFO)
    logging.getLogger("privehr").propagate = False  # the main CLI's root handler would print each line twice
    handled = launch.run_site(
        credentials, store, runtime_port=runtime_port, state=state, superlink=superlink,
        on_connect=lambda name: console.print(f"site {name} connected; answering with the installed privehr",
                                              highlight=False))
    console.print(f"site stopped after answering {handled} messages")


@audit_app.command("verify")
def audit_verify(
    log: Path = typer.Argument(..., help="an audit log (JSONL)"),
    roster: Path = typer.Option(None, help="roster.json: checks head signatures with the party's key"),
    peer_log: list[Path] = typer.Option([], help="another party's log that recorded our signed heads"),
) -> None:
    """Detect edited, removed, reordered or truncated entries; exit 1 if any."""
    from privehr.deploy.audit_log import read_entries, verify_log
    from privehr.deploy.provision import Roster

    entries = read_entries(log)
    party = entries[0].get("party") if entries else None
    key = Roster.load(roster).audit_key(party) if roster and party else None
    rep = verify_log(log, key=key, peer_logs=list(peer_log))
    for f in rep.findings:
        err.print(f"seq {f.seq}: {f.problem}")
    if not rep.ok:
        raise typer.Exit(1)
    signed = "signatures checked" if key else "signatures NOT checked (pass --roster)"
    console.print(f"{log}: {rep.entries} entries by {party!r}, chain intact, {signed}")


def _block_until_signal(proc) -> None:
    stop = {"flag": False}

    def _h(*_: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _h)
    signal.signal(signal.SIGINT, _h)
    while not stop["flag"] and proc.alive():
        time.sleep(0.5)


if __name__ == "__main__":  # python -m privehr.deploy.cli ... (used by tests and rehearsals)
    deploy_app(prog_name="privehr")
    sys.exit(0)
