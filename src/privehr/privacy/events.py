"""DP events: what a site released, recorded as values, serialised through a closed registry.

``dp_accounting``'s ``DpEvent`` classes are the source of truth for *what happened* (a
Poisson-sampled Gaussian step, a Gaussian release of a count, a non-private release). They hold
no maths; bounding them is the accountant's job (:mod:`privehr.privacy.accountant`).

Serialisation goes through a **closed, versioned registry** (:data:`REGISTRY`): each type has a
wire name, a version and a field schema with range rules. Decoding never imports a module
named in the data (``DpEvent.from_named_tuple`` does -- we don't use it) and never unpickles.
Compatibility contract (as dp_accounting's): registered types and fields are never removed, new
fields are optional, meanings never change -- so an old ledger stays readable.

One event type is our own: :class:`DistributedDiscreteGaussianEvent`, for distributed DP under
secure aggregation (each site adds a discrete Gaussian share; only the sum carries all the
noise; Kairouz, Liu, Steinke 2021). dp_accounting 0.6.0 has no event for it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import attr
from dp_accounting import dp_event as de

from privehr.privacy.errors import EventFormatError, UnknownEventType

FORMAT_VERSION = 1


@attr.s(frozen=True)
class DistributedDiscreteGaussianEvent(de.DpEvent):
    """``steps`` rounds of a sum of per-site discrete Gaussians under secure aggregation.

    All quantities are in *lattice units* (after scaling and randomised rounding to integers):

    - ``sigma_lattice``: std of the discrete Gaussian each site adds per coordinate.
    - ``l2_sensitivity_lattice``: L2 norm bound of one patient's contribution *after* rounding
      (the post-rounding bound of KLS21, larger than the clip norm times the scale).
    - ``sampling_prob``: Poisson sampling rate of patients at the site (1.0 = everyone).
    - ``steps``: number of such sums released.
    - ``n_sites_min``: fewest sites whose noise is guaranteed to be in the sum (after dropouts).
    - ``dimension``: number of coordinates summed (enters the KLS21 slack tau*d).

    Accounting (see ``accountant.expand``): Poisson-sampled Gaussian with noise multiplier
    ``sqrt(n_sites_min) * sigma_lattice / l2_sensitivity_lattice``, composed ``steps`` times;
    refused when ``sigma_lattice < 3`` because the sum of discrete Gaussians is then not close
    enough to one discrete Gaussian (slack tau*d not negligible).
    """

    sigma_lattice: float = attr.ib()
    l2_sensitivity_lattice: float = attr.ib()
    sampling_prob: float = attr.ib()
    steps: int = attr.ib()
    n_sites_min: int = attr.ib()
    dimension: int = attr.ib()


# Field kinds of the schema.
FLOAT, INT, EVENT, EVENTS, FLOATS, INT_OR_INTS = "float", "int", "event", "events", "floats", "ints"


@dataclass(frozen=True)
class Field:
    """One field of a registered event: its kind and the closed interval its values must lie in."""

    name: str
    kind: str
    lo: float | None = None
    hi: float | None = None
    optional_default: Any = None  # fields added in later versions are optional


@dataclass(frozen=True)
class EventType:
    """A registry entry: wire name, class, current version and field schema."""

    name: str
    cls: type
    version: int
    fields: tuple[Field, ...]


def _t(name: str, cls: type, *fields: Field, version: int = 1) -> EventType:
    return EventType(name, cls, version, fields)


_PROB = {"lo": 0.0, "hi": 1.0}
REGISTRY: dict[str, EventType] = {
    t.name: t
    for t in (
        _t("NoOpDpEvent", de.NoOpDpEvent),
        _t("NonPrivateDpEvent", de.NonPrivateDpEvent),
        _t("GaussianDpEvent", de.GaussianDpEvent, Field("noise_multiplier", FLOAT, lo=0.0)),
        _t("LaplaceDpEvent", de.LaplaceDpEvent, Field("noise_multiplier", FLOAT, lo=0.0)),
        _t(
            "DiscreteLaplaceDpEvent",
            de.DiscreteLaplaceDpEvent,
            Field("noise_parameter", FLOAT, lo=0.0),
            Field("sensitivity", INT, lo=0),
        ),
        _t(
            "RandomizedResponseDpEvent",
            de.RandomizedResponseDpEvent,
            Field("noise_parameter", FLOAT, **_PROB),
            Field("num_buckets", INT, lo=1),
        ),
        _t(
            "SelfComposedDpEvent",
            de.SelfComposedDpEvent,
            Field("event", EVENT),
            Field("count", INT, lo=0),
        ),
        _t("ComposedDpEvent", de.ComposedDpEvent, Field("events", EVENTS)),
        _t(
            "PoissonSampledDpEvent",
            de.PoissonSampledDpEvent,
            Field("sampling_probability", FLOAT, **_PROB),
            Field("event", EVENT),
        ),
        _t(
            "SampledWithReplacementDpEvent",
            de.SampledWithReplacementDpEvent,
            Field("source_dataset_size", INT, lo=0),
            Field("sample_size", INT, lo=0),
            Field("event", EVENT),
        ),
        _t(
            "SampledWithoutReplacementDpEvent",
            de.SampledWithoutReplacementDpEvent,
            Field("source_dataset_size", INT, lo=0),
            Field("sample_size", INT, lo=0),
            Field("event", EVENT),
        ),
        _t(
            "SingleEpochTreeAggregationDpEvent",
            de.SingleEpochTreeAggregationDpEvent,
            Field("noise_multiplier", FLOAT, lo=0.0),
            Field("step_counts", INT_OR_INTS, lo=0),
        ),
        _t(
            "MixtureOfGaussiansDpEvent",
            de.MixtureOfGaussiansDpEvent,
            Field("standard_deviation", FLOAT, lo=0.0),
            Field("sensitivities", FLOATS),
            Field("sampling_probs", FLOATS, **_PROB),
        ),
        _t("ZCDpEvent", de.ZCDpEvent, Field("rho", FLOAT, lo=0.0), Field("xi", FLOAT, lo=0.0)),
        _t(
            "TruncatedSubsampledGaussianDpEvent",
            de.TruncatedSubsampledGaussianDpEvent,
            Field("dataset_size", INT, lo=0),
            Field("sampling_probability", FLOAT, **_PROB),
            Field("truncated_batch_size", INT, lo=0),
            Field("noise_multiplier", FLOAT, lo=0.0),
        ),
        _t(
            "RepeatAndSelectDpEvent",
            de.RepeatAndSelectDpEvent,
            Field("event", EVENT),
            Field("mean", FLOAT, lo=0.0),
            Field("shape", FLOAT, lo=0.0),
        ),
        _t(
            "DistributedDiscreteGaussianEvent",
            DistributedDiscreteGaussianEvent,
            Field("sigma_lattice", FLOAT, lo=0.0),
            Field("l2_sensitivity_lattice", FLOAT, lo=0.0),
            Field("sampling_prob", FLOAT, **_PROB),
            Field("steps", INT, lo=0),
            Field("n_sites_min", INT, lo=1),
            Field("dimension", INT, lo=1),
        ),
    )
}
_BY_CLASS: dict[type, EventType] = {t.cls: t for t in REGISTRY.values()}


def _check_number(path: str, value: Any, f: Field, integer: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventFormatError(path, f"expected a number, got {type(value).__name__} {value!r}")
    if integer and not isinstance(value, int):
        raise EventFormatError(path, f"expected an integer, got {value!r}")
    if not math.isfinite(value):
        raise EventFormatError(path, f"expected a finite number, got {value!r}")
    if f.lo is not None and value < f.lo:
        raise EventFormatError(path, f"{value!r} is below the minimum {f.lo}")
    if f.hi is not None and value > f.hi:
        raise EventFormatError(path, f"{value!r} is above the maximum {f.hi}")


def _check_field(path: str, value: Any, f: Field) -> None:
    if f.kind == FLOAT:
        _check_number(path, value, f, integer=False)
    elif f.kind == INT:
        _check_number(path, value, f, integer=True)
    elif f.kind in (FLOATS, INT_OR_INTS):
        if f.kind == INT_OR_INTS and isinstance(value, int) and not isinstance(value, bool):
            _check_number(path, value, f, integer=True)
            return
        if not isinstance(value, list | tuple):
            raise EventFormatError(path, f"expected a list, got {type(value).__name__}")
        for i, v in enumerate(value):
            _check_number(f"{path}[{i}]", v, f, integer=f.kind == INT_OR_INTS)


def validate(event: de.DpEvent, path: str = "event") -> None:
    """Check an in-memory event tree against the registry (types and value ranges).

    This is the part of the accountant's dry run that needs no maths: an unregistered class, a
    negative noise multiplier or a sampling probability above 1 is reported with its path.
    """
    etype = _BY_CLASS.get(type(event))
    if etype is None:
        raise UnknownEventType(path, type(event).__name__, sorted(REGISTRY))
    for f in etype.fields:
        value = getattr(event, f.name)
        sub = f"{path}.{f.name}"
        if f.kind == EVENT:
            validate(value, sub)
        elif f.kind == EVENTS:
            if not isinstance(value, list | tuple):
                raise EventFormatError(sub, f"expected a list of events, got {value!r}")
            for i, child in enumerate(value):
                validate(child, f"{sub}[{i}]")
        else:
            _check_field(sub, value, f)


def to_json(event: de.DpEvent) -> dict[str, Any]:
    """Serialise an event tree to plain JSON types: ``{"type": name, "v": version, ...}``."""
    validate(event)
    return _encode(event)


def _encode(event: de.DpEvent) -> dict[str, Any]:
    etype = _BY_CLASS[type(event)]
    out: dict[str, Any] = {"type": etype.name, "v": etype.version}
    for f in etype.fields:
        value = getattr(event, f.name)
        if f.kind == EVENT:
            out[f.name] = _encode(value)
        elif f.kind == EVENTS:
            out[f.name] = [_encode(e) for e in value]
        elif f.kind == FLOATS:
            out[f.name] = [float(v) for v in value]
        elif f.kind == INT_OR_INTS and isinstance(value, list | tuple):
            out[f.name] = [int(v) for v in value]
        elif f.kind == FLOAT:
            out[f.name] = float(value)
        else:
            out[f.name] = value
    return out


def from_json(data: Any, path: str = "event") -> de.DpEvent:
    """Rebuild an event from :func:`to_json` output; rejects anything outside the registry."""
    if not isinstance(data, dict):
        raise EventFormatError(path, f"expected an object, got {type(data).__name__}")
    name = data.get("type")
    etype = REGISTRY.get(name) if isinstance(name, str) else None
    if etype is None:
        raise UnknownEventType(path, name, sorted(REGISTRY))
    version = data.get("v")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise EventFormatError(path, f"missing or invalid version 'v': {version!r}")
    if version > etype.version:
        raise EventFormatError(
            path,
            f"{name} version {version} is newer than this privehr knows ({etype.version}); "
            "upgrade privehr to read this ledger",
        )
    known = {f.name for f in etype.fields} | {"type", "v"}
    extra = sorted(set(data) - known)
    if extra:
        raise EventFormatError(path, f"{name} v{version} has no field(s) {extra}")
    kwargs: dict[str, Any] = {}
    for f in etype.fields:
        sub = f"{path}.{f.name}"
        if f.name not in data:
            if f.optional_default is None:
                raise EventFormatError(path, f"{name} is missing field '{f.name}'")
            kwargs[f.name] = f.optional_default
            continue
        value = data[f.name]
        if f.kind == EVENT:
            kwargs[f.name] = from_json(value, sub)
        elif f.kind == EVENTS:
            if not isinstance(value, list):
                raise EventFormatError(sub, "expected a list of events")
            kwargs[f.name] = [from_json(v, f"{sub}[{i}]") for i, v in enumerate(value)]
        else:
            _check_field(sub, value, f)
            if f.kind == FLOAT:
                value = float(value)
            elif f.kind == FLOATS:
                value = [float(v) for v in value]
            kwargs[f.name] = value
    return etype.cls(**kwargs)


def dumps(event: de.DpEvent) -> str:
    """Canonical JSON text of an event (sorted keys, no NaN): equal events give equal text."""
    return json.dumps(to_json(event), sort_keys=True, allow_nan=False, separators=(",", ":"))


def loads(text: str) -> de.DpEvent:
    """Inverse of :func:`dumps`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventFormatError("event", f"not valid JSON: {exc}") from None
    return from_json(data)


def describe(event: de.DpEvent) -> dict[str, Any]:
    """Mechanism parameters of an event for display (the event itself stays the truth).

    Recognises the common shapes -- ``steps`` x PoissonSampled(q, Gaussian(sigma)), a single
    Gaussian, distributed discrete Gaussian, non-private -- and falls back to the type name.
    """
    steps = 1
    inner = event
    if isinstance(inner, de.SelfComposedDpEvent):
        steps, inner = inner.count, inner.event
    if isinstance(inner, de.PoissonSampledDpEvent) and isinstance(
        inner.event, de.GaussianDpEvent
    ):
        return {
            "mechanism": "poisson_sampled_gaussian",
            "noise_multiplier": inner.event.noise_multiplier,
            "sampling_prob": inner.sampling_probability,
            "steps": steps,
        }
    if isinstance(inner, de.GaussianDpEvent):
        return {
            "mechanism": "gaussian",
            "noise_multiplier": inner.noise_multiplier,
            "sampling_prob": 1.0,
            "steps": steps,
        }
    if isinstance(inner, DistributedDiscreteGaussianEvent):
        return {
            "mechanism": "distributed_discrete_gaussian",
            "sigma_lattice": inner.sigma_lattice,
            "l2_sensitivity_lattice": inner.l2_sensitivity_lattice,
            "n_sites_min": inner.n_sites_min,
            "sampling_prob": inner.sampling_prob,
            "steps": inner.steps * steps,
        }
    if isinstance(inner, de.NonPrivateDpEvent):
        return {"mechanism": "non_private", "steps": steps}
    return {"mechanism": _BY_CLASS[type(inner)].name, "steps": steps}
