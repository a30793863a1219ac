"""The per-site privacy ledger: every release a site makes, append-only, beside its store.

Why beside the store (``<store>.ledger.jsonl``, see :func:`ledger_path_for_store`): the budget
belongs to the patients in the store, not to a run. Every study, configuration, attack and
audit that touches the store composes into the same ledger, so a new study cannot reset it.

File format (JSON Lines, append-only):

- line 1, ``{"record": "header", ...}``: format version, site, delta, epsilon_max,
  shared_patient_factor. Reopening with different settings is an error.
- one ``{"record": "release", ...}`` line per release: the serialised event (the source of
  truth), study, config, round, kind, mechanism parameters, meta, and the cumulative epsilon
  (PLD, and RDP beside it) at that moment -- for display and audit only; it is always
  recomputable from the events.

Write-ahead and never refunded: :meth:`PrivacyLedger.charge` must be called *before* the
release leaves the site; an aborted round stays charged. Appends hold a file lock
(``filelock``), re-read lines other processes appended, check the budget, then write and fsync,
so several processes at one site compose into one budget.

Non-private releases are recorded as ``NonPrivateDpEvent`` (epsilon = inf), never skipped, so
no report can show a finite epsilon for a configuration that leaked something unaccounted.

Assumption -- one site per patient: pseudonyms are per site, so a patient treated at two
hospitals spends epsilon at both and no ledger notices. ``shared_patient_factor = k`` declares
that a patient may appear at up to ``k`` sites whose spending mirrors this one: every epsilon
is then computed for this ledger's events composed ``k`` times. k = 1 is the one-site
assumption.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dp_accounting import dp_event as de
from filelock import FileLock

from privehr.privacy import events as ev
from privehr.privacy.accountant import Accountant
from privehr.privacy.errors import (
    BudgetExceeded,
    EventFormatError,
    LedgerError,
    PrivacyConfigError,
)

LEDGER_FORMAT = "privehr-privacy-ledger"
LEDGER_VERSION = 1
#: What a site can send off-site. Everything in this list is a release to be charged.
KINDS = (
    "model_update",
    "standardisation_stats",
    "histogram",
    "counts",
    "vocabulary",
    "weights",
    "metrics",
    "losses",
    "attack",
    "audit",
    "other",
)


def ledger_path_for_store(store: str | os.PathLike[str]) -> Path:
    """Where a store's ledger lives: ``<store>.ledger.jsonl``, next to the store file."""
    return Path(str(store) + ".ledger.jsonl")


def _eps_to_json(x: float | None) -> float | str | None:
    return "inf" if x is not None and math.isinf(x) else x


def _eps_from_json(x: Any) -> float | None:
    return math.inf if x == "inf" else x


@dataclass(frozen=True)
class LedgerEntry:
    """One release as read back from the ledger file."""

    seq: int
    time: str
    site: str
    study: str
    config: str
    round: int | None
    kind: str
    event: de.DpEvent
    mechanism: dict[str, Any]
    meta: dict[str, Any]
    epsilon: float
    epsilon_rdp: float | None
    delta: float
    extra: dict[str, Any] = field(default_factory=dict)


class PrivacyLedger:
    """Append-only, file-locked record of a site's DP releases, with a budget.

    >>> import tempfile, os
    >>> from dp_accounting.dp_event import GaussianDpEvent
    >>> d = tempfile.mkdtemp()
    >>> led = PrivacyLedger(os.path.join(d, "a.ledger.jsonl"), site="A", delta=1e-5)
    >>> e = led.charge(GaussianDpEvent(4.0), study="s", config="c", round=0, kind="counts")
    >>> round(led.epsilon(), 3) == round(e.epsilon, 3)
    True
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        site: str | None = None,
        delta: float | None = None,
        epsilon_max: float | None = None,
        shared_patient_factor: int | None = None,
        accountant: Accountant | None = None,
    ) -> None:
        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock")
        self._accountant = accountant or Accountant()
        self._entries: list[LedgerEntry] = []
        self._offset = 0
        self._lines = 0
        requested = {
            "site": site,
            "delta": delta,
            "epsilon_max": epsilon_max,
            "shared_patient_factor": shared_patient_factor,
        }
        with self._lock:
            if self.path.exists() and self.path.stat().st_size > 0:
                self._header = self._read_header()
                for name, value in requested.items():
                    if value is not None and value != self._header[name]:
                        raise LedgerError(
                            f"ledger {self.path} was created with {name}="
                            f"{self._header[name]!r}; reopening with {name}={value!r} is refused "
                            "(a study cannot reset or change a site's budget). Omit the argument "
                            "to use the stored value."
                        )
                self._refresh()
            else:
                self._header = self._new_header(requested)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._append_line(self._header)
                self._refresh()

    # -- settings ---------------------------------------------------------------------------
    @staticmethod
    def _new_header(req: Mapping[str, Any]) -> dict[str, Any]:
        site, delta = req["site"], req["delta"]
        eps_max, factor = req["epsilon_max"], req["shared_patient_factor"] or 1
        if not isinstance(site, str) or not site:
            raise PrivacyConfigError("site", site, "a new ledger needs a site name", "site='A'")
        if not isinstance(delta, int | float) or not 0 < delta < 1:
            raise PrivacyConfigError(
                "delta", delta, "must lie in (0, 1)", "use delta <= min(1e-5, 1/(10 n))"
            )
        if eps_max is not None and not (isinstance(eps_max, int | float) and eps_max > 0):
            raise PrivacyConfigError(
                "epsilon_max", eps_max, "must be > 0 or None (no budget)", "e.g. 8.0"
            )
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise PrivacyConfigError(
                "shared_patient_factor", factor, "must be an integer >= 1",
                "1 = each patient is treated at one site only",
            )
        return {
            "record": "header",
            "format": LEDGER_FORMAT,
            "version": LEDGER_VERSION,
            "site": site,
            "delta": float(delta),
            "epsilon_max": None if eps_max is None else float(eps_max),
            "shared_patient_factor": factor,
            "neighbouring": "add_or_remove_one_patient",
            "created": datetime.now(UTC).isoformat(),
        }

    @property
    def site(self) -> str:
        return self._header["site"]

    @property
    def delta(self) -> float:
        return self._header["delta"]

    @property
    def epsilon_max(self) -> float | None:
        return self._header["epsilon_max"]

    @property
    def shared_patient_factor(self) -> int:
        return self._header["shared_patient_factor"]

    # -- file io ----------------------------------------------------------------------------
    def _read_header(self) -> dict[str, Any]:
        with self.path.open("rb") as fh:
            first = fh.readline()
        try:
            header = json.loads(first)
        except json.JSONDecodeError as exc:
            raise LedgerError(f"{self.path}: line 1 is not JSON ({exc})") from None
        if header.get("record") != "header" or header.get("format") != LEDGER_FORMAT:
            raise LedgerError(f"{self.path}: line 1 is not a privehr ledger header")
        if header.get("version") != LEDGER_VERSION:
            raise LedgerError(
                f"{self.path}: ledger version {header.get('version')!r} unsupported "
                f"(this privehr reads version {LEDGER_VERSION})"
            )
        return header

    def _append_line(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
        with self.path.open("ab") as fh:
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())

    def _refresh(self) -> None:
        """Read lines appended since the last read (by us or another process). Lock held."""
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        if not data:
            return
        if not data.endswith(b"\n"):
            raise LedgerError(
                f"{self.path}: the last line is incomplete (a crash while writing?); inspect it "
                "by hand -- a charged release is never removed, only a torn line may be"
            )
        for raw in data.splitlines():
            self._lines += 1
            if self._lines > 1:  # line 1 is the header
                self._entries.append(self._parse(raw, self._lines))
        self._offset += len(data)

    def _parse(self, raw: bytes, lineno: int) -> LedgerEntry:
        try:
            rec = json.loads(raw)
            if rec.get("record") != "release":
                raise LedgerError(f"{self.path}:{lineno}: not a release record")
            event = ev.from_json(rec["event"])
            return LedgerEntry(
                seq=rec["seq"], time=rec["time"], site=rec["site"], study=rec["study"],
                config=rec["config"], round=rec["round"], kind=rec["kind"], event=event,
                mechanism=rec["mechanism"], meta=rec["meta"],
                epsilon=_eps_from_json(rec["epsilon"]),
                epsilon_rdp=_eps_from_json(rec["epsilon_rdp"]), delta=rec["delta"],
            )
        except (json.JSONDecodeError, KeyError, EventFormatError) as exc:
            raise LedgerError(f"{self.path}:{lineno}: unreadable release record: {exc}") from None

    # -- accounting -------------------------------------------------------------------------
    def _events(self, extra: de.DpEvent | None = None, study: str | None = None):
        out = [e.event for e in self._entries if study is None or e.study == study]
        return out + ([extra] if extra is not None else [])

    def _eps(self, events, delta: float | None = None, method: str = "pld"):
        acct = self._accountant
        d = self.delta if delta is None else delta
        fn = acct.epsilon if method == "pld" else acct.epsilon_rdp
        return fn(events, d, repeat=self.shared_patient_factor)

    def _check_locked(self, event: de.DpEvent, kind: str | None) -> tuple[float, float]:
        self._accountant.check(event)  # dry run names a bad sub-event; nothing written
        projected = self._eps(self._events(event))
        if self.epsilon_max is not None and projected > self.epsilon_max:
            raise BudgetExceeded(
                site=self.site, spent=self._eps(self._events()),
                requested=self._eps([event]), projected=projected,
                epsilon_max=self.epsilon_max, delta=self.delta, kind=kind,
            )
        return projected, self.epsilon_max or math.inf

    def check(self, event: de.DpEvent, *, kind: str | None = None) -> float:
        """Return the epsilon the ledger would have after ``event``; raise if over budget.

        Call it before touching any data for a round; :meth:`charge` checks again.
        """
        with self._lock:
            self._refresh()
            return self._check_locked(event, kind)[0]

    def charge(
        self,
        event: de.DpEvent,
        *,
        study: str,
        config: str,
        round: int | None,  # noqa: A002 - the protocol's word
        kind: str,
        meta: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """Record a release *before* it leaves the site (write-ahead, never refunded).

        Raises :class:`BudgetExceeded` (nothing written) if the site's budget would be exceeded,
        :class:`UnsupportedEvent`/:class:`EventFormatError` for an unaccountable event.
        """
        if kind not in KINDS:
            raise PrivacyConfigError("kind", kind, f"must be one of {', '.join(KINDS)}",
                                     "use 'other' and describe it in meta")
        for name, value in (("study", study), ("config", config)):
            if not isinstance(value, str) or not value:
                raise PrivacyConfigError(name, value, "must be a non-empty string", "name it")
        if round is not None and (isinstance(round, bool) or not isinstance(round, int)):
            raise PrivacyConfigError("round", round, "must be an int or None", "round=0")
        meta_json = dict(meta or {})
        try:
            json.dumps(meta_json, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise PrivacyConfigError("meta", meta, f"must be plain JSON ({exc})",
                                     "pass str/int/float/list/dict values") from None
        with self._lock:
            self._refresh()
            projected, _ = self._check_locked(event, kind)
            rdp = self._eps(self._events(event), method="rdp")
            record = {
                "record": "release",
                "seq": len(self._entries),
                "time": datetime.now(UTC).isoformat(),
                "site": self.site,
                "study": study,
                "config": config,
                "round": round,
                "kind": kind,
                "event": ev.to_json(event),
                "mechanism": ev.describe(event),
                "meta": meta_json,
                "epsilon": _eps_to_json(projected),
                "epsilon_rdp": _eps_to_json(rdp),
                "delta": self.delta,
            }
            self._append_line(record)
            self._refresh()
            return self._entries[-1]

    def record_non_private(self, *, study: str, config: str, round: int | None,  # noqa: A002
                           kind: str, meta: Mapping[str, Any] | None = None) -> LedgerEntry:
        """Charge a release made without DP (epsilon = inf from then on)."""
        return self.charge(de.NonPrivateDpEvent(), study=study, config=config, round=round,
                           kind=kind, meta=meta)

    # -- reading ----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Pick up releases other processes have appended since we last looked."""
        with self._lock:
            self._refresh()

    def entries(self) -> list[LedgerEntry]:
        """All releases, oldest first (re-reads the file first)."""
        self.refresh()
        return list(self._entries)

    def epsilon(self, delta: float | None = None) -> float:
        """PLD epsilon of everything released so far, at ``delta`` (default: the ledger's)."""
        self.refresh()
        return self._eps(self._events(), delta)

    def epsilon_rdp(self, delta: float | None = None) -> float | None:
        """RDP epsilon (conservative cross-check; None if RDP cannot account an event)."""
        self.refresh()
        return self._eps(self._events(), delta, method="rdp")

    def remaining(self) -> float:
        """Budget left (inf without a budget)."""
        if self.epsilon_max is None:
            return math.inf
        return max(0.0, self.epsilon_max - self.epsilon())

    def by_study(self) -> dict[str, dict[str, Any]]:
        """Per study: number of releases, epsilon of its releases alone, cumulative after it."""
        self.refresh()
        out: dict[str, dict[str, Any]] = {}
        for e in self._entries:
            row = out.setdefault(e.study, {"releases": 0, "non_private": 0})
            row["releases"] += 1
            row["non_private"] += isinstance(e.event, de.NonPrivateDpEvent)
            row["epsilon_cumulative_after"] = e.epsilon
        for study, row in out.items():
            row["epsilon_alone"] = self._eps(self._events(study=study))
        return out

    def summary(self) -> dict[str, Any]:
        """Headline numbers for reports: site, (epsilon, delta), RDP, budget, releases by kind."""
        self.refresh()
        eps = self._eps(self._events())
        return {
            "site": self.site,
            "delta": self.delta,
            "epsilon": eps,
            "epsilon_rdp": self._eps(self._events(), method="rdp"),
            "epsilon_max": self.epsilon_max,
            "remaining": (math.inf if self.epsilon_max is None
                          else max(0.0, self.epsilon_max - eps)),
            "releases": len(self._entries),
            "non_private_releases": sum(
                isinstance(e.event, de.NonPrivateDpEvent) for e in self._entries
            ),
            "by_kind": dict(Counter(e.kind for e in self._entries)),
            "shared_patient_factor": self.shared_patient_factor,
            "accountant": "pld (rdp cross-check)",
        }
