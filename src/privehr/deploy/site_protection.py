"""Both halves of a protection mode as a deployment builds them: no party generates another's key.

A site builds the simulator's own mode class (``federation.modes.make_protection``) from its
*approved* copy of the study, the provisioned roster and its own identity key, and uses only the
site half (``site_plugins``). The coordinator builds the same class with the roster and no
private key, and uses only the coordinator half. Because the site recomputes every privacy
parameter itself (σ, clip, q, lattice sensitivity and noise share, SecAgg threshold) and refuses
a round whose parameters differ (``PRIVACY_PARAMS_MISMATCH``), a coordinator cannot talk it into
less noise. Noise is the site's own (OS entropy; the seeded test stream keyed by the site's name).
For ``he`` the key holder's secret context is created in, and never leaves, its site process;
other sites pin the public context only if the key holder's identity key signed it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.identities import Identities
from privehr.federation.study import PreparedSite


class UnsupportedInDeployment(ValueError):
    """A study file a deployment cannot run as written (refused at approval and at start)."""


def check_deployable(cfg: StudyConfig) -> None:
    """Every DP configuration a site approves must be calibratable without other sites' sizes.

    (Baseline methods may stay in a shared study file: a deployment simply never runs them.)"""
    problems = []
    for entry in cfg.configs:
        if entry.protection in ("dp_local", "ddp") and cfg.privacy.delta is None:
            problems.append(f"config {entry.name!r}: a deployed DP study needs privacy.delta set in the study file "
                            "(every site and the coordinator calibrate with the same δ; e.g. delta = 1e-6 ≤ "
                            "1/(10 n) for the smallest site)")
    if problems:
        raise UnsupportedInDeployment("; ".join(problems))


def _check(entry: ConfigEntry, cfg: StudyConfig) -> None:
    check_deployable(cfg.model_copy(update={"configs": [entry]}))


def _roster_prep(names: list[str]) -> SimpleNamespace:
    """What a mode needs to know about the federation without data: the sites' names. Feature
    names come from the shared FeatureSpec (public), scales from public references."""
    return SimpleNamespace(sites=[SimpleNamespace(name=n) for n in sorted(names)], feature_names=[])


def site_plugins(entry: ConfigEntry, cfg: StudyConfig, site: PreparedSite, key: Ed25519PrivateKey,
                 roster: dict[str, bytes]) -> dict[str, Any]:
    """The site half, built at the site from its approved study, own key and the roster."""
    from privehr.federation.modes import make_protection

    _check(entry, cfg)
    if entry.protection == "none":
        return {}
    identities = Identities.for_site(roster, site.name, key)
    return make_protection(entry, cfg, _roster_prep(list(roster)), identities=identities).site_plugins(site)


def coordinator_protection(entry: ConfigEntry, cfg: StudyConfig, roster: dict[str, bytes]):
    """The coordinator half: the roster's public keys only, never a site's data or private key."""
    from privehr.federation.modes import make_protection

    _check(entry, cfg)
    return make_protection(entry, cfg, _roster_prep(list(roster)), identities=Identities.coordinator(roster))
