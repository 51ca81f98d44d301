#!/usr/bin/env bash
# The main job: the end-to-end demo on the built-in sample scene. Writes into ./out/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=$(GS_SKIP_PY313=1 bash "$root/scripts/env.sh")  # the demo needs no Python 3.13
cd "$root"
exec "$py" -m blender_gs_addon demo --out "${1:-out}"
