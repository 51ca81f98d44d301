"""Running the project's command line (and small Python scripts) in a subprocess, as a user
would: the repository on PYTHONPATH, the working directory at its root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def run_cli(*args, check: bool = True, prelude: str | None = None,
            python: str | None = None) -> subprocess.CompletedProcess:
    """``python -m blender_gs_addon ARGS``; AssertionError on a non-zero exit when ``check``.
    With ``prelude``, that code runs first in the same interpreter (e.g. to hide bpy).
    ``python``: another interpreter than this one (e.g. the worker's, which has torch)."""
    python = python or sys.executable
    command = [python, "-m", "blender_gs_addon"]
    if prelude is not None:
        command = [python, "-c", f"import sys; {prelude}; from blender_gs_addon.cli "
                                 "import main; sys.exit(main(sys.argv[1:]))"]
    proc = _run([*command, *map(str, args)])
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stdout[-2000:]}{proc.stderr}")
    return proc


def run_script(code: str, *args) -> str:
    """``python -c CODE ARGS``; its stdout, AssertionError on a non-zero exit."""
    proc = _run([sys.executable, "-c", code, *map(str, args)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout
