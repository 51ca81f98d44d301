"""The optional packages pose recovery uses, imported on demand with a message that says how to
install them: pycolmap (SfM), PyAV (videos), pillow-heif (HEIC photos)."""

from __future__ import annotations

import importlib
import importlib.util

from ..errors import GSError

__all__ = ["require_pycolmap", "pycolmap_available", "pycolmap_unavailable_reason",
           "require_av", "register_heif"]

# The probe runs once per process (importing pycolmap takes a fraction of a second).
_PYCOLMAP_STATE: dict = {}


def _require(module: str, *, needed_for: str, install: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise GSError(f"{needed_for} needs {install} in this Python environment: {err}") \
            from None


def require_pycolmap():
    """The pycolmap module, or a GSError saying how to install it."""
    return _require("pycolmap", needed_for="recovering camera poses",
                    install="pycolmap (pip install pycolmap==4.2.1)")


def pycolmap_available() -> bool:
    """True when ``import pycolmap`` works in this Python (tried once, only when the package is
    installed at all, then remembered): whether Blender's own Python may recover poses."""
    if "ok" not in _PYCOLMAP_STATE:
        if importlib.util.find_spec("pycolmap") is None:
            _PYCOLMAP_STATE.update(ok=False, why="pycolmap is not installed in this Python")
        else:
            try:
                importlib.import_module("pycolmap")
                _PYCOLMAP_STATE["ok"] = True
            except Exception as err:  # an ABI clash is a reason to use the worker, not a crash
                _PYCOLMAP_STATE.update(ok=False, why=f"import pycolmap failed: "
                                                     f"{type(err).__name__}: {err}")
    return _PYCOLMAP_STATE["ok"]


def pycolmap_unavailable_reason() -> str:
    """Why :func:`pycolmap_available` said no ("" when it said yes or was not asked)."""
    return _PYCOLMAP_STATE.get("why", "")


def require_av():
    """The PyAV module, or a GSError saying how to install it."""
    return _require("av", needed_for="reading videos (or extract the frames into a folder of "
                                     "photos)", install="PyAV (pip install av)")


def register_heif() -> bool:
    """Let pillow open HEIC/HEIF through pillow-heif; False when it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True
