"""Site-side halves of the protection modes, built from the site's own key and the roster.

Why not ``modes.make_protection``: in the simulator one object builds both halves of a mode
and generates every site's SecAgg identity key centrally. At a real site the coordinator half
does not exist and the only private key available is the site's own (from ``privehr
provision``). The closures below are the site half of ``SecAggProtection.site_plugins`` with
that key and the provisioned roster injected. Proposed refactor for ``federation/``: split each
mode into ``SiteHalf(cfg, site, identity_key, roster)`` and ``CoordinatorHalf(cfg, names)``
so this module can shrink to a lookup.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.federation.config import ConfigEntry, StudyConfig
from privehr.federation.study import PreparedSite

SUPPORTED = frozenset({"none", "secagg", "dp_local"})


class UnsupportedInDeployment(ValueError):
    """A protection whose site half is not yet deployable (needs coordinator-side inputs)."""


def site_plugins(entry: ConfigEntry, cfg: StudyConfig, site: PreparedSite, key: Ed25519PrivateKey,
                 roster: dict[str, bytes]) -> dict[str, Any]:
    if entry.protection == "none":
        return {}
    if entry.protection == "secagg":
        return _secagg_plugins(cfg, site, key, roster)
    if entry.protection == "dp_local":
        return _dp_local_plugins(entry, cfg, site, roster)
    raise UnsupportedInDeployment(
        f"protection {entry.protection!r} of config {entry.name!r} is not deployable yet; "
        f"use one of {sorted(SUPPORTED)}")


def _secagg_plugins(cfg: StudyConfig, site: PreparedSite, key: Ed25519PrivateKey,
                    roster: dict[str, bytes]) -> dict[str, Any]:
    from privehr.federation.modes_secagg import _SiteSecAggState
    from privehr.secure.quantize import FixedPointCodec

    pv = cfg.privacy
    if roster.get(site.name) != key.public_key().public_bytes_raw():
        raise UnsupportedInDeployment(f"site {site.name!r}: identity key does not match the roster; re-provision")
    state = _SiteSecAggState(site.name, key, dict(roster))
    codec = FixedPointCodec(pv.update_clip, float(pv.max_site_examples), len(roster), pv.secagg_bits)
    clip = pv.update_clip

    def encode(handlers, msg):
        delta, _ = handlers._local_delta(msg)
        norm = float(np.linalg.norm(delta))
        clipped = delta * min(1.0, clip / norm) if norm > 0 else delta
        x = np.concatenate([clipped, [1.0]])
        words = codec.encode(x, weight=float(handlers.data.n_train), site=site.name)
        state.start(msg.payload["config"]["secagg"], words, msg.payload["params"])
        return words, None, {"clipped": norm > clip, "update_l2": norm}

    return {"secagg": encode, "secagg_site": state.engine}


def require_agreed_delta(cfg: StudyConfig, entry: ConfigEntry) -> None:
    if cfg.privacy.delta is None:
        raise UnsupportedInDeployment(
            f"config {entry.name!r}: a deployed DP study needs privacy.delta set in the study file (every site "
            "and the coordinator calibrate with the same δ; e.g. delta = 1e-6 ≤ 1/(10 n) for the smallest site)")


def _dp_local_plugins(entry: ConfigEntry, cfg: StudyConfig, site: PreparedSite,
                      roster: dict[str, bytes]) -> dict[str, Any]:
    """The site half of site-local DP-SGD: same calibration as the coordinator's (same config,
    same agreed δ), noise from this site's own OS entropy (or its own seeded test stream)."""
    from types import SimpleNamespace

    from privehr.federation.modes import DpLocalProtection
    from privehr.privacy.noise import NoiseSource

    require_agreed_delta(cfg, entry)
    seed = cfg.privacy.seeded_noise_for_tests
    names = sorted(roster)
    noise = NoiseSource.secure() if seed is None else NoiseSource.seeded_for_tests(seed + names.index(site.name))
    prep = SimpleNamespace(sites=[SimpleNamespace(name=n) for n in names], feature_names=[])
    return DpLocalProtection(cfg, prep, entry, noise).site_plugins(site)
