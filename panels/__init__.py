"""UI that only draws (sidebar panels). Each module exports CLASSES; add modules to _MODULES."""

from . import display, sidebar

_MODULES = (sidebar, display)

CLASSES = tuple(cls for module in _MODULES for cls in module.CLASSES)
