"""The ``Examples`` sections of the public docstrings run and print what they show (doctest)."""

from __future__ import annotations

import doctest
import importlib
import importlib.util

import pytest

#: modules with examples in their docstrings, and the framework each needs
MODULES = {
    "lieconv_core.arrays": None,
    "lieconv_core.cloud": None,
    "lieconv_core.nn.resnet": None,
    "lieconv_core.groups": None,
    "lieconv_core.groups.so3": None,
    "lieconv_core.groups.subgroup": None,
    "lieconv_core.nn.module": None,
    "lieconv_torch.nn": "torch",
    "lieconv_jax.random": "jax",
}


@pytest.mark.parametrize("name", list(MODULES))
def test_docstring_examples(name: str):
    needs = MODULES[name]
    if needs is not None and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{name} needs {needs}")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
