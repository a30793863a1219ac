"""Docstring examples of the metrics modules must run."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["privehr.evaluation.metrics", "privehr.evaluation.histograms"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
