"""Errors raised by the homomorphic-encryption layer.

Each class says what the caller can do about it (the Opacus ``validators/errors.py`` habit):

- :class:`HeParameterError` -- a setting or input is wrong; the message names the field, the
  value, the rule and the fix. Fix the call and retry.
- :class:`ContextMismatchError` -- a context's SHA-256 differs from the one pinned at the key
  ceremony. TenSEAL loads a corrupted or substituted context without complaint, and
  encrypting under it would either produce garbage or hand data to whoever made it. Fetch the
  context again from the key holder (or re-run the ceremony); never re-pin to make it pass.
- :class:`CiphertextError` -- one opaque error for every ciphertext that cannot be used
  (malformed, wrong context, wrong level, wrong size). Like ``cryptography``'s
  ``InvalidToken`` it does not say which check failed, so it cannot serve as an oracle.
- :class:`DecryptionUnavailableError` -- this party holds only a public context. That is the
  point of the ceremony (the coordinator must not decrypt); send the ciphertext to the key
  holder instead.
- :class:`AggregationError` -- the aggregation protocol was used out of order or
  inconsistently (a site added twice, lengths differ, too few sites).
- :class:`QueryBudgetExceededError` -- an encrypted-scoring site asked for more patients than
  its budget allows; the host refuses because d+1 exact scores determine a linear model.
"""

from __future__ import annotations


class HeError(Exception):
    """Base class for every error of :mod:`privehr.secure.he`."""


class HeParameterError(HeError, ValueError):
    """A setting or input is invalid; the message names field, value, rule and fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ContextMismatchError(HeError):
    """A context's SHA-256 differs from the hash pinned at the key ceremony."""


class CiphertextError(HeError):
    """A ciphertext cannot be used. Deliberately opaque: it never says which check failed."""


class DecryptionUnavailableError(HeError):
    """This party holds a public context only and therefore cannot decrypt."""


class AggregationError(HeError):
    """The encrypted-aggregation protocol was used out of order or inconsistently."""


class QueryBudgetExceededError(HeError):
    """A site asked the scoring host for more patient scores than its budget allows."""
