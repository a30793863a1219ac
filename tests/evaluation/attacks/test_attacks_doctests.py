import doctest

import pytest

from privehr.evaluation.attacks import audit, inversion, scoring


@pytest.mark.parametrize("module", [audit, inversion, scoring])
def test_docstring_examples_hold(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
