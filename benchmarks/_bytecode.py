"""A byte-compiled copy of this checkout's ``tinypl`` and ``benchmarks``, for the tables
that time fresh interpreters (first runs, time to the first item, import time).

An installed tinypl runs from bytecode: pip compiles every module when it installs a
wheel. This checkout has no bytecode: these machines set ``PYTHONDONTWRITEBYTECODE`` and
the benchmarks run with ``-B``. A fresh interpreter therefore compiled tinypl from source,
in the parent, in a fork server and in every spawn worker: on this machine about 60 ms
of a process stage's first item that no installed tinypl pays. The copy lives in the
cache folder (``$XDG_CACHE_HOME/tinypl-bench/bytecode/<digest>``, never the repository),
one per state of the sources, and is compiled once with :mod:`compileall` (which writes
bytecode whatever ``PYTHONDONTWRITEBYTECODE`` says). ``--from-source`` times the
checkout itself, as before.
"""

from __future__ import annotations

import compileall
import hashlib
import os
import shutil
import sys
from pathlib import Path

from benchmarks.harness import REPO_ROOT

PACKAGES = ("tinypl", "benchmarks")
KEEP = 3
"""Copies kept in the cache folder (the newest ones)."""


def _sources() -> list[Path]:
    files: list[Path] = []
    for package in PACKAGES:
        files += sorted((REPO_ROOT / package).rglob("*.py"))
        files += sorted((REPO_ROOT / package).rglob("py.typed"))
    return files


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tinypl-bench" / "bytecode"


def bytecode_root() -> Path:
    """A folder holding byte-compiled copies of ``tinypl`` and ``benchmarks`` as they are
    in this checkout now; put it first on ``sys.path`` (or run from it)."""
    files = _sources()
    root = _cache() / _digest(files)
    if (root / ".complete").exists():
        return root
    staging = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for path in files:
        target = staging / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    prefix, sys.pycache_prefix = sys.pycache_prefix, None  # beside the sources, where
    try:  # the children (no PYTHON* variables) look for it
        for package in PACKAGES:
            if not compileall.compile_dir(str(staging / package), quiet=1):
                raise RuntimeError(f"compileall failed for {staging / package}")
    finally:
        sys.pycache_prefix = prefix
    (staging / ".complete").touch()
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    _prune(root)
    return root


def _prune(keep: Path) -> None:
    copies = [p for p in keep.parent.iterdir() if p.is_dir() and p != keep]
    copies.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in copies[KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def code_root(from_source: bool) -> Path:
    """Where fresh interpreters import tinypl and the benchmarks from."""
    return REPO_ROOT if from_source else bytecode_root()


def code_note(from_source: bool) -> str:
    """The table note that says which."""
    if from_source:
        return "--from-source: fresh interpreters compile this checkout's tinypl from source"
    return (
        "fresh interpreters run tinypl from bytecode, as pip installs it (a compiled copy "
        "in the cache folder; --from-source compiles the checkout's sources each time)"
    )
