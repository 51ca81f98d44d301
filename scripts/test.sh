#!/usr/bin/env bash
# All tests: lint, then pytest (core, bpy integration, packaging). Extra args go to pytest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=$(bash "$root/scripts/env.sh")
bash "$root/scripts/node_tools.sh"  # splat-transform for the interop tests (skipped without node)
cd "$root"
"$py" -m ruff check .
export MALLOC_MMAP_THRESHOLD_=131072  # keeps glibc from hoarding freed tensor memory
exec "$py" -m pytest -q -p no:cacheprovider "$@"
