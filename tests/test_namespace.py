"""The module-level namespace and the fluent ``Pipe`` stay in step (in the manner of
toolz's ``test_curried_namespace``), and the package's import structure stays clean."""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import pkgutil
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import tinypl
import tinypl.debug
import tinypl.marker
import tinypl.order
import tinypl.thread
from tinypl import _compat

PACKAGE_DIR = Path(tinypl.__file__).parent


def _public_submodules() -> dict[str, types.ModuleType]:
    found = {}
    for info in pkgutil.iter_modules(tinypl.__path__):
        if not info.name.startswith("_"):
            found[info.name + "."] = importlib.import_module(f"tinypl.{info.name}")
    return found


PUBLIC_MODULES: dict[str, types.ModuleType] = {"": tinypl, **_public_submodules()}

#: Application modules: their functions assemble whole pipelines out of several stages
#: (``pl.dataloader.load`` is insert_marker + flatten + partition + map + thread/process +
#: order), so no single ``Pipe`` method is their counterpart and ``COUNTERPARTS`` does not
#: list them. They still keep ``__all__`` exact (see below).
APPLICATIONS = ("dataloader.",)


def test_public_modules_found() -> None:
    assert {"thread.", "marker.", "order.", "debug."} <= set(PUBLIC_MODULES)
    assert set(APPLICATIONS) <= set(PUBLIC_MODULES)
    assert PUBLIC_MODULES["thread."] is tinypl.thread
    assert PUBLIC_MODULES["debug."] is tinypl.debug


def test_public_submodules_are_attributes_of_the_package() -> None:
    for prefix, module in PUBLIC_MODULES.items():
        if prefix:
            assert getattr(tinypl, prefix[:-1]) is module


def _public_names(module: types.ModuleType) -> set[str]:
    # dir(), not vars(): pl.process loads its shared-memory names on first use.
    return {name for name in dir(module) if not name.startswith("_")}


def _is_stage_function(name: str, obj: object) -> bool:
    if name in _compat.HELPERS:
        return False
    if isinstance(obj, (types.ModuleType, type)):
        return False  # submodules, classes and exception types
    return callable(obj)


def _module_level_functions() -> set[str]:
    names = set()
    for prefix, module in PUBLIC_MODULES.items():
        if prefix in APPLICATIONS:
            continue
        for name in _public_names(module):
            if prefix + name in _compat.UTILITIES:
                continue
            if _is_stage_function(name, getattr(module, name)):
                names.add(prefix + name)
    return names


def _pipe_members() -> dict[str, object]:
    """What ``Pipe`` defines, through its own base classes (``StreamMethods`` ...), static
    methods unwrapped."""
    members: dict[str, object] = {}
    for cls in reversed(tinypl.Pipe.__mro__):
        if cls.__module__.startswith("tinypl"):
            for name, member in vars(cls).items():
                members[name] = member.__func__ if isinstance(member, staticmethod) else member
    return members


def _pipe_builder_methods() -> set[str]:
    return {
        name
        for name, member in _pipe_members().items()
        if not name.startswith("_")
        and inspect.isfunction(member)
        and name not in {"explain", "iter"}  # they run or render a pipe, adding no stage
    }


def test_module_level_functions_found() -> None:
    # Guard against a vacuous pass of the comparisons below.
    found = _module_level_functions()
    assert {"map", "filter", "marker.until", "thread.queue", "order.load"} <= found
    assert "unpack" not in found
    assert "Pipe" not in found
    assert "thread.WorkerException" not in found


def test_every_module_level_function_has_a_counterpart() -> None:
    missing = _module_level_functions() - set(_compat.COUNTERPARTS)
    assert not missing, f"module-level functions without a COUNTERPARTS entry: {missing}"


def test_every_counterpart_key_is_a_module_level_function() -> None:
    extra = set(_compat.COUNTERPARTS) - _module_level_functions()
    assert not extra, f"COUNTERPARTS keys that are not module-level functions: {extra}"


@pytest.mark.parametrize("key", sorted(_compat.COUNTERPARTS))
def test_counterpart_resolves_to_a_function(key: str) -> None:
    *package, name = key.split(".")
    module = PUBLIC_MODULES[package[0] + "." if package else ""]
    assert callable(getattr(module, name))


@pytest.mark.parametrize("method", sorted(set(_compat.COUNTERPARTS.values())))
def test_every_counterpart_value_is_a_public_pipe_method(method: str) -> None:
    assert not method.startswith("_")
    assert inspect.isfunction(_pipe_members().get(method)), method


def test_every_pipe_builder_method_has_a_module_level_form() -> None:
    methods = _pipe_builder_methods()
    assert {"map", "partition", "insert_marker", "thread", "order"} <= methods
    uncovered = methods - set(_compat.COUNTERPARTS.values())
    assert not uncovered, f"Pipe methods with no module-level function: {uncovered}"


def test_helpers_are_exported_by_the_package() -> None:
    for name in _compat.HELPERS:
        assert name in tinypl.__all__
        assert hasattr(tinypl, name)


@pytest.mark.parametrize("prefix", sorted(PUBLIC_MODULES))
def test_all_lists_exactly_the_public_names(prefix: str) -> None:
    module = PUBLIC_MODULES[prefix]
    assert len(module.__all__) == len(set(module.__all__)), "duplicates in __all__"
    assert set(module.__all__) == _public_names(module)


def test_flatten_lazy_is_flatten() -> None:
    assert tinypl.flatten_lazy is tinypl.flatten


# -- import structure ----------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """``(target module, imported names, line)`` for every import statement, including
    those inside functions and ``if TYPE_CHECKING`` blocks."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


def test_modules_found() -> None:
    assert {"tinypl", "tinypl._pipe", "tinypl._runtime", "tinypl._runtime._sync"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "tinypl"))
def test_internal_modules_never_import_the_package_as_a_whole(module: str) -> None:
    for target, names, line in _imports(module):
        assert not (target == "tinypl" and not names), f"{module}:{line}: import tinypl"
        if target == "tinypl":
            # ``from .. import _plan`` imports a submodule; anything else is the package.
            not_submodules = [n for n in names if f"tinypl.{n}" not in MODULES]
            assert not not_submodules, f"{module}:{line}: from tinypl import {not_submodules}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "tinypl"))
def test_internal_modules_have_no_textual_import_of_tinypl(module: str) -> None:
    # The same check on the source text, outside docstrings (whose examples do import it).
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                first = body[0]
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines = MODULES[module].read_text(encoding="utf-8").splitlines()
    for number, text in enumerate(lines, start=1):
        if number in docstrings:
            continue
        code = text.split("#", 1)[0].strip()
        assert not code.startswith(("import tinypl", "from tinypl import")), f"{module}:{number}"


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module in MODULES:
        for target, names, _line in _imports(module):
            if not target.startswith("tinypl"):
                continue
            submodules = {f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES}
            # ``from pkg import sub`` imports the submodule; any other name is pkg's own.
            targets = set(submodules)
            if len(submodules) < len(names) or not names:
                targets.add(target)
            for t in list(targets):
                # Importing ``a.b.c`` first runs ``a.b``'s __init__ (not the root package's,
                # which every module trivially sits under).
                parent = t.rpartition(".")[0]
                while parent and parent != "tinypl" and not module.startswith(parent + "."):
                    targets.add(parent)
                    parent = parent.rpartition(".")[0]
            graph[module].update(t for t in targets if t in MODULES and t != module)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path that ends where it starts, or ``None``."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for target in sorted(graph[node]):
            if colour[target] == grey:
                return [*stack[stack.index(target) :], target]
            if colour[target] == white:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = black
        return None

    for node in sorted(graph):
        if colour[node] == white:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_cycle_finder_finds_cycles() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_is_acyclic() -> None:
    graph = _import_graph()
    assert graph["tinypl._pipe"] >= {"tinypl._plan", "tinypl._runtime"}
    assert graph["tinypl._compat"] >= {"tinypl._pipe"}
    cycle = _find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


# -- the plan behind each module-level function ------------------------------------------


def _double(x: int) -> int:
    return 2 * x


_M = tinypl.Marker("m")
#: An executor for the executor pairs: they are built and closed, never run.
_POOL = ThreadPoolExecutor(1)
#: Each module-level function called on a source, and the fluent pipe it stands for: the
#: live stage must run the very plan (as objects, not names) that the pipe optimizes to.
#: Where the progress bars of the plan comparisons go.
_SINK = io.StringIO()

PLAN_PAIRS = {
    "map": (lambda: tinypl.map(range(4), _double), lambda: tinypl.Pipe(range(4)).map(_double)),
    "filter": (lambda: tinypl.filter(range(4), bool), lambda: tinypl.Pipe(range(4)).filter(bool)),
    "each": (lambda: tinypl.each(range(4), print), lambda: tinypl.Pipe(range(4)).each(print)),
    "flatten": (lambda: tinypl.flatten([[1]]), lambda: tinypl.Pipe([[1]]).flatten()),
    "flatten_eager": (
        lambda: tinypl.flatten_eager([[1]]),
        lambda: tinypl.Pipe([[1]]).flatten(eager=True),
    ),
    "partition": (
        lambda: tinypl.partition(range(4), 2),
        lambda: tinypl.Pipe(range(4)).partition(2),
    ),
    "ratelimit": (
        lambda: tinypl.ratelimit(range(4), 5, 1.0),
        lambda: tinypl.Pipe(range(4)).ratelimit(5, 1.0),
    ),
    "marker.until": (
        lambda: tinypl.marker.until(tinypl.Pipe(range(4)).insert_marker(_M), _M),
        lambda: tinypl.Pipe(range(4)).insert_marker(_M).until(_M),
    ),
    "thread.map": (
        lambda: tinypl.thread.map(range(4), _double, workers=2),
        lambda: tinypl.Pipe(range(4)).map(_double).thread(2),
    ),
    "thread.queue": (
        lambda: tinypl.thread.queue(range(4), workers=2, maxsize=3),
        lambda: tinypl.Pipe(range(4)).thread(2, 3),
    ),
    "thread.mutex": (lambda: tinypl.thread.mutex(range(4)), lambda: tinypl.Pipe(range(4)).mutex()),
    "debug.print_on_item": (
        lambda: tinypl.debug.print_on_item(range(4), "x"),
        lambda: tinypl.Pipe(range(4)).trace("x"),
    ),
    "process.map": (
        lambda: tinypl.process.map(range(4), _double, workers=2, force_single_thread=False),
        lambda: tinypl.Pipe(range(4)).map(_double).process(2, limit_threads=False),
    ),
    "shuffle": (
        lambda: tinypl.shuffle(range(4), 3, seed=1),
        lambda: tinypl.Pipe(range(4)).shuffle(3, seed=1),
    ),
    "take": (lambda: tinypl.take(range(4), 2), lambda: tinypl.Pipe(range(4)).take(2)),
    "skip": (lambda: tinypl.skip(range(4), 2), lambda: tinypl.Pipe(range(4)).skip(2)),
    "shard": (lambda: tinypl.shard(range(4), 1, 2), lambda: tinypl.Pipe(range(4)).shard(1, 2)),
    "zip": (lambda: tinypl.zip(range(4), "ab"), lambda: tinypl.Pipe(range(4)).zip("ab")),
    "concat": (
        lambda: tinypl.concat(range(4), "ab"),
        lambda: tinypl.Pipe(range(4)).concat("ab"),
    ),
    "mix": (
        lambda: tinypl.mix([range(4), "ab"], [1, 2], seed=3, stop="all"),
        lambda: tinypl.Pipe.mix([range(4), "ab"], [1, 2], seed=3, stop="all"),
    ),
    "repeat": (
        lambda: tinypl.repeat(range(4), 2, _M),
        lambda: tinypl.Pipe(range(4)).repeat(2, _M),
    ),
    "prefetch": (lambda: tinypl.prefetch(range(4), 2), lambda: tinypl.Pipe(range(4)).prefetch(2)),
    "executor.map": (
        lambda: tinypl.executor.map(range(4), _double, _POOL, 3, chunksize=2),
        lambda: tinypl.Pipe(range(4)).map(_double).executor(_POOL, 3, 2),
    ),
    "executor.each": (
        lambda: tinypl.executor.each(range(4), print, _POOL),
        lambda: tinypl.Pipe(range(4)).each(print).executor(_POOL),
    ),
    "progress": (
        lambda: tinypl.progress(range(4), "n", 4, file=_SINK, leave=False),
        lambda: tinypl.Pipe(range(4)).progress("n", 4, file=_SINK, leave=False),
    ),
    "report": (
        lambda: tinypl.report(range(4), 5.0, print),
        lambda: tinypl.Pipe(range(4)).report(5.0, print),
    ),
}


@pytest.mark.parametrize("name", list(PLAN_PAIRS))
def test_module_level_functions_run_the_plan_of_their_fluent_counterpart(name: str) -> None:
    from tinypl._checkpoint_plan import run_plan
    from tinypl._runtime._stage import node_of

    function, fluent = PLAN_PAIRS[name]
    assert COUNTERPART_OF(name) in {n for n in _pipe_builder_methods()}
    with function() as stage, iter(fluent()) as run:
        # What a run of each builds (with the numbering a checkpoint may add).
        assert node_of(stage) == node_of(run)
        assert node_of(run) in run_plan(fluent().plan)[0]


def COUNTERPART_OF(name: str) -> str:
    return _compat.COUNTERPARTS[name]


#: Pairs whose docstrings state the same contract: the first sentence must agree.
SAME_MEANING = {"map": "map", "filter": "filter", "each": "each", "thread.mutex": "mutex"}


@pytest.mark.parametrize("name", list(SAME_MEANING))
def test_docstrings_of_pairs_that_share_a_meaning_agree(name: str) -> None:
    function = PUBLIC_MODULES[name.rpartition(".")[0] + "." if "." in name else ""]
    compat = getattr(function, name.rpartition(".")[2])
    method = getattr(tinypl.Pipe, SAME_MEANING[name])

    def summary(obj: object) -> str:
        return (inspect.getdoc(obj) or "").split("\n\n")[0].split(".")[0].lower()

    assert summary(compat).split()[:3] == summary(method).split()[:3]
