"""bpy operators: thin wrappers that gather options and make one call into scene/ or the core.

Each module exports CLASSES (and optionally MENUS); add new modules to _MODULES.
"""

from . import io_splats

_MODULES = (io_splats,)

CLASSES = tuple(cls for module in _MODULES for cls in module.CLASSES)
MENUS = tuple(menu for module in _MODULES for menu in getattr(module, "MENUS", ()))
