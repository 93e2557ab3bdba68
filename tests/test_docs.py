"""Every Python example in the documentation runs, and prints what the page says it prints.

Conventions for ``docs/*.md`` and ``README.md``:

- Every fenced block opened with ```` ```python ```` (with or without attributes, e.g.
  ```` ```python title="pipeline.py" ````) is executed. The blocks of one page run in
  order, in one namespace shared by that page only, so a later block may use the names
  an earlier one defined.
- A ```` ```text title="Output" ```` block that follows a Python block, with nothing but
  blank lines in between, is that block's expected standard output. It is compared
  exactly, after stripping trailing whitespace from every line and blank lines from both
  ends.
- A block is skipped only when the line right before its opening fence is exactly
  ``<!-- no-test -->``. Use it sparingly, for code that cannot run in a test.
- A block that needs an optional package (an extra such as ``torch``) says so on the
  line right before its opening fence: ``<!-- requires: torch -->`` (several names
  separated by commas). When the package is installed the block runs like any other.
  When it is missing, the block is not run, the page's other blocks still run and must
  pass, and then the page's test is reported as skipped with a reason naming the package
  and the lines of the blocks, so that a missing package is never silent. An untagged
  block that imports an optional package fails ``test_optional_imports_are_tagged``.

Fences may be indented (inside an admonition, say); the indentation of the opening fence
is removed from the block's lines.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import tinypl.process as pl_process
from tinypl._runtime import _warm

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
#: Pages rendered from docstrings by mkdocstrings; they must not hold examples of their own.
PAGES_WITHOUT_EXAMPLES = ("docs/api.md",)
SEED_SECTION_PAGES = ("basics", "iterators", "markers", "threads", "ordering", "streams")

NO_TEST = "<!-- no-test -->"
REQUIRES = re.compile(r"^<!-- requires: (?P<names>[\w.-]+(?:, *[\w.-]+)*) -->$")
#: Packages that tinypl's `test` extra does not install; a block importing one is tagged.
OPTIONAL_PACKAGES = ("torch", "torchvision", "distributed", "dask", "mpi4py", "loky")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)(?P<info>.*)$")
OUTPUT_LABEL = re.compile(r"""\btitle=(["'])Output\1""")


@dataclass
class Block:
    """One fenced code block of a page."""

    lang: str
    info: str
    code: str
    line: int  # 1-based line number of the opening fence
    opted_out: bool
    requires: tuple[str, ...] = ()
    expected_output: str | None = None

    @property
    def is_output(self) -> bool:
        return self.lang == "text" and OUTPUT_LABEL.search(self.info) is not None


def parse_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown page, each output block attached to the
    Python block it follows."""
    lines = text.splitlines()
    blocks: list[Block] = []
    previous_end: int | None = None  # index of the closing fence of the previous block
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence = match["indent"], match["fence"]
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            candidate = lines[end]
            stripped = candidate.strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                break
            body.append(candidate[len(indent) :] if candidate.startswith(indent) else candidate)
            end += 1
        else:
            raise ValueError(f"line {index + 1}: code block is never closed")
        block = Block(
            lang=match["lang"],
            info=match["info"].strip(),
            code="\n".join(body) + "\n",
            line=index + 1,
            opted_out=index > 0 and lines[index - 1].strip() == NO_TEST,
            requires=required_packages(lines[index - 1] if index > 0 else ""),
        )
        adjacent = previous_end is not None and all(
            not line.strip() for line in lines[previous_end + 1 : index]
        )
        if block.is_output:
            if not (adjacent and blocks and blocks[-1].lang == "python"):
                raise ValueError(f"line {block.line}: output block follows no Python example")
            if blocks[-1].expected_output is not None:
                raise ValueError(f"line {block.line}: two output blocks for one example")
            blocks[-1].expected_output = block.code
        blocks.append(block)
        previous_end = end
        index = end + 1
    return blocks


def required_packages(line: str) -> tuple[str, ...]:
    """The packages named by a ``<!-- requires: ... -->`` line (none for any other line)."""
    match = REQUIRES.match(line.strip())
    if match is None:
        return ()
    return tuple(name.strip() for name in match["names"].split(","))


def missing_packages(block: Block) -> list[str]:
    return [name for name in block.requires if importlib.util.find_spec(name) is None]


def normalize(output: str) -> str:
    return "\n".join(line.rstrip() for line in output.strip("\n").splitlines()).strip("\n")


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# -- the parser itself -------------------------------------------------------------------


def test_parser_follows_the_conventions() -> None:
    page = textwrap.dedent(
        """\
        ```python
        print(1)
        ```

        ```text title="Output"
        1
        ```
        <!-- no-test -->
        ```python title="skipped.py"
        raise SystemExit
        ```
        ```text
        not an output: no label
        ```
        !!! note
            ```python
            print(2)
            ```
        <!-- requires: torch, numpy -->
        ```python
        import torch
        ```
        """
    )
    blocks = parse_blocks(page)
    python = [block for block in blocks if block.lang == "python"]
    assert [block.line for block in python] == [1, 9, 16, 20]
    assert python[3].requires == ("torch", "numpy") and not python[3].opted_out
    assert not any(block.requires for block in python[:3])
    assert python[0].expected_output == "1\n"
    assert python[1].opted_out and python[1].info == 'title="skipped.py"'
    assert python[1].expected_output is None
    assert python[2].code == "print(2)\n"
    assert not any(block.opted_out for block in (python[0], python[2]))
    with pytest.raises(ValueError, match="follows no Python example"):
        parse_blocks('Text.\n\n```text title="Output"\n1\n```\n')


# -- the pages ---------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "page", [page for page in PAGES if page_id(page) not in PAGES_WITHOUT_EXAMPLES], ids=page_id
)
def test_examples_run_and_print_what_the_page_says(page: Path) -> None:
    blocks = [block for block in parse_blocks(page.read_text()) if block.lang == "python"]
    assert blocks, f"{page_id(page)} has no Python example"
    namespace: dict[str, object] = {"__name__": "__docs__"}
    not_run: dict[str, list[int]] = {}  # missing package -> lines of the blocks needing it
    # A page's engines may write to os.environ (a Dask nanny sets OMP_NUM_THREADS=1):
    # later tests must not inherit that.
    environ = dict(os.environ)
    # The pages show tinypl's defaults: warm workers on (the suite turns them off).
    warm = pl_process.keep_warm(_warm.IDLE_TIMEOUT)
    try:
        for block in blocks:
            if block.opted_out:
                continue
            missing = missing_packages(block)
            for name in missing:
                not_run.setdefault(name, []).append(block.line)
            if missing:
                continue
            where = f"{page_id(page)}:{block.line}"
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                exec(compile(block.code, where, "exec"), namespace)
            if block.expected_output is not None:
                assert normalize(stdout.getvalue()) == normalize(block.expected_output), (
                    f"the example at {where} printed something other than its output block"
                )
    finally:
        # Drop the page's pipelines, so that garbage collection stops their threads.
        namespace.clear()
        os.environ.clear()
        os.environ.update(environ)
        pl_process.keep_warm(warm)  # 0 in the suite: stops the page's idle workers
    if not_run:
        reasons = "; ".join(
            f"{name} is not installed (blocks at lines {', '.join(map(str, lines))})"
            for name, lines in sorted(not_run.items())
        )
        pytest.skip(f"{page_id(page)}: the other blocks passed, but {reasons}")


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_optional_imports_are_tagged(page: Path) -> None:
    imports = re.compile(rf"^\s*(?:import|from)\s+({'|'.join(OPTIONAL_PACKAGES)})\b", re.M)
    untagged = [
        block.line
        for block in parse_blocks(page.read_text())
        if block.lang == "python" and not block.opted_out
        for name in imports.findall(block.code)
        if name not in block.requires
    ]
    assert not untagged, (
        f"{page_id(page)}: blocks at lines {untagged} import an optional package;"
        " put `<!-- requires: NAME -->` on the line before the fence"
    )


@pytest.mark.parametrize("name", PAGES_WITHOUT_EXAMPLES)
def test_reference_pages_have_no_untested_examples(name: str) -> None:
    blocks = parse_blocks((ROOT / name).read_text())
    assert not [block.line for block in blocks if block.lang == "python"]


@pytest.mark.parametrize("name", SEED_SECTION_PAGES)
def test_section_pages_show_both_forms(name: str) -> None:
    code = "".join(
        block.code
        for block in parse_blocks((ROOT / "docs" / f"{name}.md").read_text())
        if block.lang == "python" and not block.opted_out
    )
    assert "pl.Pipe(" in code, f"docs/{name}.md shows no fluent example"
    module_level = re.search(r"\bpl\.(?!Pipe\b|Marker\b)[a-z_.]+\((?!\))", code)
    assert module_level, f"docs/{name}.md shows no module-level example"


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text()[:1500]
    install = head.find('pip install -e ".[test]" && python examples/quickstart.py')
    tests = head.find("python -m pytest")
    assert 0 <= install < tests


# -- the example script (the site is built by test_site.py) ------------------------------


@pytest.mark.timeout(60)
def test_quickstart_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "examples/quickstart.py printed nothing"
