"""Helpers for tests that run a script in a child interpreter (where a fault could take
the test runner down) and read what it reports as JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import tinypl

__all__ = ["REPO", "START_METHODS", "run_json"]

START_METHODS = ("fork", "forkserver", "spawn")
REPO = Path(tinypl.__file__).resolve().parents[1]


def run_json(
    script: str, tmp_path: Path, *args: str, timeout: float = 60.0
) -> tuple[list[Any], subprocess.CompletedProcess[str]]:
    """Run ``script`` with ``args``; the JSON lines it printed, and the finished process."""
    path = tmp_path / "script.py"
    path.write_text(script)
    command = [sys.executable, str(path), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        command, capture_output=True, check=False, text=True, timeout=timeout, env=env, cwd=tmp_path
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return lines, result
