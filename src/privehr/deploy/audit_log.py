"""Append-only, hash-chained, signed audit log kept by the coordinator and by every site.

Each line is one JSON entry. ``prev`` is the SHA-256 of the previous entry (genesis: 64 zeros)
and ``hash`` the SHA-256 of the entry itself without ``hash`` (canonical JSON), so an edited,
removed or reordered entry breaks the chain. A chain alone cannot show a cut-off *tail*, so a
party signs its chain head (``head`` entries: seq + hash, Ed25519) and sends it with every
message; the receiver records it as a ``peer_head`` entry in its own log. A log whose owner
signed head N while the log holds fewer than N entries, or a different entry at N, was cut
or rewritten, and ``verify_log(..., peer_logs=...)`` says so. A closed log ends with a
signed head, so a bare cut is visible even without the peer's log.

Entries never hold content: messages are recorded by kind, size and an HMAC-SHA256 under the
party's own key (a plain hash of a low-entropy message — "site X refused" — could be
brute-forced by anyone holding the log).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64
_EVENTS = frozenset({"open", "connect", "message", "refusal", "epsilon", "head", "peer_head", "close", "note"})


class AuditError(ValueError):
    """An audit log cannot be written or read (not a verification failure: see ``Finding``)."""


@dataclass(frozen=True)
class AuditKeys:
    """A party's audit secrets: HMAC key for content hashes and its Ed25519 signing key."""

    hmac_key: bytes
    signing: Ed25519PrivateKey

    @classmethod
    def load(cls, path: Path) -> AuditKeys:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(bytes.fromhex(doc["hmac_key"]),
                   Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["signing_seed"])))

    @property
    def public(self) -> Ed25519PublicKey:
        return self.signing.public_key()


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def head_statement(party: str, seq: int, head: str) -> bytes:
    """The exact bytes a party signs for its chain head (domain-separated)."""
    return f"privehr-audit-head/v1|{party}|{seq}|{head}".encode()


@dataclass(frozen=True)
class SignedHead:
    party: str
    seq: int
    head: str
    signature: str  # base64

    def to_bytes(self) -> bytes:
        return _canonical({"party": self.party, "seq": self.seq, "head": self.head, "sig": self.signature})

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedHead:
        try:
            d = json.loads(data)
            return cls(str(d["party"]), int(d["seq"]), str(d["head"]), str(d["sig"]))
        except (ValueError, KeyError, TypeError):
            raise AuditError("signed head is malformed") from None

    def valid(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(base64.b64decode(self.signature), head_statement(self.party, self.seq, self.head))
        except (InvalidSignature, ValueError):
            return False
        return True


class AuditLog:
    """Writer for one party's log. Appends only; resumes the chain of an existing file."""

    def __init__(self, path: Path, party: str, keys: AuditKeys, *, clock=None):
        self.path = Path(path)
        self.party = party
        self.keys = keys
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))
        self.seq, self.head = 0, GENESIS
        if self.path.exists():
            for line in self.path.read_bytes().splitlines():
                if line.strip():
                    e = json.loads(line)
                    self.seq, self.head = int(e["seq"]), str(e["hash"])
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def content_mac(self, data: bytes) -> str:
        return hmac.new(self.keys.hmac_key, data, hashlib.sha256).hexdigest()

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        if event not in _EVENTS:
            raise AuditError(f"event: got {event!r}; expected one of {sorted(_EVENTS)}")
        entry = {"seq": self.seq + 1, "prev": self.head, "time": self._clock(), "party": self.party,
                 "event": event, **{k: v for k, v in fields.items() if v is not None}}
        entry["hash"] = entry_hash(entry)
        line = _canonical(entry) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.seq, self.head = entry["seq"], entry["hash"]
        return entry

    def message(self, direction: str, *, peer: str, study: str, round_: int | None, kind: str,
                data: bytes) -> dict[str, Any]:
        """Record a message by kind, size and keyed hash; the content itself is never written."""
        return self.append("message", direction=direction, peer=peer, study=study, round=round_, kind=kind,
                           size=len(data), hmac=self.content_mac(data))

    def signed_head(self) -> SignedHead:
        """Sign the current head (and record that we did, so the log ends on a signed head)."""
        seq, head = self.seq, self.head
        sig = base64.b64encode(self.keys.signing.sign(head_statement(self.party, seq, head))).decode()
        signed = SignedHead(self.party, seq, head, sig)
        self.append("head", signed_seq=seq, signed_head=head, sig=sig)
        return signed

    def record_peer_head(self, signed: SignedHead, key: Ed25519PublicKey | None = None) -> None:
        ok = signed.valid(key) if key is not None else None
        self.append("peer_head", peer=signed.party, peer_seq=signed.seq, peer_head=signed.head,
                    sig=signed.signature, valid=ok)


@dataclass
class Finding:
    seq: int | None
    problem: str


@dataclass
class VerifyReport:
    path: str
    party: str | None
    entries: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def read_entries(path: Path) -> list[dict[str, Any]]:
    out = []
    for i, line in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"_unparseable": i})
    return out


def verify_log(path: Path, *, key: Ed25519PublicKey | None = None,
               peer_logs: list[Path] | None = None, require_closed: bool = True) -> VerifyReport:
    """Check chain, sequence, signatures and (with ``peer_logs``) heads the peers recorded."""
    entries = read_entries(path)
    rep = VerifyReport(str(path), entries[0].get("party") if entries else None, len(entries))
    prev, by_seq = GENESIS, {}
    for pos, e in enumerate(entries, 1):
        if "_unparseable" in e:
            rep.findings.append(Finding(None, f"line {e['_unparseable']} is not JSON"))
            prev = GENESIS
            continue
        seq = e.get("seq")
        if seq != pos:
            rep.findings.append(Finding(seq, f"entry at line {pos} has seq {seq}: entries removed or reordered"))
        if e.get("hash") != entry_hash(e):
            rep.findings.append(Finding(seq, "entry hash does not match its content: entry edited"))
        if e.get("prev") != prev:
            rep.findings.append(Finding(seq, "prev does not match the previous entry: chain broken"))
        if e.get("party") != rep.party:
            rep.findings.append(Finding(seq, f"entry written by {e.get('party')!r} in {rep.party!r}'s log"))
        if e.get("event") == "head":
            if e.get("signed_seq") != seq - 1 or e.get("signed_head") != prev:
                rep.findings.append(Finding(seq, "signed head does not point at the entry before it"))
            elif key is not None and not SignedHead(rep.party or "", seq - 1, prev, e.get("sig", "")).valid(key):
                rep.findings.append(Finding(seq, "head signature is not valid for this party's key"))
        by_seq[seq] = e.get("hash")
        prev = e.get("hash", "")
    if require_closed and entries and entries[-1].get("event") != "head":
        rep.findings.append(Finding(len(entries), "log does not end with a signed head: tail cut off or not closed"))
    for peer_path in peer_logs or []:
        for pe in read_entries(peer_path):
            if pe.get("event") != "peer_head" or pe.get("peer") != rep.party:
                continue
            s, h = int(pe["peer_seq"]), pe["peer_head"]
            if key is not None and not SignedHead(rep.party or "", s, h, pe.get("sig", "")).valid(key):
                rep.findings.append(Finding(s, f"{peer_path}: recorded head has an invalid signature"))
            elif s not in by_seq and s > 0:
                rep.findings.append(Finding(s, f"{peer_path} recorded our signed head at seq {s}, "
                                               f"but this log has only {len(entries)} entries: truncated"))
            elif s > 0 and by_seq[s] != h:
                rep.findings.append(Finding(s, f"{peer_path} recorded a different head at seq {s}: rewritten"))
    return rep
