#!/usr/bin/env bash
# Pinned Node tools for the interop tests, installed into ./.node (git-ignored):
# @playcanvas/splat-transform, an independent reader/writer of .sog, .spz, .splat, .ply and
# compressed .ply that also writes .glb. Called by scripts/test.sh; quick when already there.
# Without node/npm (or without registry access) it only says so: those tests then skip.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
spec="@playcanvas/splat-transform@3.7.0"  # pinned: the interop tests' tolerances assume it
dest="$root/.node"
cli="$dest/node_modules/@playcanvas/splat-transform/bin/cli.mjs"
if [ "$(cat "$dest/.installed" 2>/dev/null)" = "$spec" ] && [ -f "$cli" ]; then
  exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "note: node/npm not found; the splat-transform interop tests will be skipped" >&2
  exit 0
fi
echo "Installing $spec into $dest (once)" >&2
work=$(mktemp -d "$root/.node-install.XXXXXX")
# --ignore-scripts: the optional WebGPU addon's build step is not needed (tests run -g cpu).
if npm install --prefix "$work" --no-audit --no-fund --no-save --ignore-scripts \
    --loglevel=error "$spec" >&2 && [ -f "$work/node_modules/@playcanvas/splat-transform/bin/cli.mjs" ]; then
  echo "$spec" > "$work/.installed"
  rm -rf "$dest" && mv "$work" "$dest"
else
  echo "warning: could not install $spec; the splat-transform interop tests will be skipped" >&2
  rm -rf "$work"
fi
exit 0
