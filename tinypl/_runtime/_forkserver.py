"""The start method of process stages, and booting the fork server early.

Light to import (multiprocessing is imported by the first call that needs it): every
run calls :func:`boot_for` before it imports the backends, so that the server's own boot
(a fresh interpreter that imports ``PRELOAD``: about 0.1 s) runs on the other core while
this process imports and builds the rest of the run, instead of after it.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._plan import Node

__all__ = ["PRELOAD", "boot", "boot_for", "default_start_method", "without_main_reimport"]

_MAIN_LOCK = threading.Lock()
#: What a forkserver imports before it forks the first worker. Not numpy: it would add
#: 0.1 s to the server's boot, and workers import it when they need it.
PRELOAD = ["tinypl._runtime._worker", "tinypl._shm", "cloudpickle", "threadpoolctl"]


def default_start_method() -> str:
    """``forkserver`` where it exists (POSIX): fork is unsafe once threads run, and
    forkserver forks workers from a clean single-threaded server, cheaper than spawn.

    Examples:
        >>> default_start_method() in ("forkserver", "spawn")
        True
    """
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def boot(method: str | None) -> bool:
    """Start the fork server now if ``method`` (``None``: the default) needs one that
    does not run yet; ``True`` when it runs. Never raises: a server that cannot start
    here fails again when the first worker starts, and raises there (a start's errors
    are the start's to report: an fd limit is named with the stage).

    Examples:
        >>> boot("spawn")
        False
    """
    method = method or default_start_method()
    if method != "forkserver":
        return False
    try:
        import multiprocessing
        from multiprocessing import forkserver

        context = multiprocessing.get_context(method)
        context.set_forkserver_preload(PRELOAD)
        with without_main_reimport(method):
            forkserver.ensure_running()
    except Exception:
        return False
    return True


def boot_for(nodes: Iterable[Node]) -> bool:
    """:func:`boot` for the first process stage among the physical ``nodes`` of a run,
    before any of them is built (building imports every backend: tens of ms).

    Examples:
        >>> boot_for([])
        False
    """
    from .._plan import RunInProcesses

    for node in nodes:
        if isinstance(node, RunInProcesses):
            return boot(node.start_method)
    return False


@contextlib.contextmanager
def without_main_reimport(method: str) -> Iterator[None]:
    """Start workers without re-running the parent's ``__main__`` in them.

    Under forkserver and spawn, multiprocessing re-imports the main script in every
    child, which runs an unguarded script (no ``if __name__ == "__main__"``) once more
    per worker. Workers need nothing from it: stage functions and items travel by
    value (cloudpickle). Naming the main module ``__main__`` for the moment the children
    are prepared makes multiprocessing skip that import.
    """
    main = sys.modules.get("__main__")
    if method == "fork" or main is None:
        yield
        return
    with _MAIN_LOCK:
        missing = object()
        saved = main.__dict__.get("__spec__", missing)
        main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
        try:
            yield
        finally:
            if saved is missing:
                del main.__spec__
            else:
                main.__spec__ = saved
