"""The live-rotation Geometry Nodes group of a bound splat object (see :mod:`.rigging`).

After the splat object's Armature modifier the group

1. reads the deformed helper mesh (Object Info, relative space): four vertices per weight-row
   group, a centre c and c + ε·e_x, e_y, e_z; rebuilds the blended matrix M of each group from
   the three edge vectors / ε and takes its polar rotation with :data:`NEWTON_STEPS` Newton
   steps X ← ½ (X + X⁻ᵀ) (quadratic convergence; singular values of a blend of rotations lie in
   (0, 1], 0.7 for a 90° two-bone joint);
2. samples that rotation for each splat by its ``gs_frame_group`` index and writes
   ``gs_rotation`` = R_group ⊗ q_rest on the evaluated mesh;
3. turns the splat's SH bands (``gs_sh_rest_*``) by R_group: the SH rotation matrices are
   computed once per group (:mod:`.sh_rotation_nodes`) and sampled per splat. Without it the
   display and the exact engine would show a turned splat's rest colours.

:func:`posed_rotation_and_sh` is shared with the native splats' pose group
(:mod:`.native_pose_nodes`), which reads the same frames helper.
"""

from __future__ import annotations

import bpy

from ..blender_gs_addon import mesh_layout as layout
from ..blender_gs_addon.sh import degree_for_coeffs
from .display.nodes import GeometryNodeBuilder, layout_nodes, versioned_node_group
from .sh_rotation_nodes import matrix_count, sh_rotation_matrices, turn_sh

__all__ = ["ROTATION_GROUP", "GROUP_ATTRIBUTE", "NEWTON_STEPS", "rotation_node_group",
           "FRAME_INPUTS", "posed_rotation_and_sh", "group_rotations"]

ROTATION_GROUP = "GS Splat Rotation"  # node group name
GROUP_ATTRIBUTE = "gs_frame_group"  # INT, POINT: the splat's weight-row group
NEWTON_STEPS = 3
# The group inputs group_rotations reads: the frames helper object and its ε.
FRAME_INPUTS = (("Frames", 'NodeSocketObject'), ("Frame Size", 'NodeSocketFloat', 1.0))
_NODE_VERSION = 3  # 3: SH bands turned too (per SH coefficient count)


def rotation_node_group(sh_count: int = 0) -> bpy.types.NodeTree:
    """The live-rotation Geometry Nodes group for splats with ``sh_count`` (0, 3, 8 or 15)
    ``gs_sh_rest_*`` coefficients, which it turns too (made once per file, rebuilt when
    outdated)."""
    name = ROTATION_GROUP if not sh_count else f"{ROTATION_GROUP} (SH {sh_count})"
    return versioned_node_group(name, _NODE_VERSION,
                                lambda tree: _build_rotation_tree(tree, sh_count))


def _build_rotation_tree(tree: bpy.types.NodeTree, sh_count: int) -> None:
    g, gin, gout = GeometryNodeBuilder.start(
        tree, [("Geometry", 'NodeSocketGeometry'), *FRAME_INPUTS],
        [("Geometry", 'NodeSocketGeometry')])
    names = [layout.sh_rest_attribute(k) for k in range(sh_count)]
    rotation, bands = posed_rotation_and_sh(
        g, gin, g.attribute(GROUP_ATTRIBUTE, 'INT'), g.attribute(layout.ROTATION, 'QUATERNION'),
        [g.attribute(n, 'FLOAT_VECTOR') for n in names])
    store = g.store_together(gin["Geometry"], [(layout.ROTATION, 'QUATERNION', rotation)] + [
        (n, 'FLOAT_VECTOR', b) for n, b in zip(names, bands)])
    tree.links.new(store, gout.inputs[0])
    layout_nodes(tree)


def posed_rotation_and_sh(g: GeometryNodeBuilder, gin, group_index, rest_rotation,
                          sh_fields: list):
    """(R ⊗ rest_rotation, ``sh_fields`` turned by R) per splat, R the polar rotation of its
    weight-row group ``group_index``, from the frames helper (group inputs FRAME_INPUTS).

    Per group (thousands of points, not millions) its rotation and the SH rotation matrices of
    that rotation are captured once; each splat samples its group's.
    """
    groups, group_rotation = group_rotations(g, gin["Frames"], gin["Frame Size"])
    degree = degree_for_coeffs(len(sh_fields))
    per_group = [("rotation", 'ROTATION', group_rotation)]
    if degree:
        matrices = g.group(sh_rotation_matrices(degree), [("Rotation", group_rotation)])
        per_group += [(f"D{m + 1}", 'MATRIX', matrices.outputs[m])
                      for m in range(matrix_count(degree))]
    captured = g.capture(groups, per_group)
    groups = captured.outputs["Geometry"]
    delta = g.sample_index(groups, captured.outputs["rotation"], group_index, 'QUATERNION')
    rotation = g.node("FunctionNodeRotateRotation", [("Rotation", rest_rotation),
                                                     ("Rotate By", delta)],
                      rotation_space='GLOBAL').outputs[0]
    if not degree:
        return rotation, []
    matrices = [g.sample_index(groups, captured.outputs[name], group_index, 'FLOAT4X4')
                for name, _kind, _value in per_group[1:]]
    return rotation, turn_sh(g, matrices, sh_fields)


def group_rotations(g: GeometryNodeBuilder, frames_object, frame_size):
    """(geometry with one point per weight-row group, that group's rotation field): the exact
    polar rotation of each group's blended bone matrix, from the deformed helper frames."""
    frames = g.node("GeometryNodeObjectInfo", [("Object", frames_object)],
                    transform_space='RELATIVE').outputs["Geometry"]
    matrix = _group_matrices(g, frames, frame_size)
    for _ in range(NEWTON_STEPS):
        matrix = _newton_step(g, matrix)
    rotation = g.node("FunctionNodeSeparateTransform", [(0, matrix)]).outputs["Rotation"]
    # One point per group carries its rotation; each splat samples its group's.
    groups = g.node("GeometryNodePoints", [("Count", g.div(g.node(
        "GeometryNodeAttributeDomainSize", [("Geometry", frames)],
        component='MESH').outputs["Point Count"], 4.0))]).outputs[0]
    return groups, rotation


def _group_matrices(g: GeometryNodeBuilder, frames, frame_size):
    """Per group (evaluated on the group points): M from the deformed frame's edges / ε."""
    index = g.node("GeometryNodeInputIndex").outputs[0]
    position = g.node("GeometryNodeInputPosition").outputs[0]
    corner = []
    for k in range(4):
        vertex = g.math("MULTIPLY_ADD", index, 4.0, float(k))
        corner.append(g.node("GeometryNodeSampleIndex", [("Geometry", frames),
                                                         ("Value", position),
                                                         ("Index", vertex)],
                             data_type='FLOAT_VECTOR', domain='POINT').outputs[0])
    combine = g.node("FunctionNodeCombineMatrix")
    for k in range(3):
        edge = g.vmath("DIVIDE", g.vmath("SUBTRACT", corner[k + 1], corner[0]), frame_size)
        for row, value in enumerate(g.split(edge)):
            g.feed(combine.inputs[f"Column {k + 1} Row {row + 1}"], value)
    return combine.outputs[0]


def _newton_step(g: GeometryNodeBuilder, matrix):
    """X ← ½ (X + X⁻ᵀ) on the 3×3 part."""
    inverse = g.node("FunctionNodeInvertMatrix", [(0, matrix)]).outputs["Matrix"]
    inv_t = g.node("FunctionNodeTransposeMatrix", [(0, inverse)]).outputs[0]
    sep_a = g.node("FunctionNodeSeparateMatrix", [(0, matrix)]).outputs
    sep_b = g.node("FunctionNodeSeparateMatrix", [(0, inv_t)]).outputs
    nxt = g.node("FunctionNodeCombineMatrix")
    for col in range(1, 4):
        for row in range(1, 4):
            name = f"Column {col} Row {row}"
            g.feed(nxt.inputs[name], g.mul(g.add(sep_a[name], sep_b[name]), 0.5))
    return nxt.outputs[0]
