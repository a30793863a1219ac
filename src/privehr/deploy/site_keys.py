"""``privehr site keygen``: a site makes its own private keys; only public parts travel.

Why: with ``privehr provision`` alone every site's private keys are generated on the
coordinator and shipped once. A coordinator that kept a copy of a site's identity key could
sign SecAgg adverts as that site (a Sybil that isolates a victim's update) and its SuperNode key
could impersonate the site. Here each site generates its keys on its own machine and hands the
coordinator a public file (``<site>.public.json``); ``provision --site-keys`` builds the roster
from those, and the site folder it writes then holds public files only (``ca.crt``,
``roster.json``, ``site.json``), which the site copies next to its own keys.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from privehr.deploy.provision import (
    ProvisionError,
    _pem_key,
    check_site_names,
    make_audit_keys,
    make_supernode_key,
    write_private,
    write_public,
)

PUBLIC_SUFFIX = ".public.json"


def site_keygen(site: str, out: Path, *, insecure: bool = False) -> Path:
    """Write ``site``'s private keys (0600) into ``out`` and return its public file's path."""
    (site,) = check_site_names([site])
    out = Path(out)
    if any((out / f).exists() for f in ("identity.key", "audit.key", "supernode.key")):
        raise ProvisionError(f"out: {out} already holds keys; choose an empty folder (rotating keys: "
                             "generate a new folder and re-provision)")
    ident = Ed25519PrivateKey.generate()
    write_private(out / "identity.key", _pem_key(ident))
    secret, audit_pub = make_audit_keys()
    write_private(out / "audit.key", secret)
    public = {"site": site, "identity": ident.public_key().public_bytes_raw().hex(), "audit": audit_pub.hex()}
    if not insecure:
        priv, pub = make_supernode_key()
        write_private(out / "supernode.key", priv)
        write_public(out / "supernode.pub", pub)
        public["supernode"] = pub.decode().strip()
    path = out / f"{site}{PUBLIC_SUFFIX}"
    write_public(path, json.dumps(public, indent=2, sort_keys=True).encode())
    return path


def load_public_keys(path: Path, *, insecure: bool) -> dict[str, str]:
    """A site's public file, checked field by field (the error names the file and the field)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"site keys: {path} is not a readable JSON file ({type(exc).__name__})") from None
    site = doc.get("site")
    check_site_names([str(site)])
    for field in ("identity", "audit"):
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(doc.get(field, ""))))
        except ValueError:
            raise ProvisionError(f"site keys: {path}: field {field!r} is not a 32-byte Ed25519 public key "
                                 "in hex; regenerate with `privehr site keygen`") from None
    entry = {"identity": doc["identity"], "audit": doc["audit"]}
    if not insecure:
        try:
            key = serialization.load_ssh_public_key(str(doc.get("supernode", "")).encode())
        except ValueError:
            key = None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ProvisionError(f"site keys: {path}: field 'supernode' must be an ECDSA (NIST curve) OpenSSH "
                                 "public key (Flower rejects Ed25519 for SuperNode authentication)")
        entry["supernode"] = doc["supernode"]
    return {"site": str(site), **entry}
