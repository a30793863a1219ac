"""Payload checks and the signed statements of the protocol.

Payloads are plain ``dict[str, Any]`` with only wire-codec types (None, bool, int, float, str,
bytes, list, dict, numeric numpy arrays). Everything received is checked for type and size
before use; a malformed payload aborts the stage with a message naming the key, never a
``KeyError`` from deep inside the protocol.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from privehr.secure.secagg.constants import (
    KEY_C_PK,
    KEY_COMMIT,
    KEY_MODEL_DIGEST,
    KEY_S_PK,
    KEY_SIGNATURE,
    LABEL_ADVERTISE,
    LABEL_CONSISTENCY,
)
from privehr.secure.secagg.errors import SecAggAborted
from privehr.secure.secagg.keys import KEY_BYTES, encode_fields

SIGNATURE_BYTES = 64
MAX_DIGEST_BYTES = 64

Payload = dict[str, Any]


def require_bytes(stage: str, payload: Mapping[str, Any], key: str, size: int | None) -> bytes:
    value = payload.get(key) if isinstance(payload, Mapping) else None
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        want = "bytes" if size is None else f"{size} bytes"
        raise SecAggAborted(stage, f"malformed payload: {key!r} must be {want}")
    return value


def require_ids(stage: str, payload: Mapping[str, Any], key: str) -> list[str]:
    value = payload.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SecAggAborted(stage, f"malformed payload: {key!r} must be a list of site ids")
    if len(set(value)) != len(value):
        raise SecAggAborted(stage, f"malformed payload: {key!r} repeats a site id")
    return value


def require_bytes_map(
    stage: str, payload: Mapping[str, Any], key: str, size: int | None = None
) -> dict[str, bytes]:
    value = payload.get(key)
    ok = isinstance(value, Mapping)
    if ok:  # plain loop and exact types: this runs for every share of every site
        for k, v in value.items():
            if type(k) is not str or type(v) is not bytes or (size is not None and len(v) != size):
                ok = False
                break
    if not ok:
        raise SecAggAborted(stage, f"malformed payload: {key!r} must map site ids to bytes")
    return dict(value)


def check_advert(stage: str, advert: Any) -> dict[str, bytes]:
    """Shape of one advertisement ``{c_pk, s_pk, b_commit, model_digest, signature}``."""
    if not isinstance(advert, Mapping):
        raise SecAggAborted(stage, "malformed payload: advertisement must be a dict")
    out = {
        KEY_C_PK: require_bytes(stage, advert, KEY_C_PK, KEY_BYTES),
        KEY_S_PK: require_bytes(stage, advert, KEY_S_PK, KEY_BYTES),
        KEY_COMMIT: require_bytes(stage, advert, KEY_COMMIT, 32),
        KEY_MODEL_DIGEST: require_bytes(stage, advert, KEY_MODEL_DIGEST, None),
        KEY_SIGNATURE: require_bytes(stage, advert, KEY_SIGNATURE, SIGNATURE_BYTES),
    }
    if len(out[KEY_MODEL_DIGEST]) > MAX_DIGEST_BYTES:
        raise SecAggAborted(stage, f"malformed payload: {KEY_MODEL_DIGEST!r} longer than 64 bytes")
    return out


def advert_statement(cfg_digest: bytes, site_id: str, advert: Mapping[str, bytes]) -> bytes:
    """What a site signs at advertise time: its round keys, seed commitment and model digest."""
    return encode_fields(
        LABEL_ADVERTISE,
        cfg_digest,
        site_id,
        advert[KEY_C_PK],
        advert[KEY_S_PK],
        advert[KEY_COMMIT],
        advert[KEY_MODEL_DIGEST],
    )


def transcript_hash(cfg_digest: bytes, adverts: Mapping[str, Mapping[str, bytes]]) -> bytes:
    """Hash of every advertisement of the round, in id order (graph seed, consistency check)."""
    h = hashlib.sha256(encode_fields(LABEL_ADVERTISE, cfg_digest))
    for sid in sorted(adverts):
        h.update(advert_statement(cfg_digest, sid, adverts[sid]))
        h.update(encode_fields(adverts[sid][KEY_SIGNATURE]))
    return h.digest()


def consistency_statement(cfg_digest: bytes, transcript: bytes, survivors: Iterable[str]) -> bytes:
    """What a site signs before any share is revealed: the survivor set it was told."""
    return encode_fields(LABEL_CONSISTENCY, cfg_digest, transcript, *sorted(survivors))
