"""Binding splat objects to armatures, and live splat rotation under posing.

Binding (:func:`bind_splats`): weights from :mod:`blender_gs_addon.rigging.skinning`
(automatic, from the splat cloud, or transferred from a skinned mesh), quantised to 1/255 and
written as vertex groups in bulk, one ``VertexGroup.add`` call per (bone, level);
then an Armature modifier.

Live rotation — how each splat's orientation follows its blended bone rotation with no Python
per frame. Splats whose quantised weight rows are equal have the same blended matrix
M = Σ w_j A_j (LBS is x ↦ M x + t, so M does not depend on where the splat is). Binding
groups the splats by weight row quantised to 1/64 (U groups: thousands to tens of thousands;
at a 90° joint the rotation is then within ~0.7° of the exact polar part of the 1/255 weights)
and builds a small hidden helper mesh, ``<object> GS frames``, parented to the splat object
with an identity transform: for every group four vertices, a centre c and c + ε·e_x, e_y, e_z,
carrying the group's weights, deformed by their own Armature modifier. After the splat
object's Armature modifier the Geometry Nodes group of :mod:`.rotation_nodes` takes each
group's exact polar rotation and writes ``gs_rotation`` = R_group ⊗ q_rest per splat, and
turns the splat's SH bands by R_group (so the display and the exact engine show the posed
splat's view-dependent colour, as bake writes it).

The per-frame cost over the Armature modifier alone is one Sample Index, one rotation product
and one attribute store over N splats, plus an Armature modifier over 4U helper vertices. The
rest rotation lives in the original mesh's ``gs_rotation``; export reads the original mesh, the
display reads the evaluated one, bake (:mod:`.bake`) reads the evaluated one.

Native splats (Blender 5.3+ point clouds) take no Armature modifier and no vertex groups. Their
binding puts the weights on a second hidden helper, ``<object> GS cage`` (one vertex per splat,
vertex groups, the group index, an Armature modifier), and one Geometry Nodes modifier,
``GS Pose``, on the point cloud itself (:mod:`.native_pose_nodes`): positions from the cage,
rotations from the frames, SH bands turned with them. The point cloud's data is never changed,
so it keeps being drawn natively while posed and unbinding gives back exactly what was there.

Splats with a non-finite position get no weights (a warning says how many): they stay where
they are, and every renderer and writer skips them. Edited bones (rest pose changes) need a
re-bind; B-bones are sampled at each group's centre.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

from ..blender_gs_addon import mesh_layout as layout
from ..blender_gs_addon import native_layout as native
from ..blender_gs_addon.conventions.frames import transform_points
from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.rigging import skinning
from . import splat_object
from .display import set_modifier_input
from .native_pose_nodes import native_pose_node_group
from .rotation_nodes import GROUP_ATTRIBUTE, rotation_node_group

__all__ = [
    "ARMATURE_MODIFIER", "ROTATION_MODIFIER", "POSE_MODIFIER", "HELPER_PROP", "CAGE_PROP",
    "ARMATURE_PROP", "deform_bones", "bind_splats", "unbind_splats", "evaluated_splats",
    "binding_weights_object", "bone_matrices",
]

ARMATURE_MODIFIER = "GS Armature"
ROTATION_MODIFIER = "GS Rotation"
POSE_MODIFIER = "GS Pose"  # native splats: the posing Geometry Nodes on the point cloud
HELPER_PROP = "gs_frames_object"  # on the splat object: name of its frames helper
CAGE_PROP = "gs_cage_object"  # on a native splat object: name of its cage
ARMATURE_PROP = "gs_armature"
_MODIFIERS = (ARMATURE_MODIFIER, ROTATION_MODIFIER, POSE_MODIFIER)
_PENDING = "~gs pending "  # prefix of a binding under construction (see bind_splats)


# ---------------------------------------------------------------------------- inputs
def deform_bones(armature: bpy.types.Object) -> list[bpy.types.Bone]:
    if armature is None or armature.type != 'ARMATURE':
        kind = "nothing" if armature is None else "a " + armature.bl_rna.properties[
            "type"].enum_items[armature.type].name.lower()  # "mesh", "point cloud", …
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


# ---------------------------------------------------------------------------- weights
@dataclass
class _Plan:
    """What a binding writes, computed before anything in the scene changes."""

    names: list[str]  # deform bone names, the columns of ``bones``
    positions: np.ndarray  # [N, 3] float32 splat centres as stored
    bones: np.ndarray  # [N, K] bone indices
    levels: np.ndarray  # [N, K] weights in 1/255 (rows of 0: unbound splats)
    group: np.ndarray  # [N] int32 weight-row group of each splat
    group_bones: np.ndarray  # [U, K]
    group_levels: np.ndarray  # [U, K] in 1/rotation_steps
    centres: np.ndarray  # [U, 3] mean rest position of each group
    epsilon: float  # frame size of the helper
    rotation_steps: int


def _skin_weights(obj, armature, bones, positions, *, method, source_mesh, report,
                  weight_options) -> skinning.SkinWeights:
    """Weights of the finite ``positions`` [M, 3] (mesh space of ``obj``)."""
    names = [b.name for b in bones]
    to_local = _to_local(obj, armature)
    heads = transform_points(to_local, np.array([b.head_local for b in bones], np.float64))
    tails = transform_points(to_local, np.array([b.tail_local for b in bones], np.float64))
    source = f"Object {obj.name!r}"
    if method == "auto":
        return skinning.bone_weights(positions, heads, tails, source=source, report=report,
                                     **weight_options)
    if method == "mesh":
        # The same placement check as the automatic weights: a mesh skinned elsewhere would
        # otherwise hand every splat the weights of whatever surface happens to be nearest.
        skinning.check_far(positions, heads, tails, source=source, report=report)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        world_inv = np.linalg.inv(np.array(obj.evaluated_get(depsgraph).matrix_world))
        verts, tris, vw = _mesh_weights(source_mesh, names, world_inv)
        return skinning.transfer_weights(positions, verts, tris, vw)
    raise GSError(f"unknown binding method {method!r}; use 'auto' or 'mesh'")


def _binding_plan(obj, armature, bones, *, method, source_mesh, rotation_steps, report,
                  weight_options) -> _Plan:
    positions = splat_object.splat_positions(obj)
    finite = np.isfinite(positions).all(axis=1)  # [N]
    source = f"Object {obj.name!r}"
    if not finite.any():
        raise GSError(f"{source}: no splat has a finite position; nothing to bind")
    sw = _skin_weights(obj, armature, bones, positions[finite], method=method,
                       source_mesh=source_mesh, report=report, weight_options=weight_options)
    bone_rows, weights = sw.bones, sw.weights
    if not finite.all():
        report({'WARNING'}, f"{source}: {int((~finite).sum()):,} of {len(positions):,} splats "
                            "have NaN or infinite positions and stay unbound (renderers and "
                            "writers skip them)")
        bone_rows = np.zeros((len(positions), sw.bones.shape[1]), sw.bones.dtype)
        weights = np.zeros((len(positions), sw.weights.shape[1]), sw.weights.dtype)
        bone_rows[finite], weights[finite] = sw.bones, sw.weights
    # Rotation groups use coarser weights (1/64: at a 90° joint the blended rotation is off by
    # at most ~0.7°) so that 1M splats need tens of thousands of helper frames, not millions.
    rot_levels = skinning.quantize_weights(weights, levels=rotation_steps)
    group, group_bones, group_levels = skinning.frame_groups(bone_rows, rot_levels)
    count = len(group_bones)
    placed = np.where(finite[:, None], positions, 0.0)  # [N, 3]
    centres = np.zeros((count, 3))
    for axis in range(3):
        centres[:, axis] = np.bincount(group, placed[:, axis], minlength=count)
    centres /= np.maximum(np.bincount(group, minlength=count), 1)[:, None]
    extent = float(np.linalg.norm(positions[finite].max(0) - positions[finite].min(0)))
    return _Plan(names=[b.name for b in bones], positions=positions, bones=bone_rows,
                 levels=skinning.quantize_weights(weights), group=group,
                 group_bones=group_bones, group_levels=group_levels, centres=centres,
                 epsilon=max(extent * 1e-2, 1e-6), rotation_steps=rotation_steps)


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


def _linked_object(obj: bpy.types.Object, prop: str) -> bpy.types.Object | None:
    """The helper object whose name ``obj[prop]`` holds, if any."""
    return bpy.data.objects.get(obj.get(prop, "")) if prop in obj else None


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


def binding_weights_object(obj: bpy.types.Object) -> bpy.types.Object | None:
    """The object holding a bound splat object's vertex groups: the object itself (mesh
    layout) or its cage (native splats); None when ``obj`` is not bound."""
    if ARMATURE_PROP not in obj:
        return None
    return _linked_object(obj, CAGE_PROP) if CAGE_PROP in obj else obj


def unbind_splats(obj: bpy.types.Object) -> None:
    """Remove what :func:`bind_splats` added (modifiers, helpers, groups, group attribute)."""
    helpers = [_linked_object(obj, prop) for prop in (HELPER_PROP, CAGE_PROP)]
    _remove_modifiers(obj, _MODIFIERS)
    for helper in helpers:
        if helper is not None:
            _remove_helper(helper)
    if obj.type == 'MESH':
        obj.vertex_groups.clear()
        attr = obj.data.attributes.get(GROUP_ATTRIBUTE)
        if attr is not None:
            obj.data.attributes.remove(attr)
    for prop in (HELPER_PROP, CAGE_PROP, ARMATURE_PROP):
        if prop in obj:
            del obj[prop]


def bind_splats(obj: bpy.types.Object, armature: bpy.types.Object, *, method: str = "auto",
                source_mesh: bpy.types.Object | None = None, rotation_steps: int = 64,
                report: Report = log_report, **weight_options) -> dict:
    """Skin the splat object ``obj`` (mesh layout or native splats) to ``armature``.

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
    layout_name = splat_object.require_splat_object(obj, allow_empty=False)
    bones = deform_bones(armature)
    if obj.mode != 'OBJECT':
        raise GSError(f"Object {obj.name!r} is in {obj.mode.lower()} mode; switch to object "
                      "mode to bind")
    if obj.library is not None:
        raise GSError(f"Object {obj.name!r} is linked from {obj.library.filepath!r} and cannot "
                      "take modifiers; make it local (Object › Relations › Make Local) to bind")
    plan = _binding_plan(obj, armature, bones, method=method, source_mesh=source_mesh,
                         rotation_steps=rotation_steps, report=report,
                         weight_options=weight_options)
    # The new binding is built beside any earlier one under temporary names and swapped in
    # only once complete, so a failure part-way leaves the earlier binding (or none) exactly
    # as it was: unbinding first would lose the user's working rig to a late error.
    trees_before = set(bpy.data.node_groups.keys())
    built: dict[str, bpy.types.Object] = {}
    try:
        build = _build_native if layout_name == "NATIVE" else _build_mesh
        build(obj, armature, plan, built, report=report)
    except BaseException:
        _discard_pending(obj, built, trees_before)
        raise
    _swap_in(obj, armature, plan.names, built)
    seconds = time.perf_counter() - start
    report({'INFO'}, f"Bound {len(plan.positions):,} splats to {len(plan.names)} bones of "
                     f"{armature.name!r} ({len(plan.group_bones):,} rotation groups) in "
                     f"{seconds:.2f} s")
    return {"splats": len(plan.positions), "bones": len(plan.names),
            "groups": len(plan.group_bones), "seconds": seconds}


def _build_mesh(obj, armature, plan: _Plan, built: dict, *, report: Report) -> None:
    """Mesh layout: vertex groups, group index and Armature modifier on ``obj`` itself."""
    _write_groups(obj, [f"{_PENDING}{i}" for i in range(len(plan.names))], plan.bones,
                  plan.levels)
    attr = obj.data.attributes.new(_PENDING + GROUP_ATTRIBUTE, 'INT', 'POINT')
    attr.data.foreach_set("value", plan.group.astype(np.int32))
    _add_armature_modifier(obj, armature, name=_PENDING + ARMATURE_MODIFIER)
    built["helper"] = _make_helper(obj, armature, plan)
    rot = obj.modifiers.new(_PENDING + ROTATION_MODIFIER, 'NODES')
    rot.node_group = rotation_node_group(_turned_sh_count(obj, report))
    _set_input(rot, "Frames", built["helper"])
    _set_input(rot, "Frame Size", plan.epsilon)


def _build_native(obj, armature, plan: _Plan, built: dict, *, report: Report) -> None:
    """Native splats: the cage carries the weights; ``GS Pose`` on the point cloud."""
    built["cage"] = _make_cage(obj, armature, plan)
    built["helper"] = _make_helper(obj, armature, plan)
    pose = obj.modifiers.new(_PENDING + POSE_MODIFIER, 'NODES')
    pose.node_group = native_pose_node_group(_turned_sh_count(obj, report))
    _set_input(pose, "Cage", built["cage"])
    _set_input(pose, "Frames", built["helper"])
    _set_input(pose, "Frame Size", plan.epsilon)


def _turned_sh_count(obj, report: Report) -> int:
    """How many SH rest coefficients turn with the pose: whole bands 1–3 (warned otherwise)."""
    attributes = {a.name: a.data_type for a in obj.data.attributes if a.domain == 'POINT'}
    if obj.type == 'MESH':
        have = sum(1 for name in attributes if name.startswith(layout.SH_REST_PREFIX))
    else:
        have = native.native_sh_count(attributes)
    turned = max(k for k in (0, 3, 8, 15) if k <= have)
    if turned != have:
        report({'WARNING'}, f"Object {obj.name!r}: SH coefficients beyond the first {turned} "
                            "do not turn with the pose")
    return turned


def _discard_pending(obj, built: dict, trees_before: set[str]) -> None:
    """Remove a half-built binding (everything under the temporary names, the helpers made
    and the node groups that did not exist before)."""
    _remove_modifiers(obj, [_PENDING + name for name in _MODIFIERS])
    if obj.type == 'MESH':
        for vg in [vg for vg in obj.vertex_groups if vg.name.startswith(_PENDING)]:
            obj.vertex_groups.remove(vg)
        attr = obj.data.attributes.get(_PENDING + GROUP_ATTRIBUTE)
        if attr is not None:
            obj.data.attributes.remove(attr)
    for helper in built.values():
        if helper.name in bpy.data.objects:
            _remove_helper(helper)
    removed = True
    while removed:  # a group used only by another new group is free once that one is gone
        new = [t for t in bpy.data.node_groups if t.name not in trees_before and t.users == 0]
        for tree in new:
            bpy.data.node_groups.remove(tree)
        removed = bool(new)


def _swap_in(obj, armature, names, built: dict) -> None:
    """Replace the earlier binding by the complete pending one (renames only: cannot fail on
    valid data)."""
    for prop in (HELPER_PROP, CAGE_PROP):
        old = _linked_object(obj, prop)
        if old is not None and old not in built.values():
            _remove_helper(old)
    _remove_modifiers(obj, _MODIFIERS)
    if obj.type == 'MESH':
        _rename_pending_groups(obj, names)
    for name in _MODIFIERS:
        mod = obj.modifiers.get(_PENDING + name)
        if mod is not None:
            mod.name = name
    # Deform first: a display modifier (scene/display) must see the posed splats.
    ours = [name for name in _MODIFIERS if name in obj.modifiers]
    for index, name in enumerate(ours):
        obj.modifiers.move(obj.modifiers.find(name), index)
    for key, prop, suffix in (("helper", HELPER_PROP, "frames"), ("cage", CAGE_PROP, "cage")):
        helper = built.get(key)
        if helper is None:
            if prop in obj:
                del obj[prop]
            continue
        helper.name = helper.data.name = f"{obj.name} GS {suffix}"
        obj[prop] = helper.name
    obj[ARMATURE_PROP] = armature.name
    obj.data.update_tag()


def _rename_pending_groups(obj, names) -> None:
    """Mesh layout: the pending vertex groups and group attribute take their final names."""
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


def _hidden_child(obj, name: str, co: np.ndarray) -> bpy.types.Object:
    """A hidden mesh object of loose vertices ``co`` [V, 3], parented to ``obj`` with an
    identity transform (so its mesh space is ``obj``'s), in ``obj``'s collections."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(co))
    mesh.attributes["position"].data.foreach_set(
        "vector", np.ascontiguousarray(co, np.float32).ravel())
    mesh.update()
    helper = bpy.data.objects.new(name, mesh)
    try:
        for collection in obj.users_collection:
            collection.objects.link(helper)
        helper.parent = obj
        helper.matrix_parent_inverse = Matrix.Identity(4)
        helper.matrix_basis = Matrix.Identity(4)
        helper.hide_viewport = True
        helper.hide_render = True
        helper.hide_select = True
    except BaseException:
        _remove_helper(helper)
        raise
    return helper


def _make_helper(obj, armature, plan: _Plan) -> bpy.types.Object:
    """The frames helper: per rotation group a centre and three ε-offset points."""
    offsets = np.vstack([np.zeros(3), np.eye(3) * plan.epsilon])  # [4, 3]
    co = (plan.centres[:, None, :] + offsets[None]).reshape(-1, 3)  # [4U, 3]
    helper = _hidden_child(obj, f"{_PENDING}{obj.name} GS frames", co)
    try:
        _write_groups(helper, plan.names, np.repeat(plan.group_bones, 4, axis=0),
                      np.repeat(plan.group_levels, 4, axis=0), steps=plan.rotation_steps)
        _add_armature_modifier(helper, armature)
    except BaseException:
        _remove_helper(helper)
        raise
    return helper


def _make_cage(obj, armature, plan: _Plan) -> bpy.types.Object:
    """Native splats: one vertex per splat at its rest position, with the splat's weights and
    weight-row group, deformed by the armature."""
    cage = _hidden_child(obj, f"{_PENDING}{obj.name} GS cage", plan.positions)
    try:
        attr = cage.data.attributes.new(GROUP_ATTRIBUTE, 'INT', 'POINT')
        attr.data.foreach_set("value", plan.group.astype(np.int32))
        _write_groups(cage, plan.names, plan.bones, plan.levels)
        _add_armature_modifier(cage, armature)
    except BaseException:
        _remove_helper(cage)
        raise
    return cage


def _set_input(modifier, name, value):
    """Set a Geometry Nodes modifier input by its socket name (on any Blender version)."""
    for item in modifier.node_group.interface.items_tree:
        if item.item_type == 'SOCKET' and item.in_out == 'INPUT' and item.name == name:
            set_modifier_input(modifier, item.identifier, value)
            return
    raise GSError(f"node group {modifier.node_group.name!r} has no input {name!r}")


# ---------------------------------------------------------------------------- evaluation
def evaluated_splats(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """(positions [N, 3], rotations [N, 4]) of the posed splat object, in mesh space.

    Modifiers after the rigging ones (a display modifier turning splats into quads, a user's
    modifiers on native splats) are switched off for the read and restored afterwards. Native
    splats give their posed unit ``rotation``; the mesh layout its ``gs_rotation``.
    """
    is_native = splat_object.require_splat_object(obj) == "NATIVE"
    last, names = ((POSE_MODIFIER, (native.POSITION, native.ROTATION)) if is_native else
                   (ROTATION_MODIFIER, (layout.POSITION, layout.ROTATION)))
    after = []
    index = obj.modifiers.find(last)
    if index >= 0:
        after = [m for m in list(obj.modifiers)[index + 1:] if m.show_viewport]
    try:
        for mod in after:
            mod.show_viewport = False
        depsgraph = bpy.context.evaluated_depsgraph_get()
        depsgraph.update()
        data = obj.evaluated_get(depsgraph).data
        count = splat_object.splat_count(obj)
        have = len(data.points) if is_native else len(data.vertices)
        if have != count or names[1] not in data.attributes:
            raise GSError(f"Object {obj.name!r}: its modifiers change the splat count "
                          f"({count:,} → {have:,}); cannot read posed splats")
        pos = np.empty(count * 3, np.float32)
        data.attributes[names[0]].data.foreach_get("vector", pos)
        rot = np.empty(count * 4, np.float32)
        data.attributes[names[1]].data.foreach_get("value", rot)
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
