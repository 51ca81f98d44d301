"""The live-rotation Geometry Nodes group of a bound splat object (see :mod:`.rigging`).

After the splat object's Armature modifier the group

1. reads the deformed helper mesh (Object Info, relative space): four vertices per weight-row
   group, a centre c and c + ε·e_x, e_y, e_z; rebuilds the blended matrix M of each group from
   the three edge vectors / ε and takes its polar rotation with :data:`NEWTON_STEPS` Newton
   steps X ← ½ (X + X⁻ᵀ) (quadratic convergence; singular values of a blend of rotations lie in
   (0, 1], 0.7 for a 90° two-bone joint);
2. samples that rotation for each splat by its ``gs_frame_group`` index and writes
   ``gs_rotation`` = R_group ⊗ q_rest on the evaluated mesh.
"""

from __future__ import annotations

import bpy

from ..blender_gs_addon import mesh_layout as layout
from .display.nodes import GeometryNodeBuilder, layout_nodes, versioned_node_group

__all__ = ["ROTATION_GROUP", "GROUP_ATTRIBUTE", "NEWTON_STEPS", "rotation_node_group",
           "FRAME_INPUTS", "group_rotations"]

ROTATION_GROUP = "GS Splat Rotation"  # node group name
GROUP_ATTRIBUTE = "gs_frame_group"  # INT, POINT: the splat's weight-row group
NEWTON_STEPS = 3
# The group inputs group_rotations reads: the frames helper object and its ε.
FRAME_INPUTS = (("Frames", 'NodeSocketObject'), ("Frame Size", 'NodeSocketFloat', 1.0))
_NODE_VERSION = 2  # 2: built with the shared node builder


def rotation_node_group() -> bpy.types.NodeTree:
    """The live-rotation Geometry Nodes group (made once per file, rebuilt when outdated)."""
    return versioned_node_group(ROTATION_GROUP, _NODE_VERSION, _build_rotation_tree)


def _build_rotation_tree(tree: bpy.types.NodeTree) -> None:
    g, gin, gout = GeometryNodeBuilder.start(
        tree, [("Geometry", 'NodeSocketGeometry'), *FRAME_INPUTS],
        [("Geometry", 'NodeSocketGeometry')])
    groups, rotation = group_rotations(g, gin["Frames"], gin["Frame Size"])
    group_index = g.node("GeometryNodeInputNamedAttribute", [("Name", GROUP_ATTRIBUTE)],
                         data_type='INT').outputs["Attribute"]
    per_splat = g.node("GeometryNodeSampleIndex", [("Geometry", groups), ("Value", rotation),
                                                   ("Index", group_index)],
                       data_type='QUATERNION', domain='POINT').outputs[0]
    rest = g.attribute(layout.ROTATION, 'QUATERNION')
    rotated = g.node("FunctionNodeRotateRotation", [("Rotation", rest), ("Rotate By", per_splat)],
                     rotation_space='GLOBAL').outputs[0]
    store = g.store(gin["Geometry"], layout.ROTATION, rotated, 'QUATERNION')
    tree.links.new(store, gout.inputs[0])
    layout_nodes(tree)


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
