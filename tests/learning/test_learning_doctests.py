"""Docstring examples are part of the documentation: they must run."""

import doctest
import importlib

import pytest

MODULES = [
    "privehr.learning.strategies",
    "privehr.learning.split",
    "privehr.learning.standardize",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
