"""Shared fixtures for the SecAgg tests: a provisioned roster and fresh rounds over it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.secure.secagg import SecAggConfig, SecAggCoordinator, SecAggSite, provision


@dataclass
class Round:
    config: SecAggConfig
    ids: list[str]
    identities: dict[str, Ed25519PrivateKey]
    roster: dict[str, bytes]
    sites: dict[str, SecAggSite]
    coordinator: SecAggCoordinator

    def random_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        hi = 1 << self.config.bits
        return {
            s: rng.integers(0, hi, self.config.dim, dtype=np.uint64, endpoint=False)
            for s in self.ids
        }

    def expected(self, inputs: dict[str, np.ndarray], included) -> np.ndarray:
        total = np.zeros(self.config.dim, dtype=np.uint64)
        for s in included:
            total += inputs[s]
        return total & np.uint64(self.config.modulus_mask)


def _provision(n: int) -> tuple[list[str], dict[str, Ed25519PrivateKey], dict[str, bytes]]:
    ids = [f"hospital-{i:02d}" for i in range(n)]
    identities, roster = provision(ids)
    return ids, identities, roster


@pytest.fixture
def make_round():
    """make_round(n, t, degree=None, dim=64, bits=32, round_id=0, provisioned=None) -> Round."""

    def factory(n, t, degree=None, dim=64, bits=32, round_id=0, provisioned=None):
        ids, identities, roster = provisioned or _provision(n)
        cfg = SecAggConfig(
            n_sites=n, threshold=t, degree=degree, dim=dim, bits=bits, round_id=round_id
        )
        sites = {s: SecAggSite(s, identities[s], roster, cfg) for s in ids}
        return Round(cfg, ids, identities, roster, sites, SecAggCoordinator(cfg, ids))

    factory.provision = _provision
    return factory
