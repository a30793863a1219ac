"""Stage names, wire keys and domain-separation labels of the SecAgg protocol, in one place.

Why one module: the coordinator, the sites, the driver and the lead's transport all refer to
the same strings; a typo in one of them would otherwise surface as a silent dropout. Changing a
value here changes the wire format (and the signed transcripts), so treat them as versioned.
"""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = "privehr-secagg/1"

# Stages, in protocol order (Bonawitz et al. 2017 rounds 0-4; Bell et al. 2020 SecAgg+).
STAGE_ADVERTISE: Final = "advertise_keys"
STAGE_SHARE: Final = "share_keys"
STAGE_MASKED: Final = "masked_input"
STAGE_CONSISTENCY: Final = "consistency_check"
STAGE_UNMASK: Final = "unmask"
STAGES: Final = (STAGE_ADVERTISE, STAGE_SHARE, STAGE_MASKED, STAGE_CONSISTENCY, STAGE_UNMASK)

# Wire keys (payload dict keys). Coordinator -> site.
KEY_STAGE: Final = "stage"
KEY_ROUND: Final = "round_id"
KEY_ADVERTISED: Final = "advertised"  # {site_id: advertisement dict}
KEY_CIPHERTEXTS: Final = "ciphertexts"  # {peer_id: bytes}
KEY_U2: Final = "share_senders"  # sites whose shares were relayed (list[str])
KEY_SURVIVORS: Final = "survivors"  # sites whose masked input is in the sum (list[str])
KEY_DROPPED: Final = "dropped"  # sites that shared keys but sent no masked input (list[str])
KEY_SIGNATURES: Final = "signatures"  # {site_id: consistency signature}

# Site -> coordinator.
KEY_C_PK: Final = "c_pk"  # X25519 public key for the share channel
KEY_S_PK: Final = "s_pk"  # X25519 public key for pairwise masks
KEY_COMMIT: Final = "b_commit"  # hash commitment to the self-mask seed
KEY_MODEL_DIGEST: Final = "model_digest"  # model_hash_check: digest of the model received
KEY_SIGNATURE: Final = "signature"  # Ed25519 signature by the site's identity key
KEY_MASKED: Final = "masked_input"  # np.ndarray of words mod 2^b
KEY_B_SHARES: Final = "b_shares"  # {owner_id: share bytes} for survivors
KEY_SK_SHARES: Final = "sk_shares"  # {owner_id: share bytes} for dropped sites

# Domain-separation labels (bound into every signature, KDF and AEAD associated data).
LABEL_ADVERTISE: Final = b"privehr/secagg/advertise"
LABEL_CONSISTENCY: Final = b"privehr/secagg/consistency"
LABEL_SHARE_KEY: Final = b"privehr/secagg/share-channel"
LABEL_SHARE_AD: Final = b"privehr/secagg/share-ad"
LABEL_PAIR_MASK: Final = b"privehr/secagg/pairwise-mask"
LABEL_SELF_MASK: Final = b"privehr/secagg/self-mask"
LABEL_COMMIT: Final = b"privehr/secagg/self-seed-commit"
LABEL_GRAPH: Final = b"privehr/secagg/graph"
