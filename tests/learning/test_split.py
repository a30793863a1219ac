import numpy as np
import pytest

from privehr.learning._checks import InvalidParameterError
from privehr.learning.split import patient_split


def _rows(n_patients=200, seed=0):
    rng = np.random.default_rng(seed)
    rows_per = rng.integers(1, 6, n_patients)
    pids = np.repeat(np.arange(n_patients) * 7 + 1000, rows_per)
    patient_pos = rng.random(n_patients) < 0.2
    # a positive patient has at least one positive row, others are all negative
    y = np.zeros(pids.size, dtype=int)
    first_row = np.r_[0, np.cumsum(rows_per)[:-1]]
    y[first_row[patient_pos]] = 1
    return pids, y, patient_pos


def test_patient_disjoint_and_complementary():
    pids, y, _ = _rows()
    tr, te = patient_split(pids, y, test_frac=0.25, seed=1)
    assert tr.dtype == bool and te.dtype == bool
    assert not (tr & te).any() and (tr | te).all()
    assert set(pids[tr]).isdisjoint(set(pids[te]))


def test_stratified_by_patient_label():
    pids, y, patient_pos = _rows()
    tr, te = patient_split(pids, y, test_frac=0.25, seed=2)
    test_patients = np.unique(pids[te])
    pos_patients = np.unique(pids[y == 1])
    n_pos, n_all = patient_pos.sum(), patient_pos.size
    assert len(test_patients) == round(0.25 * n_pos) + round(0.25 * (n_all - n_pos))
    assert len(np.intersect1d(test_patients, pos_patients)) == round(0.25 * n_pos)


def test_seeded_and_row_order_invariant():
    pids, y, _ = _rows()
    a = patient_split(pids, y, seed=5)[1]
    b = patient_split(pids, y, seed=5)[1]
    c = patient_split(pids, y, seed=6)[1]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    perm = np.random.default_rng(0).permutation(pids.size)
    shuffled = patient_split(pids[perm], y[perm], seed=5)[1]
    assert set(pids[perm][shuffled]) == set(pids[a])


def test_small_classes_keep_both_sides():
    pids = np.array(["a", "b", "c", "d"])
    y = np.array([1, 1, 0, 0])
    tr, te = patient_split(pids, y, test_frac=0.1, seed=0)
    assert y[te].sum() == 1 and (1 - y[te]).sum() == 1  # at least one per class in test
    assert y[tr].sum() == 1 and (1 - y[tr]).sum() == 1  # and one per class left in train


def test_validation():
    with pytest.raises(InvalidParameterError) as err:
        patient_split(np.arange(3), np.array([0, 1]), test_frac=1.5, seed=0)
    assert len(err.value.problems) == 2
    with pytest.raises(InvalidParameterError, match="binary"):
        patient_split(np.arange(3), np.array([0, 1, 2]), seed=0)
