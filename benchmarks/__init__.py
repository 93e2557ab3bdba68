"""tinypl benchmark harness (not part of the library, not collected by pytest).

Run one suite per invocation from the repository root::

    /work/venv/bin/python -B -m benchmarks sync
    /work/venv/bin/python -B -m benchmarks thread
    /work/venv/bin/python -B -m benchmarks process
    /work/venv/bin/python -B -m benchmarks dataloader
    /work/venv/bin/python -B -m benchmarks startup
    /work/venv/bin/python -B -m benchmarks sleep

See ``python -m benchmarks --help`` and ``benchmarks/README.md``.  Results go to stdout
(and to ``--json PATH`` if given); nothing is written into the repository.
"""

from __future__ import annotations

import sys

# Keep the harness (and the new tinypl it imports) from writing __pycache__ directories
# into the repository.  Only this package's own __init__ can be cached before this line
# runs; use `python -B` to avoid that as well.
sys.dont_write_bytecode = True
