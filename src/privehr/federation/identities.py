"""Which signing keys a process holds: every site's (simulator), one site's, or none (coordinator).

Why a separate object: a protection mode has a site half and a coordinator half. In the
simulator one process plays every party, so it generates every site's Ed25519 identity key
(standing in for ``privehr provision``). In a deployment a site holds only its own private key
and the provisioned roster of public keys, and the coordinator holds no private key at all.
Passing the keys in, instead of letting the mode generate them, lets the same mode classes
serve all three without a second copy of their site logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class IdentityError(ValueError):
    """A key that does not match the roster, or a site whose key this process does not hold."""


@dataclass(frozen=True)
class Identities:
    roster: dict[str, bytes]  # site -> raw Ed25519 public key; public, the same everywhere
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict, repr=False)  # held here only

    @classmethod
    def simulated(cls, sites: list[str]) -> Identities:
        keys = {s: Ed25519PrivateKey.generate() for s in sites}
        return cls({s: k.public_key().public_bytes_raw() for s, k in keys.items()}, keys)

    @classmethod
    def for_site(cls, roster: dict[str, bytes], site: str, key: Ed25519PrivateKey) -> Identities:
        if roster.get(site) != key.public_key().public_bytes_raw():
            raise IdentityError(f"site {site!r}: identity key does not match the roster; re-provision")
        return cls(dict(roster), {site: key})

    @classmethod
    def coordinator(cls, roster: dict[str, bytes]) -> Identities:
        return cls(dict(roster), {})

    def key(self, site: str) -> Ed25519PrivateKey:
        try:
            return self.keys[site]
        except KeyError:
            raise IdentityError(f"this process does not hold site {site!r}'s identity key") from None
