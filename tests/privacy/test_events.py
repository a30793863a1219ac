import json

import pytest
from dp_accounting import dp_event as de

from privehr.privacy import events as ev
from privehr.privacy.errors import EventFormatError, UnknownEventType

SAMPLES = [
    de.NoOpDpEvent(),
    de.NonPrivateDpEvent(),
    de.GaussianDpEvent(1.3),
    de.LaplaceDpEvent(0.5),
    de.DiscreteLaplaceDpEvent(0.2, 3),
    de.RandomizedResponseDpEvent(0.1, 4),
    de.SelfComposedDpEvent(de.GaussianDpEvent(2.0), 7),
    de.ComposedDpEvent([de.GaussianDpEvent(2.0), de.LaplaceDpEvent(1.0)]),
    de.PoissonSampledDpEvent(0.01, de.GaussianDpEvent(1.1)),
    de.SampledWithReplacementDpEvent(100, 10, de.GaussianDpEvent(1.0)),
    de.SampledWithoutReplacementDpEvent(100, 10, de.GaussianDpEvent(1.0)),
    de.SingleEpochTreeAggregationDpEvent(1.0, [3, 4]),
    de.SingleEpochTreeAggregationDpEvent(1.0, 5),
    de.MixtureOfGaussiansDpEvent(1.0, [0.0, 1.0], [0.5, 0.5]),
    de.ZCDpEvent(0.5, 0.0),
    de.TruncatedSubsampledGaussianDpEvent(1000, 0.01, 20, 1.0),
    de.RepeatAndSelectDpEvent(de.GaussianDpEvent(1.0), 2.0, 1.0),
    ev.DistributedDiscreteGaussianEvent(4.0, 100.5, 0.1, 50, 3, 1000),
]


def test_registry_covers_every_sample_type():
    assert {type(e) for e in SAMPLES} == {t.cls for t in ev.REGISTRY.values()}


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip_through_json_text(event):
    text = ev.dumps(event)
    back = ev.loads(text)
    assert type(back) is type(event)
    assert ev.dumps(back) == text
    assert json.loads(text)["type"] == type(event).__name__


def test_equal_events_have_equal_canonical_text():
    a = de.PoissonSampledDpEvent(0.01, de.GaussianDpEvent(1.0))
    b = de.PoissonSampledDpEvent(0.01, de.GaussianDpEvent(1))
    assert ev.dumps(a) == ev.dumps(b)
    assert ev.dumps(a) != ev.dumps(de.PoissonSampledDpEvent(0.02, de.GaussianDpEvent(1.0)))


def test_unknown_type_is_rejected_with_known_types_listed():
    with pytest.raises(UnknownEventType) as err:
        ev.from_json({"type": "os.system", "v": 1})
    assert "os.system" in str(err.value)
    assert "GaussianDpEvent" in str(err.value)


def test_named_tuple_style_import_by_name_is_refused():
    data = {"module_name": "subprocess", "class_name": "Popen", "type": "Popen", "v": 1}
    with pytest.raises(UnknownEventType):
        ev.from_json(data)


def test_nested_unknown_type_names_its_path():
    data = {"type": "PoissonSampledDpEvent", "v": 1, "sampling_probability": 0.1,
            "event": {"type": "Evil", "v": 1}}
    with pytest.raises(UnknownEventType) as err:
        ev.from_json(data)
    assert err.value.path == "event.event"


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d.update(v=2), "newer"),
        (lambda d: d.pop("v"), "version"),
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d.pop("noise_multiplier"), "missing"),
        (lambda d: d.update(noise_multiplier=-1.0), "minimum"),
        (lambda d: d.update(noise_multiplier="1.0"), "number"),
        (lambda d: d.update(noise_multiplier=True), "number"),
    ],
)
def test_malformed_records_are_rejected(mutate, needle):
    data = ev.to_json(de.GaussianDpEvent(1.0))
    mutate(data)
    with pytest.raises(EventFormatError) as err:
        ev.from_json(data)
    assert needle in str(err.value)


def test_probability_above_one_is_rejected_on_encode_and_decode():
    with pytest.raises(EventFormatError, match="maximum"):
        ev.to_json(de.PoissonSampledDpEvent(1.5, de.GaussianDpEvent(1.0)))
    data = {"type": "PoissonSampledDpEvent", "v": 1, "sampling_probability": 1.5,
            "event": {"type": "GaussianDpEvent", "v": 1, "noise_multiplier": 1.0}}
    with pytest.raises(EventFormatError, match="sampling_probability"):
        ev.from_json(data)


def test_unregistered_subclass_cannot_be_serialised():
    class Mine(de.GaussianDpEvent):
        pass

    with pytest.raises(UnknownEventType):
        ev.to_json(Mine(1.0))


def test_describe_dpsgd_event():
    e = de.SelfComposedDpEvent(de.PoissonSampledDpEvent(0.02, de.GaussianDpEvent(1.1)), 300)
    assert ev.describe(e) == {"mechanism": "poisson_sampled_gaussian", "noise_multiplier": 1.1,
                              "sampling_prob": 0.02, "steps": 300}
    assert ev.describe(de.NonPrivateDpEvent())["mechanism"] == "non_private"
