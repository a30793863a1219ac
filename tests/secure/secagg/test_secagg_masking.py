"""What the coordinator sees from one site: uniform words, fresh every round."""

from __future__ import annotations

import numpy as np
from scipy import stats

from privehr.secure.secagg import constants as c
from privehr.secure.secagg import run_round

ALPHA = 1e-6  # false-alarm rate of each statistical test (the negative control gives p ~ 0)


def _masked_views(rnd, inputs):
    seen = {}

    def hook(stage, responses):
        if stage == c.STAGE_MASKED:
            seen.update({s: r[c.KEY_MASKED].copy() for s, r in responses.items()})
        return responses

    run_round(rnd.coordinator, rnd.sites, inputs, tamper_responses=hook)
    return seen


def _byte_chi2_pvalue(words: np.ndarray) -> float:
    counts = np.bincount(np.ascontiguousarray(words).view(np.uint8), minlength=256)
    return float(stats.chisquare(counts).pvalue)


def _word_ks_pvalue(words: np.ndarray, bits: int) -> float:
    return float(stats.kstest(words.astype(np.float64) / 2.0**bits, "uniform").pvalue)


def test_masked_words_look_uniform_while_inputs_do_not(make_round):
    rnd = make_round(5, 3, dim=1000)
    # a highly structured input: small non-negative values, mostly zero
    structured = np.zeros(1000, dtype=np.uint64)
    structured[::7] = np.arange(0, 1000, 7, dtype=np.uint64) % 17
    inputs = {s: structured.copy() for s in rnd.ids}
    views = _masked_views(rnd, inputs)
    for words in views.values():
        assert words.dtype == np.uint32
        assert _byte_chi2_pvalue(words) > ALPHA
        assert _word_ks_pvalue(words, 32) > ALPHA
    # negative control: the same tests reject the unmasked input
    raw = structured.astype(np.uint32)
    assert _byte_chi2_pvalue(raw) < ALPHA
    assert _word_ks_pvalue(raw, 32) < ALPHA


def test_masked_words_uniform_for_narrow_bit_width(make_round):
    rnd = make_round(4, 3, dim=1000, bits=12)
    inputs = {s: np.full(1000, 5, dtype=np.uint64) for s in rnd.ids}
    for words in _masked_views(rnd, inputs).values():
        assert int(words.max()) < 1 << 12
        counts = np.bincount(words.astype(np.int64) >> 6, minlength=64)  # 64 bins of the range
        assert stats.chisquare(counts).pvalue > ALPHA


def test_masks_differ_between_rounds_for_identical_inputs(make_round):
    provisioned = make_round.provision(5)
    inputs = {s: np.arange(500, dtype=np.uint64) for s in provisioned[0]}
    first = _masked_views(make_round(5, 3, dim=500, round_id=1, provisioned=provisioned), inputs)
    second = _masked_views(make_round(5, 3, dim=500, round_id=2, provisioned=provisioned), inputs)
    for sid in first:
        same = np.count_nonzero(first[sid] == second[sid])
        assert same < 5, (sid, same)  # ~500 / 2^32 expected coincidences
    # different sites also look unrelated within one round
    a, b = sorted(first)[:2]
    assert np.count_nonzero(first[a] == first[b]) < 5


def test_masked_payload_has_fixed_size(make_round):
    rnd = make_round(6, 4, dim=300)
    sizes = {}

    def hook(stage, responses):
        for s, r in responses.items():
            for k, v in r.items():
                if isinstance(v, bytes | np.ndarray):
                    sizes.setdefault((stage, k), set()).add(
                        v.nbytes if isinstance(v, np.ndarray) else len(v)
                    )
                elif isinstance(v, dict):
                    sizes.setdefault((stage, k), set()).update(len(x) for x in v.values())
        return responses

    run_round(
        rnd.coordinator,
        rnd.sites,
        rnd.random_inputs(),
        tamper_responses=hook,
        drop={c.STAGE_MASKED: {rnd.ids[0]}},
    )
    assert all(len(s) == 1 for s in sizes.values()), sizes
    assert sizes[(c.STAGE_MASKED, c.KEY_MASKED)] == {300 * 4}
