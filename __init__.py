# SPDX-License-Identifier: GPL-3.0-or-later
"""Gaussian Splats — Blender extension entry point (registration only).

Each module under operators/ and panels/ exports ``CLASSES`` (and optionally ``MENUS``: pairs of
a menu type and a draw function); this registrar registers them in order and unregisters in
mirror order. The core (blender_gs_addon/) never imports bpy. Imports happen inside register()
so that importing this package (pytest collects it as the root package) needs no bpy.
"""


def _parts():
    from . import operators, panels

    modules = (operators, panels)
    classes = [cls for module in modules for cls in module.CLASSES]
    menus = [menu for module in modules for menu in getattr(module, "MENUS", ())]
    return classes, menus


def register():
    import bpy

    classes, menus = _parts()
    for cls in classes:
        bpy.utils.register_class(cls)
    for menu, draw in menus:
        menu.append(draw)


def unregister():
    import bpy

    classes, menus = _parts()
    for menu, draw in reversed(menus):
        menu.remove(draw)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
