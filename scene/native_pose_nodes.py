"""The Geometry Nodes group that poses a bound native splat object (see :mod:`.rigging`).

A point cloud takes no Armature modifier and no vertex groups, so the skinning runs on a hidden
helper mesh, the *cage*: one loose vertex per splat at its rest position, carrying the vertex
groups, the weight-row group index (``gs_frame_group``) and the Armature modifier. The splat
object's own point cloud stays as it was (unbinding removes the modifier and the helpers, and
the data was never touched); its Geometry Nodes modifier ``GS Pose`` runs this group:

1. each splat takes its cage vertex's deformed position (Sample Index by index);
2. its weight-row group's exact polar rotation R from the frames helper turns its rotation:
   ``rotation`` = R ⊗ q_rest;
3. its SH bands turn by R: Blender's renderers evaluate SH in object space and would otherwise
   show the rest colours on a turned splat. The SH rotation matrices D_l(R) are computed once
   per group (:func:`.sh_rotation_nodes.sh_rotation_matrices`, on the group points, packed
   into 4×4 matrices) and each splat samples its group's and applies them
   (:func:`.sh_rotation_nodes.turn_sh`, 83 multiply-adds for SH 3): about a third of the work
   of evaluating the rotation per splat.

Steps 2 and 3 are :func:`.rotation_nodes.posed_rotation_and_sh`, shared with the mesh layout's
live rotation.

New values are captured on the input geometry before any is stored, so every rotated band
reads the rest coefficients. Opacity (``radiance:base``.w), scale and the exact copies pass
through untouched; the result is still a ``GAUSSIAN_SPLAT`` point cloud, which Blender draws
natively in every view, and which the exact render engine and bake read as the posed splats.
One group per SH coefficient count (a degree-0 object gets no SH attributes it did not have).
"""

from __future__ import annotations

import bpy

from ..blender_gs_addon import native_layout as native
from .display.nodes import GeometryNodeBuilder, layout_nodes, versioned_node_group
from .rotation_nodes import FRAME_INPUTS, GROUP_ATTRIBUTE, posed_rotation_and_sh

__all__ = ["POSE_GROUP", "native_pose_node_group"]

POSE_GROUP = "GS Native Pose (SH {count})"  # node group name per SH coefficient count
_NODE_VERSION = 3  # 3: posed rotation and SH shared with the mesh layout


def native_pose_node_group(sh_count: int) -> bpy.types.NodeTree:
    """The posing group for native splats with ``sh_count`` (0, 3, 8 or 15) rest
    coefficients: inputs Geometry, Cage, Frames, Frame Size."""
    return versioned_node_group(POSE_GROUP.format(count=sh_count), _NODE_VERSION,
                                lambda tree: _build_pose_tree(tree, sh_count))


def _build_pose_tree(tree: bpy.types.NodeTree, sh_count: int) -> None:
    g, gin, gout = GeometryNodeBuilder.start(
        tree, [("Geometry", 'NodeSocketGeometry'), ("Cage", 'NodeSocketObject'),
               *FRAME_INPUTS], [("Geometry", 'NodeSocketGeometry')])
    cage = g.node("GeometryNodeObjectInfo", [("Object", gin["Cage"])],
                  transform_space='RELATIVE').outputs["Geometry"]
    index = g.node("GeometryNodeInputIndex").outputs[0]
    posed = g.sample_index(cage, g.node("GeometryNodeInputPosition").outputs[0], index,
                           'FLOAT_VECTOR')
    group = g.sample_index(cage, g.attribute(GROUP_ATTRIBUTE, 'INT'), index, 'INT')
    names = [native.sh_attribute(k) for k in range(sh_count)]
    rotation, bands = posed_rotation_and_sh(
        g, gin, group, g.attribute(native.ROTATION, 'QUATERNION'),
        [g.attribute(n, 'FLOAT_VECTOR') for n in names])
    geometry = g.store_together(gin["Geometry"], [
        (native.POSITION, 'FLOAT_VECTOR', posed), (native.ROTATION, 'QUATERNION', rotation),
        *[(n, 'FLOAT_VECTOR', b) for n, b in zip(names, bands)]])
    tree.links.new(geometry, gout.inputs[0])
    layout_nodes(tree)
