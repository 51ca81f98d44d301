"""Small stand-ins shared by tests: what background-mode Blender lacks, and image writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class RecordingWindowManager:
    """A window manager for driving modal operators by hand (background mode has no window):
    the calls that need a window are recorded; everything else goes to ``wm`` when given."""

    def __init__(self, wm=None):
        self._wm, self.calls = wm, []

    def __getattr__(self, name):
        if self._wm is None:
            raise AttributeError(name)
        return getattr(self._wm, name)

    def event_timer_add(self, seconds, window=None):
        self.calls.append("timer_add")
        return "timer"

    def event_timer_remove(self, timer):
        self.calls.append("timer_remove")

    def modal_handler_add(self, operator):
        self.calls.append("modal_handler_add")

    def progress_begin(self, lo, hi):
        self.calls.append(("progress_begin", lo, hi))

    def progress_update(self, value):
        self.calls.append(("progress", value))

    def progress_end(self):
        self.calls.append("progress_end")


def plain_operator(op_class, report):
    """An instance of a plain-Python copy of the bpy operator class ``op_class`` (its own and its
    mixins' methods and attributes, without bpy's base classes, which cannot be instantiated
    by hand), whose ``report`` is ``report``: for calling modal methods by hand."""
    namespace = {}
    for cls in reversed(op_class.__mro__):
        if cls.__module__ not in ("_bpy_types", "bpy_types", "builtins"):
            namespace.update({k: v for k, v in vars(cls).items() if not k.startswith("__")})
    operator = type(f"Plain{op_class.__name__}", (), namespace)()
    operator.report = report
    return operator


def save_rgba(path: Path, rgb: np.ndarray, alpha: np.ndarray) -> None:
    """Premultiplied [H, W, 3] colour and [H, W, 1] alpha → an 8-bit straight-alpha PNG, as a
    Blender capture writes it."""
    from PIL import Image

    straight = np.where(alpha > 1e-6, rgb / np.maximum(alpha, 1e-6), 0.0)
    rgba = np.clip(np.concatenate([straight, alpha], -1), 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(path)


class Reports:
    """A ``report=`` callback that records ``(levels, message)`` pairs."""

    def __init__(self):
        self.messages: list[tuple[set, str]] = []

    def __call__(self, levels, message):
        self.messages.append((set(levels), message))

    def at(self, level: str) -> list[str]:
        return [m for lv, m in self.messages if level in lv]
