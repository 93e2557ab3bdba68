"""Client for ``_legacy_runner.py``: measures tinypl 0.1.0 in its own venv.

tinypl 0.1.0 has the same import name as the new library, so it cannot run in the
harness process.  :class:`LegacyRunner` starts ``<t010-python> -B -E -s
benchmarks/_legacy_runner.py CASE PARAMS`` per case (interpreter start-up is not part of
the timings: the subprocess does its own warm-up and timed repeats) and parses the JSON
line it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._timing import Timing
from benchmarks.harness import PeerResult

RUNNER = Path(__file__).resolve().parent / "_legacy_runner.py"
RESULT_MARKER = "@@TINYPL_LEGACY_RESULT@@ "
DEFAULT_T010_PYTHON = Path("/work/venvs/t010/bin/python")
STARTUP_ALLOWANCE = 60.0
"""Seconds added to the subprocess timeout for interpreter start-up and imports."""


def default_t010_python() -> Path | None:
    """The default legacy interpreter if it exists, else ``None``."""
    return DEFAULT_T010_PYTHON if DEFAULT_T010_PYTHON.exists() else None


class LegacyRunner:
    """Runs legacy cases with a given interpreter, or reports why it cannot."""

    def __init__(
        self, python: Path | None, *, case_timeout: float, time_cap: float | None = None
    ) -> None:
        self.python = python
        self.case_timeout = case_timeout
        self.time_cap = time_cap
        self.skip_reason: str | None = None
        self._info: dict[str, Any] | None = None
        if python is None:
            self.skip_reason = (
                f"no tinypl 0.1.0 interpreter ({DEFAULT_T010_PYTHON} not found; pass --t010-python)"
            )
        elif not python.exists():
            self.skip_reason = f"--t010-python {python} does not exist"

    def _invoke(self, case: str, params: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        assert self.python is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        # cwd outside the repository; -E ignores PYTHONPATH & co, -s the user site,
        # -B keeps the runner from writing __pycache__ into the repository.
        command = [str(self.python), "-B", "-E", "-s", str(RUNNER), case, json.dumps(params)]
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=tempfile.gettempdir(),
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"subprocess timed out after {timeout:g}s"}
        except OSError as exc:
            return {"ok": False, "error": f"cannot start {self.python}: {exc}"}
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith(RESULT_MARKER):
                payload: dict[str, Any] = json.loads(line[len(RESULT_MARKER) :])
                return payload
        tail = (proc.stderr.strip().splitlines() or ["<no output>"])[-1]
        return {"ok": False, "error": f"runner exited {proc.returncode} without result: {tail}"}

    def info(self) -> dict[str, Any]:
        """Version/location of the legacy tinypl (cached); contains ``error`` on failure."""
        if self._info is None:
            if self.skip_reason is not None:
                self._info = {"ok": False, "error": self.skip_reason}
            else:
                self._info = self._invoke("info", {}, STARTUP_ALLOWANCE)
                env = self._info.get("env") or {}
                if self._info.get("ok") and env.get("tinypl_version") != "0.1.0":
                    self._info["warning"] = (
                        f"expected tinypl 0.1.0, found {env.get('tinypl_version')}"
                    )
        return self._info

    def run(self, label: str, case: str, params: dict[str, Any], repeat: int) -> PeerResult:
        """Measure ``case`` with tinypl 0.1.0; failures become ``n/a``/``skipped`` results."""
        result = PeerResult(label=label, params=dict(params))
        if self.skip_reason is not None:
            result.skipped = self.skip_reason
            return result
        info = self.info()
        if not info.get("ok"):
            result.error = str(info.get("error"))
            return result
        timeout = (
            self.case_timeout * (repeat + 1) + STARTUP_ALLOWANCE if self.case_timeout > 0 else None
        )
        run_params = {**params, "repeat": repeat, "warmup": 1, "time_cap": self.time_cap}
        payload = self._invoke(case, run_params, timeout)
        result.info = dict(payload.get("env") or {})
        if not payload.get("ok"):
            result.error = str(payload.get("error"))
            return result
        result.timing = Timing.from_dict(payload["timing"])
        return result
