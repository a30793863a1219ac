"""Real multi-site deployment on Flower 1.42: provisioning, study approval, audit logs, launch.

- ``provision``   CA, SuperLink TLS certificate, per-site SuperNode and identity keys, roster
- ``approve``     a site runs only studies whose configuration hash it pinned
- ``audit_log``   append-only, hash-chained, signed JSONL logs and their verifier
- ``site_worker`` the site's own process that answers Flower tasks (FAB code never runs there)
- ``transport``   the coordinator's ``Transport`` over a Flower ``Grid``
- ``flower_app``  the ServerApp/ClientApp shims that Flower ships
- ``launch``      wrappers around ``flower-superlink`` / ``flower-supernode``
- ``cli``         ``deploy_app``: the Typer sub-app the main CLI mounts
"""
