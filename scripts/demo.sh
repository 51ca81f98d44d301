#!/usr/bin/env bash
# The main job: the end-to-end demo on the built-in sample scene. Writes into ./out/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=$(bash "$root/scripts/env.sh")
cd "$root"
exec "$py" -m blender_gs_addon demo --out "${1:-out}"
