"""Start and stop ``flower-superlink`` / ``flower-supernode`` with the right flags; submit runs.

Every process gets the environment of the Flower 1.42 notes: the venv's ``bin`` first on PATH
(the SuperLink starts ``flower-superexec`` and ``flwr-serverapp`` by name), telemetry and the
update check off, no ``uv sync`` at run time, and its own ``FLWR_HOME``. Readiness is a log
line awaited with a deadline; stopping signals the whole descendant tree (SuperExec and
ServerApp run in sessions of their own), TERM first and KILL after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
APP_PACKAGE = "privehrapp"


class LaunchError(RuntimeError):
    """A Flower process did not start or a command failed; names the process and its log."""


def flwr_env(flwr_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_HOME": str(flwr_home),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


@dataclass
class Proc:
    """One started Flower process, its log file, and how to stop it with everything it started."""

    name: str
    popen: subprocess.Popen
    log: Path
    offset: int = 0  # where this process's output starts in an appended log

    def output(self) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as fh:
            fh.seek(self.offset)
            return fh.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, text: str, timeout: float) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if text in self.output():
                return
            if not self.alive():
                raise LaunchError(f"{self.name} exited with code {self.popen.returncode}; see {self.log}")
            time.sleep(0.1)
        raise LaunchError(f"{self.name} not ready after {timeout:g} s (waited for {text!r}); see {self.log}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill this process and its descendants at once (a crash, for dropout tests)."""
        for pid in [self.popen.pid, *_descendants(self.popen.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        self.popen.wait(timeout=10)

    def stop(self, grace_s: float = 10.0) -> None:
        pids = [self.popen.pid, *_descendants(self.popen.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        t_end = time.monotonic() + grace_s
        while time.monotonic() < t_end and any(_exists(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def _exists(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start(name: str, argv: list[str], log: Path, flwr_home: Path) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    flwr_home.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    fh = log.open("ab")
    popen = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=flwr_env(flwr_home), start_new_session=True)
    fh.close()
    return Proc(name, popen, log, offset)


def superlink_argv(coord_dir: Path, *, host: str, port: int, database: Path | None, insecure: bool) -> list[str]:
    argv = [str(VENV_BIN / "flower-superlink"), "--host", host, "--port", str(port),
            "--disable-runtime-dependency-installation"]
    if insecure:
        argv.append("--insecure")
    else:
        argv += ["--ssl-ca-certfile", str(coord_dir / "ca.crt"), "--ssl-certfile", str(coord_dir / "server.pem"),
                 "--ssl-keyfile", str(coord_dir / "server.key"), "--enable-supernode-auth"]
    if database is not None:
        argv += ["--database", str(database)]  # registrations survive a coordinator restart
    return argv


def supernode_argv(site_dir: Path, *, superlink: str, runtime_port: int, insecure: bool,
                   max_wait_s: float = 60.0) -> list[str]:
    """``--isolation process``: the SuperNode runs no app code; ``site_worker`` answers instead."""
    name = json.loads((site_dir / "site.json").read_text(encoding="utf-8"))["site"]
    argv = [str(VENV_BIN / "flower-supernode"), "--superlink", superlink, "--isolation", "process",
            "--host", "127.0.0.1", "--port", str(runtime_port), "--max-wait-time", str(max_wait_s),
            "--node-config", f'site="{name}"']
    if insecure:
        argv.append("--insecure")
    else:
        argv += ["--root-certificates", str(site_dir / "ca.crt"),
                 "--auth-supernode-private-key", str(site_dir / "supernode.key")]
    return argv


def write_connection(flwr_home: Path, name: str, address: str, ca: Path | None) -> None:
    """The ``flwr`` CLI's connection table ($FLWR_HOME/config.toml), absolute CA path."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f'default = "{name}"', f"[superlink.{name}]", f'address = "{address}"']
    lines.append(f'root-certificates = "{ca.resolve()}"' if ca else "insecure = true")
    (flwr_home / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def flwr_cli(args: list[str], flwr_home: Path, *, timeout: float = 60.0, check: bool = True) -> Any:
    """Run ``flwr ARGS --format json`` and return the parsed JSON."""
    res = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(VENV_BIN / "flwr"), *args, "--format", "json"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, env=flwr_env(flwr_home), timeout=timeout, check=False)
    try:
        doc = json.loads(res.stdout) if res.stdout.strip() else {}
    except json.JSONDecodeError:
        doc = {"success": False, "error-message": res.stdout[-500:]}
    if check and (res.returncode != 0 or doc.get("success") is False):
        raise LaunchError(f"flwr {' '.join(args[:2])} failed ({res.returncode}): "
                          f"{doc.get('error-message') or res.stderr[-500:]}")
    return doc


def register_sites(roster_path: Path, coord_dir: Path, flwr_home: Path, conn: str) -> dict[str, Any]:
    """Register each site's SuperNode key under its name; keys already registered are kept
    (``flwr supernode list`` shows no names or keys, so "Public key already in use" is the check).
    Registrations run concurrently: each ``flwr`` call costs 1.5-5 s of start-up."""
    from concurrent.futures import ThreadPoolExecutor

    from privehr.deploy.provision import Roster

    roster = Roster.load(roster_path)
    keys_dir = coord_dir / "supernode-keys"
    keys_dir.mkdir(parents=True, exist_ok=True)

    def one(site: str) -> Any:
        pub = keys_dir / f"{site}.pub"
        pub.write_text(roster.sites[site]["supernode"] + "\n", encoding="utf-8")
        doc = flwr_cli(["supernode", "register", str(pub), conn, "--name", site], flwr_home, check=False)
        if doc.get("success") is False and "already" not in str(doc.get("error-message", "")).lower():
            raise LaunchError(f"registering {site}: {doc.get('error-message')}")
        return doc.get("node-id")

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(roster.names, pool.map(one, roster.names), strict=True))


def write_app(app_dir: Path, *, study: Path, config: str, credentials: Path, out: Path, min_sites: int,
              node_wait_s: float = 60.0) -> Path:
    """The FAB source: a pyproject and two one-line shims importing the installed privehr."""
    pkg = app_dir / APP_PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""privehr study shim (no logic here)."""\n', encoding="utf-8")
    (pkg / "server_app.py").write_text("from privehr.deploy.flower_app import server_app\n\napp = server_app\n",
                                       encoding="utf-8")
    (pkg / "client_app.py").write_text("from privehr.deploy.flower_app import client_app\n\napp = client_app\n",
                                       encoding="utf-8")
    (app_dir / "pyproject.toml").write_text(f"""[project]
name = "privehr-study"
version = "1.0.0"
description = "privehr study: thin shims over each party's installed privehr"
license = "Apache-2.0"
dependencies = ["flwr>=1.42.0,<1.43"]

[tool.flwr.app]
publisher = "privehr"

[tool.flwr.app.components]
serverapp = "{APP_PACKAGE}.server_app:app"
clientapp = "{APP_PACKAGE}.client_app:app"

[tool.flwr.app.config]
study = {json.dumps(str(Path(study).resolve()))}
config = {json.dumps(config)}
credentials = {json.dumps(str(Path(credentials).resolve()))}
out = {json.dumps(str(Path(out).resolve()))}
min-sites = {int(min_sites)}
node-wait = {float(node_wait_s)}
""", encoding="utf-8")
    return app_dir


def submit_study(app_dir: Path, flwr_home: Path, conn: str, *, timeout_s: float = 600.0,
                 poll_s: float = 2.0) -> dict[str, Any]:
    """``flwr run`` then poll ``flwr ls`` until the run finishes (``flwr run`` exits 0 even when
    the ServerApp crashes, so the status is what counts). Returns run id, status, log text."""
    run = flwr_cli(["run", str(app_dir), conn], flwr_home)
    run_id = run["run-id"]
    t_end = time.monotonic() + timeout_s
    status, details = "unknown", ""
    while time.monotonic() < t_end:
        doc = flwr_cli(["ls", conn, "--run-id", str(run_id)], flwr_home, check=False)
        runs = doc.get("runs") or [{}]
        status, details = runs[0].get("status", "unknown"), runs[0].get("status-details", "")
        if str(status).startswith("finished"):
            break
        time.sleep(poll_s)
    else:
        flwr_cli(["stop", str(run_id), conn], flwr_home, check=False)
    logs = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(VENV_BIN / "flwr"), "log", str(run_id), conn, "--show"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, env=flwr_env(flwr_home), timeout=60,
                          check=False).stdout
    return {"run_id": run_id, "status": status, "details": details, "log": logs}


def run_deployed_study(study: Path, config: str, credentials: Path, out: Path, state: Path, *,
                       min_sites: int = 3, timeout_s: float = 1800.0) -> dict[str, Any]:
    """What ``privehr study STUDY.toml --federation STATE`` should call: write the FAB shim,
    submit it to the running SuperLink, wait, save the ServerApp log. Returns the status and,
    when the run completed, the ServerApp's ``result.json``."""
    app_dir = write_app(Path(out) / "app", study=study, config=config, credentials=credentials, out=out,
                        min_sites=min_sites)
    res = submit_study(app_dir, Path(state) / "flwr-home", "privehr", timeout_s=timeout_s)
    (Path(out) / "serverapp.log").write_text(res["log"], encoding="utf-8")
    result = Path(out) / "result.json"
    if res["status"] == "finished:completed" and result.exists():
        res["result"] = json.loads(result.read_text(encoding="utf-8"))
    return res


def run_site(credentials: Path, store: Path, *, runtime_port: int, state: Path, superlink: str = "",
             retry_s: float = 5.0, on_connect: Any = None) -> int:
    """Run a site until SIGTERM/SIGINT: the worker answers; the SuperNode is restarted whenever
    it exits (coordinator not up yet, registration pending, coordinator restarted).

    Returns the number of messages answered.
    """
    import secrets as _secrets
    import threading

    from privehr.deploy.provision import write_private
    from privehr.deploy.site_runtime import SiteRuntime
    from privehr.deploy.site_worker import SiteWorker

    info = json.loads((Path(credentials) / "site.json").read_text(encoding="utf-8"))
    runtime = SiteRuntime(credentials, store)
    # A fresh shared secret per start: only this worker may acquire the SuperNode's tasks
    # (another local process on the Runtime API port could otherwise take the messages).
    secret = _secrets.token_bytes(32)
    secret_file = Path(state) / "superexec.secret"
    write_private(secret_file, secret)
    worker = SiteWorker(runtime, f"127.0.0.1:{runtime_port}", superexec_secret=secret)
    argv = supernode_argv(Path(credentials), superlink=superlink or info["superlink"], runtime_port=runtime_port,
                          insecure=bool(info["insecure"]))
    argv += ["--superexec-auth-secret-file", str(secret_file)]

    def _stop(*_: object) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    serving = threading.Thread(target=worker.serve, name="privehr-site-worker", daemon=True)
    serving.start()
    node: Proc | None = None
    try:
        while not worker.stop.is_set():
            node = start("supernode", argv, state / "supernode.log", state / "flwr-home")
            while node.alive() and not worker.stop.is_set():
                if on_connect and "SuperNode ID" in node.output():
                    on_connect(runtime.name)
                    on_connect = None
                worker.stop.wait(0.5)
            if worker.stop.is_set():
                break
            tail = node.output()[-300:].strip().splitlines()
            runtime.audit.append("note", text=f"SuperNode exited ({node.popen.returncode}); restarting")
            print(f"site {runtime.name}: SuperNode exited with code {node.popen.returncode} "
                  f"({tail[-1] if tail else 'no output'}); retrying in {retry_s:g} s", flush=True)
            worker.stop.wait(retry_s)
    finally:
        worker.stop.set()
        if node is not None:
            node.stop()
        serving.join(timeout=10)
        runtime.close()
    return worker.handled
