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
# Python 3.13 + bpy 5.3.0 (what Blender 5.1+ embeds; 5.3 draws Gaussian splats natively), no
# torch: scripts/test.sh runs the bpy integration tests a second time there, with the worker on
# .venv. About 1.1 GB, 1-2 minutes the first time; skipped with GS_SKIP_PY313=1 or when no
# Python 3.13 is found (the second run then says so and is skipped). Changing this line
# reinstalls (the stamp file below).
py313_requirements="bpy==5.3.0 numpy==2.5.5 pillow==13.0.0 pytest==9.2.0"  # as in tests/test_py313_split.py
venv313="$root/.venv313"
if [ -z "${GS_SKIP_PY313:-}" ] && [ "$(cat "$venv313/.gs-requirements" 2>/dev/null)" != "$py313_requirements" ]; then
  py313=""
  for candidate in "${GS_PYTHON313:-}" python3.13 "$HOME"/.pyenv/versions/3.13*/bin/python3.13; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
      py313=$candidate
      break
    fi
  done
  if [ -n "$py313" ]; then
    echo "Creating $venv313 (Python 3.13, $py313_requirements)" >&2
    # shellcheck disable=SC2086
    if "$py313" -m venv "$venv313" >&2 && "$venv313/bin/python" -m pip install --quiet \
        --disable-pip-version-check $py313_requirements >&2; then
      echo "$py313_requirements" > "$venv313/.gs-requirements"
    else
      echo "warning: could not set up $venv313; the Python 3.13 test will try again" >&2
    fi
  else
    echo "note: no Python 3.13 found; the Python 3.13 / bpy 5.3 tests will be skipped" >&2
  fi
fi
# OpenSSH server binary for the remote-worker tests (they run their own sshd on 127.0.0.1);
# installed from Debian when root with apt-get, else those tests skip with the reason.
bash "$root/scripts/sshd_setup.sh" >&2 || true
echo "$venv/bin/python"
