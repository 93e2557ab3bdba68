"""Every docstring example of every tinypl module runs, as toolz does it.

The examples are collected with :mod:`doctest` over every module of the package (the
public ones and the private ones where the code lives), one test per module. A module
whose examples import an optional package (``torch``) is skipped with a reason naming
it when that package is missing, and runs when it is present.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import re

import pytest

import tinypl

MODULES = [
    "tinypl",
    *sorted(info.name for info in pkgutil.walk_packages(tinypl.__path__, prefix="tinypl.")),
]
OPTIONAL_IMPORT = re.compile(r"^\s*(?:import|from)\s+(torch|torchvision)\b", re.M)


def examples(module_name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [test for test in finder.find(module) if test.examples]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name: str) -> None:
    tests = examples(module_name)
    needed = {
        name
        for test in tests
        for example in test.examples
        for name in OPTIONAL_IMPORT.findall(example.source)
    }
    for name in sorted(needed):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{module_name}: its examples need {name}, which is not installed")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


def test_the_package_has_examples() -> None:
    assert sum(len(test.examples) for name in MODULES for test in examples(name)) > 100
