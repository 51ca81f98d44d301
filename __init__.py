# SPDX-License-Identifier: GPL-3.0-or-later
"""Gaussian Splats — Blender extension entry point (registration only).

Order: the add-on preferences first (other classes read them), then each module's classes under
operators/ and panels/ — every module exports ``CLASSES`` (and optionally ``MENUS``: pairs of a
menu type and a draw function) — then the menus, then the hooks. Unregistering mirrors it.

Hooks: a module listed in its package's ``MODULES`` may define ``register_properties()`` and
``unregister_properties()``. They run after all classes are registered and before any is
unregistered, which is where ``bpy.types.X.name = PointerProperty(type=SomeGroup)``,
app handlers and shutdown of helper processes belong (the PropertyGroup classes themselves go
in CLASSES so they exist first).

The core (blender_gs_addon/) never imports bpy. Imports happen inside register() so that
importing this package (pytest collects it as the root package) needs no bpy.
"""


def _parts():
    from . import operators, panels, preferences

    packages = (operators, panels)
    classes = [*preferences.CLASSES]
    classes += [cls for package in packages for cls in package.CLASSES]
    menus = [menu for package in packages for menu in getattr(package, "MENUS", ())]
    hooks = [module for package in packages for module in getattr(package, "MODULES", ())]
    return classes, menus, hooks


def register():
    import bpy

    classes, menus, hooks = _parts()
    for cls in classes:
        bpy.utils.register_class(cls)
    for menu, draw in menus:
        menu.append(draw)
    for module in hooks:
        if hasattr(module, "register_properties"):
            module.register_properties()


def unregister():
    import bpy

    classes, menus, hooks = _parts()
    for module in reversed(hooks):
        if hasattr(module, "unregister_properties"):
            module.unregister_properties()
    for menu, draw in reversed(menus):
        menu.remove(draw)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
