#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv, Python 3.11) and print its python.
# Re-installs only when requirements.txt changed since the last successful install.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
python=${GS_PYTHON:-python3.11}
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$root/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  command -v "$python" >/dev/null || { echo "error: $python not found (Python 3.11 is needed for bpy 5.0.1)" >&2; exit 1; }
  echo "Creating $venv with $("$python" --version)" >&2
  "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing requirements into $venv (first run takes a few minutes)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements.txt" >&2
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
