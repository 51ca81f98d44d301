"""Binding splat objects to armatures, live splat rotation under posing, and baking poses.

Binding (:func:`bind_splats`): weights from :mod:`blender_gs_addon.rigging.skinning` (automatic,
from
the splat cloud, or transferred from a skinned mesh), quantised to 1/255 and written as vertex
groups in bulk, one ``VertexGroup.add`` call per (bone, level); then an Armature modifier.

Live rotation — how each splat's orientation follows its blended bone rotation with no Python
per frame. Splats whose quantised weight rows are equal have the same blended matrix
M = Σ w_j A_j (LBS is x ↦ M x + t, so M does not depend on where the splat is). Binding
groups the splats by weight row quantised to 1/64 (U groups: thousands to tens of thousands;
at a 90° joint the rotation is then within ~0.7° of the exact polar part of the 1/255 weights)
and builds a small hidden helper mesh, ``<object> GS frames``, parented to the splat object
with an identity transform: for every group four vertices, a centre c and c + ε·e_x, e_y, e_z,
carrying the group's weights, deformed by their own Armature modifier. After the splat
object's Armature modifier a Geometry Nodes modifier (:data:`ROTATION_GROUP`, built in Python)

1. reads the deformed helper (Object Info, relative space), rebuilds M per group from the
   three edge vectors, and takes its polar rotation with three Newton steps
   X ← ½ (X + X⁻ᵀ) (exact polar part of LBS, not a Gram-Schmidt approximation);
2. samples that rotation for each splat by its ``gs_frame_group`` index and writes
   ``gs_rotation`` = R_group ⊗ q_rest on the evaluated mesh (one vertex per splat).

The per-frame cost over the Armature modifier alone is one Sample Index, one rotation product
and one attribute store over N splats, plus an Armature modifier over 4U helper vertices. The
rest rotation lives in the original mesh's ``gs_rotation``; export reads the original mesh, the
display reads the evaluated one, bake (:func:`bake_splats`) reads the evaluated one.

Edited bones (rest pose changes) need a re-bind; B-bones are sampled at each group's centre.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..blender_gs_addon import mesh_layout as layout
from ..blender_gs_addon.conventions.frames import transform_points
from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.formats import write_splats
from ..blender_gs_addon.quaternions import normalize_quat, quat_to_matrix
from ..blender_gs_addon.rigging import skinning
from ..blender_gs_addon.sh import rotate_sh_rest
from . import splat_object
from .blend_files import object_named, open_blend, save_blend
from .splat_display import set_modifier_input

__all__ = [
    "GROUP_ATTRIBUTE", "ROTATION_GROUP", "ARMATURE_MODIFIER", "ROTATION_MODIFIER",
    "deform_bones", "bind_splats", "unbind_splats", "bake_splats", "rig_main", "bake_main",
    "parse_frames", "bone_matrices",
]

GROUP_ATTRIBUTE = "gs_frame_group"  # INT, POINT: the splat's weight-row group
ROTATION_GROUP = "GS Splat Rotation"  # node group name
ARMATURE_MODIFIER = "GS Armature"
ROTATION_MODIFIER = "GS Rotation"
HELPER_PROP = "gs_frames_object"  # on the splat object: name of its helper
ARMATURE_PROP = "gs_armature"
_NODE_VERSION = 1
_PENDING = "~gs pending "  # prefix of a binding under construction (see bind_splats)
_NEWTON_STEPS = 3


# ---------------------------------------------------------------------------- inputs
def deform_bones(armature: bpy.types.Object) -> list[bpy.types.Bone]:
    if armature is None or armature.type != 'ARMATURE':
        kind = "nothing" if armature is None else f"a {armature.type.lower()}"
        raise GSError(f"binding needs an armature object, got {kind}")
    bones = [b for b in armature.data.bones if b.use_deform]
    if not bones:
        raise GSError(f"Armature {armature.name!r} has no deform bones (enable Deform on the "
                      "bones that should move the splats)")
    return bones


def _to_local(obj: bpy.types.Object, armature: bpy.types.Object) -> np.ndarray:
    """[4, 4] armature space → the splat object's mesh space (evaluated transforms)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    world_obj = np.array(obj.evaluated_get(depsgraph).matrix_world, np.float64)
    world_arm = np.array(armature.evaluated_get(depsgraph).matrix_world, np.float64)
    return np.linalg.inv(world_obj) @ world_arm


def _mesh_weights(source: bpy.types.Object, names: list[str], to_local: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices [V, 3] in splat space, triangles [T, 3], weights [V, B]) of a skinned mesh."""
    if source is None or source.type != 'MESH':
        raise GSError("weight transfer needs a mesh object with vertex groups")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = source.data  # rest shape: the original mesh, not the posed evaluated one
    count = len(mesh.vertices)
    if count == 0:
        raise GSError(f"Mesh {source.name!r} has no vertices")
    co = np.empty(count * 3, np.float64)
    mesh.vertices.foreach_get("co", co)
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, np.int64)
    mesh.loop_triangles.foreach_get("vertices", tris)
    world = np.array(source.evaluated_get(depsgraph).matrix_world, np.float64)
    obj_world = to_local  # splat space ← world
    verts = transform_points(obj_world @ world, co.reshape(-1, 3))
    column = {source.vertex_groups[n].index: i for i, n in enumerate(names)
              if n in source.vertex_groups}
    if not column:
        raise GSError(f"Mesh {source.name!r} has no vertex groups named after the armature's "
                      "deform bones")
    weights = np.zeros((count, len(names)))
    # One pass over the (small) source mesh's vertices; bpy has no bulk weight reader.
    for v in mesh.vertices:
        for g in v.groups:
            i = column.get(g.group)
            if i is not None:
                weights[v.index, i] = g.weight
    return verts, tris.reshape(-1, 3), weights


# ---------------------------------------------------------------------------- writing
def _write_groups(obj: bpy.types.Object, names: list[str], bones: np.ndarray,
                  levels: np.ndarray, *, steps: int = skinning.WEIGHT_LEVELS) -> None:
    """Vertex groups from [N, K] bone indices and levels (weight = level / steps): one add()
    per (bone, level)."""
    vertex = np.repeat(np.arange(len(bones)), bones.shape[1])
    b, lv = bones.ravel().astype(np.int64), levels.ravel().astype(np.int64)
    used = lv > 0
    vertex, b, lv = vertex[used], b[used], lv[used]
    key = b * 256 + lv
    if len(key) and key.max() < 1 << 16:  # under 256 bones: numpy's radix sort, ~7x faster
        key = key.astype(np.uint16)
    order = np.argsort(key, kind="stable")
    key, vertex = key[order], vertex[order]
    cuts = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [len(key)]])
    groups = {}
    for start, stop in zip(starts, stops):
        bone, level = divmod(int(key[start]), 256)
        vg = groups.get(bone)
        if vg is None:
            vg = groups[bone] = obj.vertex_groups.new(name=names[bone])
        vg.add(vertex[start:stop].tolist(), level / steps, 'REPLACE')


def _add_armature_modifier(obj, armature, name=ARMATURE_MODIFIER):
    mod = obj.modifiers.new(name, 'ARMATURE')
    mod.object = armature
    mod.use_vertex_groups = True
    mod.use_bone_envelopes = False
    mod.use_deform_preserve_volume = False
    return mod


def _helper_of(obj: bpy.types.Object) -> bpy.types.Object | None:
    """The live-rotation helper object of a bound splat object, if any."""
    return bpy.data.objects.get(obj.get(HELPER_PROP, "")) if HELPER_PROP in obj else None


def _remove_helper(helper: bpy.types.Object) -> None:
    mesh = helper.data
    bpy.data.objects.remove(helper)
    if mesh.users == 0:
        bpy.data.meshes.remove(mesh)


def _remove_modifiers(obj: bpy.types.Object, names) -> None:
    for name in names:
        mod = obj.modifiers.get(name)
        if mod is not None:
            obj.modifiers.remove(mod)


def unbind_splats(obj: bpy.types.Object) -> None:
    """Remove what :func:`bind_splats` added (modifiers, helper, groups, group attribute)."""
    helper = _helper_of(obj)
    _remove_modifiers(obj, (ROTATION_MODIFIER, ARMATURE_MODIFIER))
    if helper is not None:
        _remove_helper(helper)
    obj.vertex_groups.clear()
    attr = obj.data.attributes.get(GROUP_ATTRIBUTE)
    if attr is not None:
        obj.data.attributes.remove(attr)
    for prop in (HELPER_PROP, ARMATURE_PROP):
        if prop in obj:
            del obj[prop]


def bind_splats(obj: bpy.types.Object, armature: bpy.types.Object, *, method: str = "auto",
                source_mesh: bpy.types.Object | None = None, rotation_steps: int = 64,
                report: Report = log_report, **weight_options) -> dict:
    """Skin the splat object ``obj`` to ``armature``.

    Args:
        method: "auto" (weights from the splat cloud, :func:`skinning.bone_weights`) or "mesh"
            (copied from ``source_mesh``'s vertex groups at the nearest surface point).
        rotation_steps: weight resolution of the live-rotation groups (splats whose weights
            agree to 1/rotation_steps share one blended rotation); vertex groups keep 1/255.
        weight_options: passed to :func:`skinning.bone_weights` (falloff, resolution, …).
    Returns:
        {"splats", "bones", "groups", "seconds"}. Replaces an earlier binding. GSError (and
        the scene unchanged) for a non-splat object, an armature without deform bones, splats
        far from the armature or a mesh without matching groups.
    """
    start = time.perf_counter()
    splat_object.require_splat_object(obj, allow_empty=False)
    bones = deform_bones(armature)
    if obj.mode != 'OBJECT':
        raise GSError(f"Object {obj.name!r} is in {obj.mode.lower()} mode; switch to object "
                      "mode to bind")
    names = [b.name for b in bones]
    to_local = _to_local(obj, armature)
    heads = transform_points(to_local, np.array([b.head_local for b in bones], np.float64))
    tails = transform_points(to_local, np.array([b.tail_local for b in bones], np.float64))
    positions = splat_object.splat_positions(obj)
    source = f"Object {obj.name!r}"
    if method == "auto":
        sw = skinning.bone_weights(positions, heads, tails, source=source, report=report,
                                   **weight_options)
    elif method == "mesh":
        # The same placement check as the automatic weights: a mesh skinned elsewhere would
        # otherwise hand every splat the weights of whatever surface happens to be nearest.
        skinning.check_far(positions, heads, tails, source=source, report=report)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        world_inv = np.linalg.inv(np.array(obj.evaluated_get(depsgraph).matrix_world))
        verts, tris, vw = _mesh_weights(source_mesh, names, world_inv)
        sw = skinning.transfer_weights(positions, verts, tris, vw)
    else:
        raise GSError(f"unknown binding method {method!r}; use 'auto' or 'mesh'")
    levels = skinning.quantize_weights(sw.weights)
    # Rotation groups use coarser weights (1/64: at a 90° joint the blended rotation is off by
    # at most ~0.7°) so that 1M splats need tens of thousands of helper frames, not millions.
    rot_levels = skinning.quantize_weights(sw.weights, levels=rotation_steps)
    group, group_bones, group_levels = skinning.frame_groups(sw.bones, rot_levels)
    count = len(group_bones)
    centres = np.zeros((count, 3))
    for axis in range(3):
        centres[:, axis] = np.bincount(group, positions[:, axis], minlength=count)
    centres /= np.maximum(np.bincount(group, minlength=count), 1)[:, None]
    extent = float(np.linalg.norm(positions.max(0) - positions.min(0)))
    epsilon = max(extent * 1e-2, 1e-6)

    # The new binding is built beside any earlier one under temporary names and swapped in
    # only once complete, so a failure part-way leaves the earlier binding (or none) exactly
    # as it was: unbinding first would lose the user's working rig to a late error.
    had_tree = ROTATION_GROUP in bpy.data.node_groups
    helper = None
    try:
        _write_groups(obj, [f"{_PENDING}{i}" for i in range(len(names))], sw.bones, levels)
        attr = obj.data.attributes.new(_PENDING + GROUP_ATTRIBUTE, 'INT', 'POINT')
        attr.data.foreach_set("value", group.astype(np.int32))
        _add_armature_modifier(obj, armature, name=_PENDING + ARMATURE_MODIFIER)
        helper = _make_helper(obj, armature, names, centres, group_bones, group_levels,
                              epsilon, rotation_steps)
        rot = obj.modifiers.new(_PENDING + ROTATION_MODIFIER, 'NODES')
        rot.node_group = rotation_node_group()
        _set_input(rot, "Frames", helper)
        _set_input(rot, "Frame Size", epsilon)
    except BaseException:
        _discard_pending(obj, helper, had_tree)
        raise
    _swap_in(obj, armature, names, helper)
    seconds = time.perf_counter() - start
    report({'INFO'}, f"Bound {len(positions):,} splats to {len(names)} bones of "
                     f"{armature.name!r} ({count:,} rotation groups) in {seconds:.2f} s")
    return {"splats": len(positions), "bones": len(names), "groups": count,
            "seconds": seconds}


def _discard_pending(obj, helper, had_tree) -> None:
    """Remove a half-built binding (everything under the temporary names)."""
    _remove_modifiers(obj, (_PENDING + ROTATION_MODIFIER, _PENDING + ARMATURE_MODIFIER))
    for vg in [vg for vg in obj.vertex_groups if vg.name.startswith(_PENDING)]:
        obj.vertex_groups.remove(vg)
    attr = obj.data.attributes.get(_PENDING + GROUP_ATTRIBUTE)
    if attr is not None:
        obj.data.attributes.remove(attr)
    if helper is not None and helper.name in bpy.data.objects:
        _remove_helper(helper)
    tree = bpy.data.node_groups.get(ROTATION_GROUP)
    if not had_tree and tree is not None and tree.users == 0:
        bpy.data.node_groups.remove(tree)


def _swap_in(obj, armature, names, helper) -> None:
    """Replace the earlier binding by the complete pending one (renames only: cannot fail on
    valid data)."""
    old_helper = _helper_of(obj)
    _remove_modifiers(obj, (ROTATION_MODIFIER, ARMATURE_MODIFIER))
    if old_helper is not None and old_helper != helper:
        _remove_helper(old_helper)
    for vg in [vg for vg in obj.vertex_groups if not vg.name.startswith(_PENDING)]:
        obj.vertex_groups.remove(vg)
    for i, name in enumerate(names):
        vg = obj.vertex_groups.get(f"{_PENDING}{i}")
        if vg is not None:
            vg.name = name
    attr = obj.data.attributes.get(GROUP_ATTRIBUTE)
    if attr is not None:
        obj.data.attributes.remove(attr)
    # Looked up again by name: removing a layer may move the others in memory.
    obj.data.attributes[_PENDING + GROUP_ATTRIBUTE].name = GROUP_ATTRIBUTE
    for name in (ARMATURE_MODIFIER, ROTATION_MODIFIER):
        obj.modifiers[_PENDING + name].name = name
    # Deform first: a display modifier (splat_display) must see the posed splats.
    for index, name in enumerate((ARMATURE_MODIFIER, ROTATION_MODIFIER)):
        obj.modifiers.move(obj.modifiers.find(name), index)
    helper.name = helper.data.name = f"{obj.name} GS frames"
    obj[HELPER_PROP] = helper.name
    obj[ARMATURE_PROP] = armature.name
    obj.data.update()


def _make_helper(obj, armature, names, centres, group_bones, group_levels, epsilon, steps):
    count = len(centres)
    offsets = np.vstack([np.zeros(3), np.eye(3) * epsilon])  # [4, 3]
    co = (centres[:, None, :] + offsets[None]).reshape(-1, 3).astype(np.float32)
    mesh = bpy.data.meshes.new(f"{obj.name} GS frames")
    mesh.vertices.add(len(co))
    mesh.attributes["position"].data.foreach_set("vector", co.ravel())
    mesh.update()
    helper = bpy.data.objects.new(mesh.name, mesh)
    try:
        for collection in obj.users_collection:
            collection.objects.link(helper)
        helper.parent = obj
        helper.matrix_parent_inverse = Matrix.Identity(4)
        helper.matrix_basis = Matrix.Identity(4)
        _write_groups(helper, names, np.repeat(group_bones, 4, axis=0),
                      np.repeat(group_levels, 4, axis=0), steps=steps)
        _add_armature_modifier(helper, armature)
        helper.hide_viewport = True
        helper.hide_render = True
        helper.hide_select = True
    except BaseException:
        _remove_helper(helper)
        raise
    assert len(co) == 4 * count
    return helper


def _set_input(modifier, name, value):
    """Set a Geometry Nodes modifier input by its socket name (on any Blender version)."""
    for item in modifier.node_group.interface.items_tree:
        if item.item_type == 'SOCKET' and item.in_out == 'INPUT' and item.name == name:
            set_modifier_input(modifier, item.identifier, value)
            return
    raise GSError(f"node group {modifier.node_group.name!r} has no input {name!r}")


# ---------------------------------------------------------------------------- node group
def rotation_node_group() -> bpy.types.NodeTree:
    """The live-rotation Geometry Nodes group (made once per file, rebuilt when outdated)."""
    tree = bpy.data.node_groups.get(ROTATION_GROUP)
    if tree is not None and tree.get("gs_version") == _NODE_VERSION:
        return tree
    if tree is None:
        tree = bpy.data.node_groups.new(ROTATION_GROUP, 'GeometryNodeTree')
    else:
        tree.nodes.clear()
        tree.interface.clear()
    _build_rotation_tree(tree)
    tree["gs_version"] = _NODE_VERSION
    return tree


def _build_rotation_tree(tree: bpy.types.NodeTree) -> None:
    iface = tree.interface
    iface.new_socket("Geometry", in_out='INPUT', socket_type='NodeSocketGeometry')
    iface.new_socket("Frames", in_out='INPUT', socket_type='NodeSocketObject')
    size = iface.new_socket("Frame Size", in_out='INPUT', socket_type='NodeSocketFloat')
    size.default_value = 1.0
    iface.new_socket("Geometry", in_out='OUTPUT', socket_type='NodeSocketGeometry')
    nodes, links = tree.nodes, tree.links

    def node(kind, **props):
        n = nodes.new(kind)
        for key, value in props.items():
            setattr(n, key, value)
        return n

    def link(a, b):
        links.new(a, b)

    group_in = node("NodeGroupInput")
    group_out = node("NodeGroupOutput")
    info = node("GeometryNodeObjectInfo", transform_space='RELATIVE')
    link(group_in.outputs["Frames"], info.inputs["Object"])
    frames = info.outputs["Geometry"]
    domain = node("GeometryNodeAttributeDomainSize", component='MESH')
    link(frames, domain.inputs["Geometry"])
    quarter = node("ShaderNodeMath", operation='DIVIDE')
    link(domain.outputs["Point Count"], quarter.inputs[0])
    quarter.inputs[1].default_value = 4.0
    points = node("GeometryNodePoints")
    link(quarter.outputs[0], points.inputs["Count"])

    # Per group (evaluated on the U points): the deformed frame's three edges / ε.
    index = node("GeometryNodeInputIndex")
    position = node("GeometryNodeInputPosition")
    corner = []
    for k in range(4):
        idx = node("ShaderNodeMath", operation='MULTIPLY_ADD')
        link(index.outputs[0], idx.inputs[0])
        idx.inputs[1].default_value = 4.0
        idx.inputs[2].default_value = float(k)
        sample = node("GeometryNodeSampleIndex", data_type='FLOAT_VECTOR', domain='POINT')
        link(frames, sample.inputs["Geometry"])
        link(position.outputs[0], sample.inputs["Value"])
        link(idx.outputs[0], sample.inputs["Index"])
        corner.append(sample.outputs[0])
    combine = node("FunctionNodeCombineMatrix")
    for k in range(3):
        edge = node("ShaderNodeVectorMath", operation='SUBTRACT')
        link(corner[k + 1], edge.inputs[0])
        link(corner[0], edge.inputs[1])
        scaled = node("ShaderNodeVectorMath", operation='DIVIDE')
        link(edge.outputs[0], scaled.inputs[0])
        link(group_in.outputs["Frame Size"], scaled.inputs[1])
        xyz = node("ShaderNodeSeparateXYZ")
        link(scaled.outputs[0], xyz.inputs[0])
        for row in range(3):
            link(xyz.outputs[row], combine.inputs[f"Column {k + 1} Row {row + 1}"])
    matrix = combine.outputs[0]
    # Polar part by Newton's iteration X ← (X + X⁻ᵀ) / 2 (quadratic convergence; singular
    # values of a blend of rotations lie in (0, 1], 0.7 for a 90° two-bone joint).
    for _ in range(_NEWTON_STEPS):
        inverse = node("FunctionNodeInvertMatrix")
        link(matrix, inverse.inputs[0])
        inv_t = node("FunctionNodeTransposeMatrix")
        link(inverse.outputs["Matrix"], inv_t.inputs[0])
        sep_a = node("FunctionNodeSeparateMatrix")
        link(matrix, sep_a.inputs[0])
        sep_b = node("FunctionNodeSeparateMatrix")
        link(inv_t.outputs[0], sep_b.inputs[0])
        nxt = node("FunctionNodeCombineMatrix")
        for col in range(1, 4):
            for row in range(1, 4):
                name = f"Column {col} Row {row}"
                add = node("ShaderNodeMath", operation='ADD')
                link(sep_a.outputs[name], add.inputs[0])
                link(sep_b.outputs[name], add.inputs[1])
                half = node("ShaderNodeMath", operation='MULTIPLY')
                link(add.outputs[0], half.inputs[0])
                half.inputs[1].default_value = 0.5
                link(half.outputs[0], nxt.inputs[name])
        matrix = nxt.outputs[0]
    separate = node("FunctionNodeSeparateTransform")
    link(matrix, separate.inputs[0])

    # Per splat: the group's rotation ⊗ the rest rotation.
    group_index = node("GeometryNodeInputNamedAttribute", data_type='INT')
    group_index.inputs["Name"].default_value = GROUP_ATTRIBUTE
    per_splat = node("GeometryNodeSampleIndex", data_type='QUATERNION', domain='POINT')
    link(points.outputs[0], per_splat.inputs["Geometry"])
    link(separate.outputs["Rotation"], per_splat.inputs["Value"])
    link(group_index.outputs["Attribute"], per_splat.inputs["Index"])
    rest = node("GeometryNodeInputNamedAttribute", data_type='QUATERNION')
    rest.inputs["Name"].default_value = layout.ROTATION
    rotate = node("FunctionNodeRotateRotation", rotation_space='GLOBAL')
    link(rest.outputs["Attribute"], rotate.inputs["Rotation"])
    link(per_splat.outputs[0], rotate.inputs["Rotate By"])
    store = node("GeometryNodeStoreNamedAttribute", data_type='QUATERNION', domain='POINT')
    store.inputs["Name"].default_value = layout.ROTATION
    link(group_in.outputs["Geometry"], store.inputs["Geometry"])
    link(rotate.outputs[0], store.inputs["Value"])
    link(store.outputs[0], group_out.inputs[0])


# ---------------------------------------------------------------------------- evaluation
def evaluated_splats(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """(positions [N, 3], rotations [N, 4]) of the posed splat object, in mesh space.

    Modifiers after the rigging ones (a display modifier turning splats into quads) are
    switched off for the read and restored afterwards.
    """
    after = []
    index = obj.modifiers.find(ROTATION_MODIFIER)
    if index >= 0:
        after = [m for m in list(obj.modifiers)[index + 1:] if m.show_viewport]
    try:
        for mod in after:
            mod.show_viewport = False
        depsgraph = bpy.context.evaluated_depsgraph_get()
        depsgraph.update()
        mesh = obj.evaluated_get(depsgraph).data
        count = len(obj.data.vertices)
        if len(mesh.vertices) != count or layout.ROTATION not in mesh.attributes:
            raise GSError(f"Object {obj.name!r}: its modifiers change the splat count "
                          f"({count:,} → {len(mesh.vertices):,}); cannot read posed splats")
        pos = np.empty(count * 3, np.float32)
        mesh.attributes[layout.POSITION].data.foreach_get("vector", pos)
        rot = np.empty(count * 4, np.float32)
        mesh.attributes[layout.ROTATION].data.foreach_get("value", rot)
    finally:
        for mod in after:
            mod.show_viewport = True
    return pos.reshape(-1, 3), rot.reshape(-1, 4)


def bone_matrices(obj: bpy.types.Object, armature: bpy.types.Object, names: list[str]
                  ) -> np.ndarray:
    """[B, 4, 4] deformation matrices (pose · rest⁻¹) of bones ``names`` in ``obj``'s mesh
    space (the frame :func:`skinning.blend_skinning` takes)."""
    to_local = _to_local(obj, armature)
    out = []
    for name in names:
        pose = np.array(armature.pose.bones[name].matrix, np.float64)
        rest = np.array(armature.data.bones[name].matrix_local, np.float64)
        out.append(to_local @ pose @ np.linalg.inv(rest) @ np.linalg.inv(to_local))
    return np.stack(out)


def bake_splats(obj: bpy.types.Object, *, frames: tuple[int, int], out_dir: str | os.PathLike,
                up_axis: str | None = None, report: Report = log_report) -> list[str]:
    """Write the posed splats of frames A..B (inclusive) as ``<name>_<frame>.ply``.

    Positions and rotations come from the evaluated object, SH bands 1-3 are rotated by each
    splat's rotation delta (posed ⊗ rest⁻¹); scales, opacities and colours stay. The object's
    transform is applied as on export (file frame of ``up_axis``; default: the axis the object
    was imported with). Restores the current frame.
    """
    splat_object.require_splat_object(obj, allow_empty=False)
    if up_axis is None:
        up_axis = obj.data.get(layout.UP_AXIS_PROP, "-Y")
    first, last = int(frames[0]), int(frames[1])
    if last < first:
        raise GSError(f"frame range {first}:{last} is empty")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GSError(f"{out}: cannot create the output folder: {err}") from None
    rest = splat_object.object_to_splats(obj, apply_transform=False)
    rest_t = np.swapaxes(quat_to_matrix(rest.rotations.astype(np.float64)), -1, -2)
    scene = bpy.context.scene
    current = scene.frame_current
    stem = bpy.path.clean_name(obj.name)
    written = []
    start = time.perf_counter()
    try:
        for frame in range(first, last + 1):
            scene.frame_set(frame)
            pos, rot = evaluated_splats(obj)
            posed = rest.copy()
            posed.positions = pos
            posed.rotations = normalize_quat(rot).astype(np.float32)
            delta = quat_to_matrix(rot.astype(np.float64)) @ rest_t  # [N, 3, 3]
            posed.sh_rest = rotate_sh_rest(rest.sh_rest, delta)
            matrix = splat_object.export_matrix(obj, up_axis=up_axis)
            if not np.array_equal(matrix, np.eye(4)):
                posed = posed.transformed(matrix)
            path = out / f"{stem}_{frame:04d}.ply"
            write_splats(path, posed, format="ply", report=report)
            written.append(str(path))
    finally:
        scene.frame_set(current)
    report({'INFO'}, f"Baked {len(written)} frames of {rest.count:,} splats to {out} in "
                     f"{time.perf_counter() - start:.2f} s")
    return written


# ---------------------------------------------------------------------------- command line
def parse_frames(text: str) -> tuple[int, int]:
    """"A:B" → (A, B), inclusive; GSError for anything else."""
    try:
        a, b = (int(part) for part in str(text).split(":"))
    except ValueError:
        raise GSError(f"frames must be A:B (two whole numbers), got {text!r}") from None
    if b < a:
        raise GSError(f"frame range {text!r} is empty")
    return a, b


def _print_report(levels: set, message: str) -> None:
    print(("Warning: " if "WARNING" in levels else "Error: " if "ERROR" in levels else "")
          + message)


def rig_main(args: argparse.Namespace) -> int:
    """``rig --blend IN --object NAME (--armature ARM | --template humanoid) --out OUT``."""
    open_blend(args.blend)
    obj = object_named(args.blend, args.object)
    template = getattr(args, "template", None)
    arm_name = getattr(args, "armature", None)
    if bool(template) == bool(arm_name):
        raise GSError("give exactly one of --armature NAME or --template humanoid")
    if template:
        if template != "humanoid":
            raise GSError(f"unknown template {template!r}; the one template is 'humanoid'")
        from .humanoid import rig_humanoid

        armature = rig_humanoid(obj, report=_print_report)
    else:
        armature = object_named(args.blend, arm_name)
        bind_splats(obj, armature, report=_print_report)
    save_blend(args.out)
    print(f"Saved {os.path.abspath(args.out)}: {obj.name!r} bound to {armature.name!r}")
    return 0


def bake_main(args: argparse.Namespace) -> int:
    """``bake --blend IN --object NAME --frames A:B --out DIR``."""
    frames = parse_frames(args.frames)
    open_blend(args.blend)
    obj = object_named(args.blend, args.object)
    bake_splats(obj, frames=frames, out_dir=args.out, report=_print_report)
    return 0
