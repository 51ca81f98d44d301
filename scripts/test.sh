#!/usr/bin/env bash
# All tests: lint, then pytest (core, bpy integration on bpy 5.0.1, packaging), then the bpy
# integration tests again on bpy 5.3.0 under Python 3.13 (.venv313: no torch; reconstruction
# and the exact render engine go through the worker on .venv). Extra args go to both pytest
# runs (given test paths replace the second run's module list). GS_SKIP_PY313=1 skips it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=$(bash "$root/scripts/env.sh")
bash "$root/scripts/node_tools.sh"  # splat-transform for the interop tests (skipped without node)
cd "$root"
"$py" -m ruff check .
export MALLOC_MMAP_THRESHOLD_=131072  # keeps glibc from hoarding freed tensor memory
"$py" -m pytest -q -p no:cacheprovider "$@"
py313="$root/.venv313/bin/python"
if [ -n "${GS_SKIP_PY313:-}" ]; then
  echo "GS_SKIP_PY313 is set: the bpy 5.3 / Python 3.13 run is skipped"
elif [ ! -x "$py313" ] || ! "$py313" -c "import bpy, pytest" 2>/dev/null; then
  echo "note: $py313 with bpy and pytest is missing (no Python 3.13?): the bpy 5.3 run is skipped"
else
  # The modules with bpy-marked tests (test_py313_split drives .venv313 from the 3.11 side),
  # or only the test paths given on the command line.
  mapfile -t modules < <(grep -l "pytest.mark.bpy" tests/test_*.py | grep -v test_py313_split)
  for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then modules=(); break; fi
  done
  echo "== the bpy tests again on bpy $("$py313" -c 'import bpy; print(bpy.app.version_string)') (Python 3.13, no torch)"
  GS_WORKER_PYTHON="$py" PYTHONPATH="" "$py313" -m pytest -q -p no:cacheprovider -m bpy \
      "${modules[@]}" "$@"
fi
