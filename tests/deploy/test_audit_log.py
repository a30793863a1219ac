import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.deploy.audit_log import AuditKeys, AuditLog, SignedHead, read_entries, verify_log


def keys():
    return AuditKeys(b"k" * 32, Ed25519PrivateKey.generate())


@pytest.fixture
def pair(tmp_path):
    """A coordinator and a site exchanging two messages, recording each other's heads."""
    ck, sk = keys(), keys()
    c = AuditLog(tmp_path / "coord.jsonl", "coordinator", ck)
    s = AuditLog(tmp_path / "site.jsonl", "a", sk)
    c.append("open", study="st")
    s.append("open", study="st")
    for r in (1, 2):
        c.message("out", peer="a", study="st", round_=r, kind="train", data=b"secret-request-%d" % r)
        head_c = c.signed_head()
        s.record_peer_head(SignedHead.from_bytes(head_c.to_bytes()), ck.public)
        s.message("in", peer="coordinator", study="st", round_=r, kind="train", data=b"secret-request-%d" % r)
        s.append("epsilon", study="st", round=r, epsilon=0.5)
        head_s = s.signed_head()
        c.record_peer_head(head_s, sk.public)
    s.append("refusal", study="other", code=5)
    s.signed_head()
    c.signed_head()
    return c, s, ck, sk


def rewrite(path, fn):
    lines = path.read_text().splitlines()
    lines = fn(lines)
    path.write_text("".join(line + "\n" for line in lines))


def test_clean_logs_verify(pair):
    c, s, ck, sk = pair
    assert verify_log(s.path, key=sk.public, peer_logs=[c.path]).ok
    assert verify_log(c.path, key=ck.public, peer_logs=[s.path]).ok


def test_no_content_only_hmac(pair):
    c, s, *_ = pair
    text = s.path.read_text() + c.path.read_text()
    assert "secret-request" not in text
    msgs = [e for e in read_entries(s.path) if e["event"] == "message"]
    assert msgs[0]["size"] == len(b"secret-request-1") and len(msgs[0]["hmac"]) == 64
    assert msgs[0]["hmac"] != msgs[1]["hmac"]


def test_edited_entry_detected(pair):
    c, s, _, sk = pair

    def edit(lines):
        e = json.loads(lines[4])
        e["epsilon"] = 0.01
        lines[4] = json.dumps(e)
        return lines

    rewrite(s.path, edit)
    rep = verify_log(s.path, key=sk.public)
    assert not rep.ok and any("edited" in f.problem for f in rep.findings)


def test_removed_entry_detected(pair):
    _, s, _, sk = pair
    rewrite(s.path, lambda lines: lines[:3] + lines[4:])
    rep = verify_log(s.path, key=sk.public)
    assert not rep.ok and any("removed" in f.problem or "chain" in f.problem for f in rep.findings)


def test_reordered_entries_detected(pair):
    _, s, _, sk = pair
    rewrite(s.path, lambda lines: [lines[0], lines[2], lines[1], *lines[3:]])
    assert not verify_log(s.path, key=sk.public).ok


def test_truncated_tail_detected_by_missing_head(pair):
    _, s, _, sk = pair
    rewrite(s.path, lambda lines: lines[:-1])
    rep = verify_log(s.path, key=sk.public)
    assert any("tail" in f.problem for f in rep.findings)


def test_truncation_to_earlier_head_detected_by_peer(pair):
    c, s, _, sk = pair
    entries = read_entries(s.path)
    first_head = next(i for i, e in enumerate(entries) if e["event"] == "head")
    rewrite(s.path, lambda lines: lines[: first_head + 1])
    assert verify_log(s.path, key=sk.public).ok  # alone, a cut at a signed head looks closed
    rep = verify_log(s.path, key=sk.public, peer_logs=[c.path])
    assert any("truncated" in f.problem for f in rep.findings)


def test_rewritten_tail_detected_by_peer(pair):
    c, s, _, sk = pair
    # an attacker with the site's signing key rebuilds a shorter, self-consistent log
    entries = read_entries(s.path)
    s.path.unlink()
    forged = AuditLog(s.path, "a", AuditKeys(b"k" * 32, sk.signing))
    for e in entries[:6]:
        forged.append(e["event"], **{k: v for k, v in e.items()
                                     if k not in ("seq", "prev", "time", "party", "event", "hash")})
    forged.append("epsilon", study="st", round=2, epsilon=0.0)
    forged.append("epsilon", study="st", round=2, epsilon=0.0)
    forged.signed_head()
    rep = verify_log(s.path, key=sk.public, peer_logs=[c.path])
    assert any("rewritten" in f.problem or "truncated" in f.problem for f in rep.findings)


def test_wrong_signing_key_detected(pair):
    _, s, *_ = pair
    rep = verify_log(s.path, key=Ed25519PrivateKey.generate().public_key())
    assert any("signature" in f.problem for f in rep.findings)


def test_resume_continues_chain(pair, tmp_path):
    _, s, _, sk = pair
    again = AuditLog(s.path, "a", AuditKeys(b"k" * 32, sk.signing))
    again.append("note", text="restart")
    again.signed_head()
    assert verify_log(s.path, key=sk.public).ok
