"""``privehr provision``: every key and certificate a deployment needs, one folder per party.

Why one tool: a deployment needs four kinds of key with different owners and lifetimes, and a
mistake in any of them (a private key readable by others, a server certificate without the
loopback SAN the SuperLink dials itself on, an Ed25519 key where Flower wants ECDSA) only
shows up as an opaque connection failure later. Layout (``OUT``)::

    coordinator/
      ca.crt                 CA certificate (public; every site gets a copy)
      ca.key          0600   CA private key: only needed to re-issue the server certificate;
                             move it offline after provisioning
      server.pem             SuperLink TLS certificate (SAN: hostnames + 127.0.0.1 + ::1)
      server.key      0600   SuperLink TLS private key
      audit.key       0600   coordinator's audit-log keys (HMAC + Ed25519 signing seed)
      audit.pub              coordinator's audit signing public key (sites pin it)
      roster.json            every site's public keys (identity, SuperNode auth, audit)
    sites/<name>/
      ca.crt                 copy of the CA certificate (verifies the SuperLink)
      supernode.key   0600   ECDSA (NIST P-384) SuperNode authentication key, OpenSSH format
      supernode.pub          its public key, registered with the SuperLink
      identity.key    0600   Ed25519 identity key that signs this site's SecAgg messages
      audit.key       0600   this site's audit-log keys (HMAC + Ed25519 signing seed)
      roster.json            the same roster (public keys only) + the coordinator's audit key
      site.json              site name, index, SuperLink address

Nothing secret is ever printed or logged. Only ``cryptography`` primitives are used.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROSTER_VERSION = 1
_SITE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")
INSECURE_WARNING = (
    "INSECURE DEPLOYMENT: no TLS certificates were created. The SuperLink, SuperNodes and "
    "every message between them travel in clear text and any process can pose as any site. "
    "Use this only for a rehearsal on one machine, never with patient data."
)


class ProvisionError(ValueError):
    """Provisioning cannot proceed; the message names the field, the value and the fix."""


@dataclass(frozen=True)
class ProvisionResult:
    """Where provisioning wrote things (paths only, never key material)."""

    out: Path
    coordinator: Path
    sites: dict[str, Path]
    insecure: bool


def check_site_names(sites: list[str]) -> list[str]:
    """Site names become folder names and Flower node names: lower-case letters, digits, '-'."""
    if len(sites) < 1:
        raise ProvisionError("sites: got an empty list; pass at least one name, e.g. --sites a,b,c")
    bad = [s for s in sites if not s or not set(s) <= _SITE_NAME_CHARS or s[0] == "-"]
    if bad:
        raise ProvisionError(f"sites: names {bad!r} are not allowed; use lower-case letters, digits and '-'")
    if len(set(sites)) != len(sites):
        raise ProvisionError(f"sites: {sites!r} repeats a name; every site needs its own name")
    return list(sites)


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by its owner only (0600) before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(days: int = 825) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(_name("privehr deployment CA")).issuer_name(_name("privehr deployment CA"))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, hosts: list[str],
                     days: int = 397) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The SuperLink certificate. 127.0.0.1 is always in the SAN: the SuperLink's own
    SuperExec dials back to ``127.0.0.1:<port>`` over TLS (see the Flower 1.42 notes)."""
    key = ec.generate_private_key(ec.SECP384R1())
    names: list[x509.GeneralName] = []
    for h in ["localhost", "127.0.0.1", "::1", *hosts]:
        try:
            ip = x509.IPAddress(ipaddress.ip_address(h))
            if ip not in names:
                names.append(ip)
        except ValueError:
            dns = x509.DNSName(h)
            if dns not in names:
                names.append(dns)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(_name(hosts[0] if hosts else "localhost"))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def _pem_key(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_supernode_key() -> tuple[bytes, bytes]:
    """(private OpenSSH, public OpenSSH) ECDSA on a NIST curve: Flower rejects Ed25519 here."""
    key = ec.generate_private_key(ec.SECP384R1())
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return priv, pub + b"\n"


def make_audit_keys() -> tuple[bytes, bytes]:
    """(secret file JSON, Ed25519 public raw): HMAC key for content hashes + signing seed."""
    sign = Ed25519PrivateKey.generate()
    seed = sign.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                              serialization.NoEncryption())
    doc = {"hmac_key": secrets.token_bytes(32).hex(), "signing_seed": seed.hex()}
    return json.dumps(doc).encode(), sign.public_key().public_bytes_raw()


def provision(sites: list[str], out: Path, *, superlink: str = "127.0.0.1:9092",
              hosts: list[str] | None = None, insecure: bool = False,
              site_keys: dict[str, dict[str, str]] | None = None) -> ProvisionResult:
    """Create CA, server certificate, per-site keys and the roster under ``out``.

    ``superlink`` is the address sites dial (host:port); its host is added to the certificate.
    ``insecure`` skips TLS material (and warns): node authentication needs TLS in Flower 1.42,
    so an insecure deployment also has no SuperNode authentication. ``site_keys``: public keys
    a site generated itself (``site_keys.site_keygen``); no private key is made for that site.
    """
    site_keys = site_keys or {}
    unknown = sorted(set(site_keys) - set(sites))
    if unknown:
        raise ProvisionError(f"site keys: {unknown} are not in --sites {sorted(sites)}")
    sites = check_site_names(sorted(sites))
    if ":" not in superlink:
        raise ProvisionError(f"superlink: got {superlink!r}; expected host:port, e.g. 10.0.0.5:9092")
    out = Path(out)
    coord = out / "coordinator"
    coord.mkdir(parents=True, exist_ok=True)
    host = superlink.rsplit(":", 1)[0].strip("[]")
    ca_pem = b""
    if insecure:
        warnings.warn(INSECURE_WARNING, stacklevel=2)
    else:
        ca_key, ca_cert = make_ca()
        srv_key, srv_cert = make_server_cert(ca_key, ca_cert, [host, *(hosts or [])])
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        write_public(coord / "ca.crt", ca_pem)
        write_private(coord / "ca.key", _pem_key(ca_key))
        write_public(coord / "server.pem", srv_cert.public_bytes(serialization.Encoding.PEM))
        write_private(coord / "server.key", _pem_key(srv_key))
    c_secret, c_pub = make_audit_keys()
    write_private(coord / "audit.key", c_secret)
    write_public(coord / "audit.pub", c_pub.hex().encode() + b"\n")
    entries: dict[str, dict[str, str]] = {}
    site_dirs: dict[str, Path] = {}
    for i, name in enumerate(sites):
        d = out / "sites" / name
        site_dirs[name] = d
        if name in site_keys:  # the site made its own keys: only public files for it here
            entry = {k: v for k, v in site_keys[name].items() if k != "site"}
        else:
            ident = Ed25519PrivateKey.generate()
            write_private(d / "identity.key", _pem_key(ident))
            s_secret, s_pub = make_audit_keys()
            write_private(d / "audit.key", s_secret)
            entry = {"identity": ident.public_key().public_bytes_raw().hex(), "audit": s_pub.hex()}
            if not insecure:
                priv, pub = make_supernode_key()
                write_private(d / "supernode.key", priv)
                write_public(d / "supernode.pub", pub)
                entry["supernode"] = pub.decode().strip()
        if not insecure:
            write_public(d / "ca.crt", ca_pem)
        entries[name] = {**entry, "index": str(i)}
        write_public(d / "site.json", json.dumps({"site": name, "index": i, "superlink": superlink,
                                                   "insecure": insecure}, indent=2).encode())
    roster = {"version": ROSTER_VERSION, "superlink": superlink, "insecure": insecure,
              "coordinator_audit": c_pub.hex(), "sites": entries}
    blob = json.dumps(roster, indent=2, sort_keys=True).encode()
    write_public(coord / "roster.json", blob)
    for d in site_dirs.values():
        write_public(d / "roster.json", blob)
    return ProvisionResult(out, coord, site_dirs, insecure)


@dataclass(frozen=True)
class Roster:
    """Public keys of every party, as a site or the coordinator loads them."""

    sites: dict[str, dict[str, str]]
    coordinator_audit: bytes
    superlink: str
    insecure: bool

    @classmethod
    def load(cls, path: Path) -> Roster:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProvisionError(f"roster: {path} does not exist; run `privehr provision` first") from None
        if doc.get("version") != ROSTER_VERSION:
            raise ProvisionError(f"roster: version {doc.get('version')!r} in {path}; expected {ROSTER_VERSION}")
        return cls(dict(doc["sites"]), bytes.fromhex(doc["coordinator_audit"]), doc["superlink"],
                   bool(doc["insecure"]))

    @property
    def names(self) -> list[str]:
        return sorted(self.sites)

    def identity_keys(self) -> dict[str, bytes]:
        """SecAgg roster: site -> raw Ed25519 public key."""
        return {s: bytes.fromhex(e["identity"]) for s, e in self.sites.items()}

    def audit_key(self, party: str) -> Ed25519PublicKey:
        raw = self.coordinator_audit if party == "coordinator" else bytes.fromhex(self.sites[party]["audit"])
        return Ed25519PublicKey.from_public_bytes(raw)

    def index(self, site: str) -> int:
        return int(self.sites[site]["index"])


def load_identity_key(site_dir: Path) -> Ed25519PrivateKey:
    """A site loads only its own identity key (never another site's)."""
    key = serialization.load_pem_private_key((Path(site_dir) / "identity.key").read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ProvisionError(f"identity key: {site_dir}/identity.key is not an Ed25519 key; re-provision the site")
    return key


def check_private_modes(folder: Path) -> list[Path]:
    """Private key files under ``folder`` whose mode lets anyone but the owner read them."""
    return [p for p in Path(folder).rglob("*.key") if p.stat().st_mode & 0o077]


ROTATABLE = ("supernode", "identity", "audit")


def rotate_site(out: Path, site: str, kinds: tuple[str, ...] = ROTATABLE) -> dict[str, str]:
    """Replace ``site``'s keys of the given kinds and rewrite the roster in every folder.

    Returns the new public keys (hex / OpenSSH). What the operators must do next: copy the
    new roster to every site (it is public), copy ``sites/<site>/`` to that site, and for a new
    SuperNode key unregister the old node (``flwr supernode unregister ID``) and restart
    ``privehr coordinator start`` so the new key is registered. Rotate identity keys between
    studies, never during a round (peers check SecAgg adverts against the roster they hold).
    """
    out = Path(out)
    bad = [k for k in kinds if k not in ROTATABLE]
    if bad:
        raise ProvisionError(f"kinds: {bad!r} cannot be rotated here; choose from {list(ROTATABLE)}")
    coord = out / "coordinator"
    doc = json.loads((coord / "roster.json").read_text(encoding="utf-8"))
    if site not in doc["sites"]:
        raise ProvisionError(f"site: {site!r} is not in {coord / 'roster.json'}; sites are {sorted(doc['sites'])}")
    d = out / "sites" / site
    entry = doc["sites"][site]
    if "identity" in kinds:
        ident = Ed25519PrivateKey.generate()
        write_private(d / "identity.key", _pem_key(ident))
        entry["identity"] = ident.public_key().public_bytes_raw().hex()
    if "audit" in kinds:
        secret, pub = make_audit_keys()
        write_private(d / "audit.key", secret)
        entry["audit"] = pub.hex()
    if "supernode" in kinds:
        if doc["insecure"]:
            raise ProvisionError("kinds: an insecure deployment has no SuperNode keys to rotate")
        priv, pub_ssh = make_supernode_key()
        write_private(d / "supernode.key", priv)
        write_public(d / "supernode.pub", pub_ssh)
        entry["supernode"] = pub_ssh.decode().strip()
    blob = json.dumps(doc, indent=2, sort_keys=True).encode()
    write_public(coord / "roster.json", blob)
    for other in (out / "sites").iterdir():
        if (other / "roster.json").exists():
            write_public(other / "roster.json", blob)
    return {k: entry[k] for k in kinds if k in entry}
