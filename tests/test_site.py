"""The built site shows every docstring example as a highlighted code block.

The site is built with ``mkdocs build --strict`` (skipped, naming the package, when
mkdocs, mkdocs-material or mkdocstrings is not installed). On the API reference page
every ``>>>`` must stand inside a ``<pre>`` code block (not in run-together prose), no
docstring output such as ``<lambda>`` may be swallowed as an HTML tag, and every example
output line that names a ``<lambda>`` must read on the page as it does in the docstring.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import tinypl

ROOT = Path(__file__).resolve().parent.parent
SITE_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


class PageText(HTMLParser):
    """The text of a page, split into what is inside ``<pre>`` blocks and what is not."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pre_depth = 0
        self.code: list[str] = []
        self.prose: list[str] = []
        self.unknown_tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre":
            self.pre_depth += 1
        if tag == "lambda":
            self.unknown_tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.pre_depth -= 1

    def handle_data(self, data: str) -> None:
        (self.code if self.pre_depth else self.prose).append(data)


@pytest.fixture(scope="module")
def api_page(tmp_path_factory: pytest.TempPathFactory) -> PageText:
    for name in SITE_PACKAGES:
        if importlib.util.find_spec(name.split(".")[0]) is None:
            pytest.skip(f"{name.split('.')[0]} is not installed (the `docs` extra)")
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Formatting signatures requires" not in result.stderr, result.stderr
    page = PageText()
    page.feed((site / "api" / "index.html").read_text())
    return page


def lambda_outputs() -> list[str]:
    """The output lines of the package's docstring examples that name a ``<lambda>``."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    names = ["tinypl", *(m.name for m in pkgutil.walk_packages(tinypl.__path__, "tinypl."))]
    return sorted(
        {
            line.strip()
            for name in names
            for test in finder.find(importlib.import_module(name))
            for example in test.examples
            for line in example.want.splitlines()
            if "<lambda>" in line
        }
    )


@pytest.mark.timeout(180)
def test_examples_are_code_blocks(api_page: PageText) -> None:
    prose = "".join(api_page.prose)
    assert ">>>" not in prose, "an example on the API page is prose, not a code block"
    assert "".join(api_page.code).count(">>>") > 50


@pytest.mark.timeout(180)
def test_lambda_in_outputs_is_kept(api_page: PageText) -> None:
    assert not api_page.unknown_tags, "a <lambda> was swallowed as an HTML tag"
    outputs = lambda_outputs()
    assert outputs, "no docstring example shows a <lambda> any more; update this test"
    code = "".join(api_page.code)
    lost = [line for line in outputs if line not in code]
    assert not lost, f"example outputs missing from the API page: {lost}"
