"""The display on an object: the Geometry Nodes modifier, its inputs and drivers, its options.

:func:`add_display` puts the modifier (:data:`MODIFIER_NAME`, the group of :mod:`.cache`) and the
material on a splat mesh, with drivers copying the scene's render size into the group;
:func:`set_display_options` / :func:`display_options` read and write the per-object options
("SH Degree", "Scale Multiplier", "Opacity Threshold", "Viewport Points", "Point Radius").
Modifier inputs are addressed through :func:`set_modifier_input` / :func:`input_property`, which
work on every Blender version (5.2 moved input values from ID properties to
``modifier.properties.inputs``); rigging uses them for its own group.
"""

from __future__ import annotations

import math

import bpy

from ...blender_gs_addon import mesh_layout as layout
from ...blender_gs_addon.errors import GSError, Report, log_report
from .. import mesh_splats
from .cache import display_node_group
from .material import MATERIAL_NAME, display_material
from .scene_settings import (
    camera_problem,
    display_support_problem,
    ensure_transparent_bounces,
    use_standard_view_transform,
)
from .tree import NODE_GROUP_NAME, OPTION_NAMES, RENDER_INPUTS

__all__ = ["MODIFIER_NAME", "display_modifier", "input_ids", "input_property",
           "set_modifier_input", "add_display", "set_display_options", "display_options",
           "remove_display"]

MODIFIER_NAME = "Splat Display"


def display_modifier(obj: bpy.types.Object) -> bpy.types.NodesModifier | None:
    for mod in obj.modifiers:
        if mod.type == 'NODES' and mod.node_group is not None and \
                mod.node_group.name.startswith(NODE_GROUP_NAME):
            return mod
    return None


def input_ids(tree) -> dict[str, str]:
    return {item.name: item.identifier for item in tree.interface.items_tree
            if item.item_type == 'SOCKET' and item.in_out == 'INPUT'}


def _input_api_is_properties(mod) -> bool:
    """Blender 5.2+ keeps modifier input values in ``mod.properties.inputs``, not ID props."""
    return hasattr(mod, "properties") and hasattr(mod.properties, "inputs")


def _input_data_path(mod, identifier: str) -> str:
    """Object-relative data path of a Geometry Nodes modifier input (for drivers)."""
    if _input_api_is_properties(mod):
        return f'modifiers["{mod.name}"].properties.inputs.{identifier}.value'
    return f'modifiers["{mod.name}"]["{identifier}"]'


def input_property(mod, identifier: str) -> tuple[object, str]:
    """(owner, property name) of a modifier input for ``layout.prop`` on any Blender version."""
    if _input_api_is_properties(mod):
        return getattr(mod.properties.inputs, identifier), "value"
    return mod, f'["{identifier}"]'


def _get_input(mod, identifier: str):
    if _input_api_is_properties(mod):
        return getattr(mod.properties.inputs, identifier).value
    return mod[identifier]


def set_modifier_input(mod, identifier: str, value) -> None:
    """Set a modifier input by its socket identifier on any Blender version (5.2 moved input
    values from ID properties to ``modifier.properties.inputs``)."""
    if _input_api_is_properties(mod):
        getattr(mod.properties.inputs, identifier).value = value
    else:
        mod[identifier] = value


def add_display(obj: bpy.types.Object, *, sh_degree: int | None = None,
                scale_multiplier: float = 1.0, opacity_threshold: float = 0.0,
                viewport_points: bool = False, point_radius: float = 0.0,
                scene: bpy.types.Scene | None = None, standard_view_transform: bool = False,
                report: Report = log_report) -> bpy.types.NodesModifier:
    """Give a splat object its Gaussian display (Geometry Nodes modifier + material).

    Idempotent: an object that already has the display gets its options updated. ``sh_degree``
    defaults to the object's own degree. The render size inputs are driven by ``scene``'s
    render settings (default: the context scene). The scene's colour management is left alone
    unless ``standard_view_transform`` asks for view transform "Standard" (the screen then
    shows the trained colours exactly; the display panel's button does the same).
    Cycles' transparent bounces are raised to :data:`CYCLES_TRANSPARENT_BOUNCES` when lower
    (reported). A scene without a perspective active camera gets a warning: the display then
    shows points (:func:`camera_problem`).
    GSError for objects without splat attributes, and on Blender versions without the node
    types the display needs (before 4.5; :func:`display_support_problem`).
    """
    problem = display_support_problem()
    if problem is not None:
        raise GSError(problem)
    if obj is not None and obj.type == 'POINTCLOUD' and getattr(
            obj.data, "type", None) == 'GAUSSIAN_SPLAT':
        raise GSError(f"Object {obj.name!r} holds native splats, which Blender draws itself; "
                      "the splat display is for splat meshes")
    if obj is None or obj.type != 'MESH':
        raise GSError(f"Object {getattr(obj, 'name', obj)!r} is not a splat mesh; the splat "
                      "display draws meshes with splat attributes")
    missing = mesh_splats.missing_attributes(obj.data)
    if missing:
        raise GSError(f"Object {obj.name!r} has no splat attributes (missing "
                      f"{', '.join(missing)}); import a splat file to make a splat object")
    scene = scene or bpy.context.scene
    tree = display_node_group()
    mod = display_modifier(obj)
    if mod is None:
        mod = obj.modifiers.new(MODIFIER_NAME, 'NODES')
        mod.node_group = tree
    if not obj.data.materials:
        obj.data.materials.append(display_material())
    ids = input_ids(tree)
    for name, path in RENDER_INPUTS:
        data_path = _input_data_path(mod, ids[name])
        obj.driver_remove(data_path)
        fcurve = obj.driver_add(data_path)
        driver = fcurve.driver
        driver.type = 'AVERAGE'
        var = driver.variables.new()
        var.type = 'SINGLE_PROP'
        var.targets[0].id_type = 'SCENE'
        var.targets[0].id = scene
        var.targets[0].data_path = path
    degree = obj.data.get(layout.SH_DEGREE_PROP, 3) if sh_degree is None else sh_degree
    set_display_options(obj, sh_degree=degree, scale_multiplier=scale_multiplier,
                        opacity_threshold=opacity_threshold, viewport_points=viewport_points,
                        point_radius=point_radius)
    if standard_view_transform:
        use_standard_view_transform(scene, report=report)
    ensure_transparent_bounces(scene, report=report)
    camera = camera_problem(scene)
    if camera is not None:
        report({'WARNING'}, camera)
    return mod


def set_display_options(obj: bpy.types.Object, *, sh_degree: int | None = None,
                        scale_multiplier: float | None = None,
                        opacity_threshold: float | None = None,
                        viewport_points: bool | None = None,
                        point_radius: float | None = None) -> None:
    """Change the per-object display options (None leaves an option as it is)."""
    mod = display_modifier(obj)
    if mod is None:
        raise GSError(f"Object {obj.name!r} has no splat display; add one first")
    values = {"SH Degree": sh_degree, "Scale Multiplier": scale_multiplier,
              "Opacity Threshold": opacity_threshold, "Viewport Points": viewport_points,
              "Point Radius": point_radius}
    if sh_degree is not None and int(sh_degree) not in (0, 1, 2, 3):
        raise GSError(f"Object {obj.name!r}: SH degree must be 0-3, got {sh_degree}")
    for value, what in ((scale_multiplier, "scale multiplier"), (point_radius, "point radius")):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise GSError(f"Object {obj.name!r}: {what} must be a finite number ≥ 0")
    if opacity_threshold is not None and not 0.0 <= opacity_threshold <= 1.0:
        raise GSError(f"Object {obj.name!r}: opacity threshold must be in [0, 1]")
    ids = input_ids(mod.node_group)
    for name, value in values.items():
        if value is None:
            continue
        if name == "SH Degree":
            value = int(value)
        elif name == "Viewport Points":
            value = bool(value)
        else:
            value = float(value)
        set_modifier_input(mod, ids[name], value)
    obj.update_tag()


def display_options(obj: bpy.types.Object) -> dict:
    """The display options of ``obj`` ({} without a display)."""
    mod = display_modifier(obj)
    if mod is None:
        return {}
    ids = input_ids(mod.node_group)
    return {name: _get_input(mod, ids[name]) for name in OPTION_NAMES}


def remove_display(obj: bpy.types.Object) -> bool:
    """Remove the display modifier, its drivers and the splat material slot; True if removed."""
    mod = display_modifier(obj)
    if mod is None:
        return False
    ids = input_ids(mod.node_group)
    for name, _path in RENDER_INPUTS:
        obj.driver_remove(_input_data_path(mod, ids[name]))
    obj.modifiers.remove(mod)
    mats = obj.data.materials
    for i in reversed(range(len(mats))):
        if mats[i] is not None and mats[i].name == MATERIAL_NAME:
            mats.pop(index=i)
    return True
