"""The optional packages pose recovery uses, imported on demand with a message that says how to
install them: pycolmap (SfM), PyAV (videos), pillow-heif (HEIC photos)."""

from __future__ import annotations

import importlib

from ..errors import GSError

__all__ = ["require_pycolmap", "require_av", "register_heif"]


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
