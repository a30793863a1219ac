"""Errors of the SecAgg protocol: what went wrong, and what the caller can do about it.

- ``SecAggConfigError``: the configuration is unsafe or malformed; fix the named field.
- ``SecAggAborted``: the round stopped (too many dropouts, a stage out of order, or a
  coordinator/peer that broke the protocol). No sum is returned and no further share is
  revealed; start a new round with fresh keys.
- ``SecAggCryptoError``: one opaque type for every cryptographic failure (bad signature,
  forged or replayed ciphertext, share that does not reconstruct the committed secret). Like
  ``cryptography.fernet.InvalidToken`` it does not say which check failed, so a probing
  coordinator learns nothing from the error text.
"""

from __future__ import annotations


class SecAggConfigError(ValueError):
    """An unsafe or malformed SecAgg configuration; each problem names field, value, rule, fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid SecAggConfig:\n- " + "\n- ".join(self.problems))


class SecAggAborted(RuntimeError):
    """The round was aborted at ``stage``; nothing partial is ever returned."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"secure aggregation aborted at stage {stage!r}: {reason}")


class SecAggCryptoError(SecAggAborted):
    """Opaque cryptographic failure (signature, AEAD, commitment or key check)."""

    def __init__(self, stage: str, peer: str | None = None) -> None:
        who = f" (message concerning {peer!r})" if peer is not None else ""
        super().__init__(stage, f"cryptographic verification failed{who}")
