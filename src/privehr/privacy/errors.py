"""Errors raised by ``privehr.privacy``.

Each class says what the caller can do about it:

- :class:`PrivacyConfigError` -- a parameter is invalid; the message names the field, the value,
  the rule it broke and how to fix it. Fix the call.
- :class:`EventFormatError` / :class:`UnknownEventType` -- a serialised event (ledger line, wire
  message) does not match the closed registry. Nothing is guessed or imported by name; the
  data must be repaired or produced by a compatible privehr version.
- :class:`UnsupportedEvent` -- an event cannot be accounted. Raised by the dry run, before any
  ledger line is written, and names the offending sub-event by its path.
- :class:`BudgetExceeded` -- a charge would exceed the site's (epsilon_max, delta) budget. Nothing
  was written; the release must not leave the site. The study stops or drops the site.
- :class:`LedgerError` -- the ledger file is unreadable or was opened with settings that differ
  from the ones it was created with (a new study cannot reset a site's budget).
"""

from __future__ import annotations


class PrivacyError(Exception):
    """Base class for every error raised by ``privehr.privacy``."""


class PrivacyConfigError(PrivacyError, ValueError):
    """A parameter broke a rule. The message names field, value, rule and fix."""

    def __init__(self, field: str, value: object, rule: str, fix: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        self.fix = fix
        super().__init__(f"{field}={value!r} is invalid: {rule}. Fix: {fix}")


class EventFormatError(PrivacyError, ValueError):
    """A serialised event does not match its registered, versioned schema."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"serialised DP event at '{path}': {problem}")


class UnknownEventType(EventFormatError):
    """The serialised event names a type outside the closed registry."""

    def __init__(self, path: str, type_name: object, known: list[str]) -> None:
        self.type_name = type_name
        super().__init__(
            path,
            f"unknown event type {type_name!r}; the registry is closed and knows only "
            f"{', '.join(known)}. Nothing is imported by name: upgrade privehr if this ledger "
            "was written by a newer version",
        )


class UnsupportedEvent(PrivacyError):
    """An event (or one of its sub-events) cannot be accounted; nothing was composed."""

    def __init__(self, path: str, event: object, reason: str) -> None:
        self.path = path
        self.event = event
        self.reason = reason
        super().__init__(f"cannot account sub-event '{path}' ({event!r}): {reason}")


class BudgetExceeded(PrivacyError):
    """A release would push a site's epsilon above its budget. Nothing was written."""

    def __init__(
        self,
        *,
        site: str,
        spent: float,
        requested: float,
        projected: float,
        epsilon_max: float,
        delta: float,
        kind: str | None = None,
    ) -> None:
        self.site = site
        self.spent = spent
        self.requested = requested
        self.projected = projected
        self.epsilon_max = epsilon_max
        self.delta = delta
        self.remaining = max(0.0, epsilon_max - spent)
        what = f"the {kind} release" if kind else "this release"
        super().__init__(
            f"site {site!r}: privacy budget exceeded. Spent epsilon={spent:.4g}; {what} "
            f"(epsilon={requested:.4g} on its own) would bring it to {projected:.4g} at "
            f"delta={delta:.3g}, above epsilon_max={epsilon_max:.4g}; remaining "
            f"{self.remaining:.4g}. Nothing was recorded or released: use more noise, fewer "
            "steps, or leave this site out."
        )


class LedgerError(PrivacyError):
    """The ledger file is corrupt or opened with settings that differ from its header."""
