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
rounds = 2
local_epochs = 1
lr = 0.1
batch_size = 16
deadline_s = {deadline}

[privacy]
update_clip = 10.0
max_site_examples = 5000

[[configs]]
name = "fedavg"
method = "fedavg"

[[configs]]
name = "fedavg_secagg"
method = "fedavg"
protection = "secagg"
"""

SITE_NAMES = ["hosp-a", "hosp-b", "hosp-c", "hosp-d"]


def make_deployment(tmp: Path, stores: dict, sites: list[str], *, deadline: float = 60.0,
                    superlink: str = "127.0.0.1:9092") -> dict:
    """Provision ``sites``, copy their stores (fresh ledgers), write and approve the study."""
    prov = provision(sites, tmp / "prov", superlink=superlink)
    study = tmp / "study.toml"
    study.write_text(STUDY.format(deadline=deadline))
    site_stores = {}
    for s in sites:
        site_stores[s] = tmp / "stores" / f"{s}.duckdb"
        site_stores[s].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(stores[s], site_stores[s])
        approve_file(study, prov.sites[s])
    return {"prov": prov, "study": study, "stores": site_stores, "sites": sites}
