"""bpy operators: thin wrappers that gather options and make one call into scene/ or the core.

Each module exports CLASSES (and optionally MENUS, and the registration hooks
``register_properties()`` / ``unregister_properties()``); add new modules to _MODULES.
``reporting`` is not one of them: it holds what the operators share (GSError reporting and the
modal progress skeleton).
"""

from . import capture, display, io_splats, reconstruct, rigging

_MODULES = (io_splats, reconstruct, capture, rigging, display)

MODULES = _MODULES  # the root registrar calls their hooks
CLASSES = tuple(cls for module in _MODULES for cls in module.CLASSES)
MENUS = tuple(menu for module in _MODULES for menu in getattr(module, "MENUS", ()))
