"""The types a user's mypy sees, checked on user programs outside the checkout.

Each program here is copied to a temporary directory and checked there by mypy
(``--strict``) in a subprocess without ``PYTHONPATH``: mypy then finds ``tinypl`` only
the way a user's mypy does, through the installed package. With the editable install of
this checkout (``pip install -e .``, a plain path entry, see ``pyproject.toml``) that is
this checkout's code and its ``py.typed``. The test is skipped, with the reason, when
mypy is not installed or when ``tinypl`` is not installed from this checkout (a venv
whose editable install points elsewhere would check someone else's code).
``user_program_torch.py`` is checked only when torch is installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def run_as_user(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python *args`` in ``tmp_path``, outside the checkout, without ``PYTHONPATH``."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["MYPY_CACHE_DIR"] = str(tmp_path / "cache")
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )


def require_installed_checkout(tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (the `dev` extra)")
    found = run_as_user(["-c", "import tinypl; print(tinypl.__file__)"], tmp_path)
    location = Path(found.stdout.strip()).resolve() if found.returncode == 0 else None
    if location is None or location.parent.parent != ROOT:
        pytest.skip(f"tinypl is not installed from {ROOT} (found: {location})")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("program", ["user_program.py", "user_program_torch.py"])
def test_a_user_program_type_checks(program: str, tmp_path: Path) -> None:
    if program.endswith("_torch.py") and importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (the `torch` extra)")
    require_installed_checkout(tmp_path)
    shutil.copy(HERE / program, tmp_path / program)
    result = run_as_user(["-m", "mypy", "--strict", "--no-error-summary", program], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
