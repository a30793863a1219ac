"""Patient-disjoint, label-stratified train/test split of a site's rows.

Rows of one patient (encounter-level tasks) are correlated: if some land in train and
others in test, test metrics are optimistic and membership-inference evidence is
meaningless. So whole patients are assigned to a side. A patient's label is the max of its
rows (ever positive); patients are shuffled within each label class by a seeded numpy
``Generator`` and the first ``round(test_frac * n_class)`` go to test.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from privehr.learning._checks import Problems


def patient_split(
    patient_ids: Any,
    y: Any,
    *,
    test_frac: float = 0.25,
    seed: int | np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Return boolean row masks ``(train_mask, test_mask)``, complementary and disjoint.

    Depends only on the set of (patient, label) pairs and the seed, not on row order. Within
    a class with at least two patients, test gets at least one and train keeps at least one;
    a class with a single patient goes to train.

    >>> train, test = patient_split(["a", "a", "b", "c", "d"], [0, 1, 0, 1, 0], seed=0)
    >>> bool(train[0] == train[1])  # both rows of patient "a" stay together
    True
    """
    ids = np.asarray(patient_ids)
    lab = np.asarray(y)
    p = Problems("patient_split")
    p.require(ids.ndim == 1, "patient_ids.ndim", ids.ndim, "be 1", "pass one id per row")
    p.require(lab.ndim == 1, "y.ndim", lab.ndim, "be 1", "pass one label per row")
    p.require(ids.shape == lab.shape, "len(y)", lab.shape, f"equal len(patient_ids)={ids.shape}",
              "pass one label per row")
    p.require(ids.size > 0, "len(patient_ids)", ids.size, "be > 0", "pass at least one row")
    p.require(isinstance(test_frac, float | int) and 0.0 < test_frac < 1.0, "test_frac",
              test_frac, "lie strictly between 0 and 1", "use e.g. 0.25")
    p.raise_if_any()
    p.require(bool(np.isin(lab, (0, 1)).all()), "y", "values outside {0, 1}", "be binary 0/1",
              "encode the outcome as 0/1")
    p.raise_if_any()

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    uniq, inverse = np.unique(ids, return_inverse=True)
    patient_label = np.zeros(uniq.size, dtype=np.int64)
    np.maximum.at(patient_label, inverse, lab.astype(np.int64))

    test_patient = np.zeros(uniq.size, dtype=bool)
    for cls in (0, 1):
        members = np.flatnonzero(patient_label == cls)
        n_c = members.size
        if n_c < 2:
            continue
        n_test = min(max(int(round(test_frac * n_c)), 1), n_c - 1)
        chosen = rng.permutation(members)[:n_test]
        test_patient[chosen] = True
    test_mask = test_patient[inverse]
    return ~test_mask, test_mask
