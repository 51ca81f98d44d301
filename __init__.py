# SPDX-License-Identifier: GPL-3.0-or-later
"""Gaussian Splats — Blender extension entry point (registration only).

Each module under operators/ and panels/ exports ``CLASSES`` (and optionally ``MENUS``: pairs of
a menu type and a draw function); this registrar registers them in order and unregisters in
mirror order. The core (blender_gs_addon/) never imports bpy.
"""

import bpy

from . import operators, panels

_MODULES = (operators, panels)


def _classes():
    return [cls for module in _MODULES for cls in module.CLASSES]


def _menus():
    return [menu for module in _MODULES for menu in getattr(module, "MENUS", ())]


def register():
    for cls in _classes():
        bpy.utils.register_class(cls)
    for menu, draw in _menus():
        menu.append(draw)


def unregister():
    for menu, draw in reversed(_menus()):
        menu.remove(draw)
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
