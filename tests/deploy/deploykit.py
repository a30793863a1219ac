"""Deployment fixtures shared by the deploy tests: study text, provisioning, approvals."""

import shutil
from pathlib import Path

from privehr.deploy.approve import approve_file
from privehr.deploy.provision import provision

STUDY = """
[study]
name = "deploytest"
seed = 11
task = "hypertension_onset"
model = "logreg"
min_site_patients = 10
bootstrap = 0

[federation]
rounds = {rounds}
local_epochs = 1
lr = 0.1
batch_size = 16
deadline_s = {deadline}

[privacy]
update_clip = 10.0
max_site_examples = 5000
delta = 1e-6
ddp_rounds = {rounds}
ddp_server_lr = 5.0
ddp_min_survivor_fraction = 0.75
{seeded}

[[configs]]
name = "fedavg"
method = "fedavg"

[[configs]]
name = "fedavg_secagg"
method = "fedavg"
protection = "secagg"

[[configs]]
name = "fedavg_dp"
method = "fedavg"
protection = "dp_local"
epsilon = 8.0

[[configs]]
name = "fedavg_secagg_ddp"
method = "fedavg"
protection = "ddp"
epsilon = 8.0

[[configs]]
name = "fedavg_he"
method = "fedavg"
protection = "he"
"""

SITE_NAMES = ["hosp-a", "hosp-b", "hosp-c", "hosp-d"]


def make_deployment(tmp: Path, stores: dict, sites: list[str], *, deadline: float = 60.0,
                    superlink: str = "127.0.0.1:9092", rounds: int = 2, noise_seed: int | None = None) -> dict:
    """Provision ``sites``, copy their stores (fresh ledgers), write and approve the study.

    ``noise_seed``: the test-only seeded noise (every DP release then counts as non-private),
    so a deployed DP run can be compared with the simulator's; None = OS entropy.
    """
    prov = provision(sites, tmp / "prov", superlink=superlink)
    study = tmp / "study.toml"
    seeded = "" if noise_seed is None else f"seeded_noise_for_tests = {noise_seed}"
    study.write_text(STUDY.format(deadline=deadline, rounds=rounds, seeded=seeded))
    site_stores = {}
    for s in sites:
        site_stores[s] = tmp / "stores" / f"{s}.duckdb"
        site_stores[s].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(stores[s], site_stores[s])
        approve_file(study, prov.sites[s])
    return {"prov": prov, "study": study, "stores": site_stores, "sites": sites}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A real SuperLink (TLS + SuperNode auth) and one ``privehr site start`` process per site.

    Every process is started in its own session and stopped (with all descendants) by ``stop``.
    """

    def __init__(self, tmp: Path, stores: dict, sites: list[str], *, deadline: float, rounds: int,
                 noise_seed: int | None = None):
        from privehr.deploy import launch

        self.launch = launch
        self.tmp = tmp
        self.port = free_port()
        self.dep = make_deployment(tmp, stores, sites, deadline=deadline, superlink=f"127.0.0.1:{self.port}",
                                   rounds=rounds, noise_seed=noise_seed)
        self.prov = self.dep["prov"]
        self.home = tmp / "link" / "flwr-home"
        self.procs: dict[str, object] = {}

    def start_link(self) -> None:
        L = self.launch
        coord = self.prov.coordinator
        link = L.start("superlink", L.superlink_argv(coord, host="127.0.0.1", port=self.port,
                                                      database=self.tmp / "link" / "superlink.db", insecure=False),
                       self.tmp / "link" / "superlink.log", self.home)
        self.procs["superlink"] = link
        link.wait_for("Uvicorn running", 60)
        L.write_connection(self.home, "privehr", f"127.0.0.1:{self.port}", coord / "ca.crt")
        self.node_ids = L.register_sites(coord / "roster.json", coord, self.home, "privehr")

    def start_site(self, site: str) -> None:
        import sys

        L = self.launch
        state = self.tmp / f"site-{site}"
        argv = [sys.executable, "-m", "privehr.deploy.cli", "site", "start", "--store", str(self.dep["stores"][site]),
                "--credentials", str(self.prov.sites[site]), "--runtime-port", str(free_port()),
                "--state", str(state)]
        proc = L.start(f"site {site}", argv, self.tmp / f"{site}.out", state / "flwr-home")
        self.procs[site] = proc

    def wait_sites(self, sites: list[str], timeout: float = 90) -> None:
        for s in sites:
            self.procs[s].wait_for("connected", timeout)

    def run(self, config: str, *, out: Path, min_sites: int, node_wait: float = 30.0, app_dir: Path | None = None,
            timeout_s: float = 300.0) -> dict:
        L = self.launch
        app = app_dir or L.write_app(out / "app", study=self.dep["study"], config=config,
                                     credentials=self.prov.coordinator, out=out, min_sites=min_sites,
                                     node_wait_s=node_wait)
        return L.submit_study(app, self.home, "privehr", timeout_s=timeout_s, poll_s=1.0)

    def stop(self) -> None:
        for p in list(self.procs.values())[::-1]:
            p.stop(grace_s=10)


def simulate(dep: dict, names: list[str], config_name: str):
    """The in-process simulator over the same stores and seeds (its own copy of the ledgers)."""
    from privehr.deploy.site_runtime import load_site_data
    from privehr.ehr.features import FeatureSpec
    from privehr.federation.config import load_config
    from privehr.federation.methods import run_federated
    from privehr.federation.modes import make_protection
    from privehr.federation.runner import LedgerBook
    from privehr.federation.study import PreparedStudy

    cfg = load_config(dep["study"])
    entry = next(c for c in cfg.configs if c.name == config_name)
    sites = [load_site_data(dep["stores"][s], cfg, s, i) for i, s in enumerate(names)]
    for s in sites:
        s.store = s.store.with_suffix(".sim.duckdb")
    prep = PreparedStudy(cfg, sites, list(FeatureSpec.default().feature_names()))  # public: the shared spec
    study_id = f"{cfg.study.name}-{cfg.config_hash()[:12]}"
    return run_federated(cfg, sites, entry, charge_for=LedgerBook(prep, study_id).charge_for,
                         protection=make_protection(entry, cfg, prep), study_id=study_id)


def verify_all(cluster: Cluster, sites: list[str]) -> None:
    """Coordinator log against the sites' logs and each site's log against the coordinator's."""
    from privehr.deploy.audit_log import verify_log
    from privehr.deploy.provision import Roster

    prov = cluster.prov
    roster = Roster.load(prov.coordinator / "roster.json")
    coord_log = prov.coordinator / "audit.jsonl"
    site_logs = [prov.sites[s] / "audit.jsonl" for s in sites]
    rep = verify_log(coord_log, key=roster.audit_key("coordinator"), peer_logs=site_logs)
    assert rep.ok, rep.findings
    for s, path in zip(sites, site_logs, strict=True):
        rep = verify_log(path, key=roster.audit_key(s), peer_logs=[coord_log])
        assert rep.ok, (s, rep.findings)
