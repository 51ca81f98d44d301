"""Rotating SH bands in Geometry Nodes: the coefficients of each splat turned by a rotation
field (what posing does to a splat's view-dependent colour).

Blender's renderers evaluate a splat's SH in object space, so a splat turned by its bones
keeps showing its rest colours unless the coefficients turn with it. For a rotation R the new
band-l coefficients are c'_j = Σ_k D_l[j, k] c_k, and D_l comes from the sampled form of
:mod:`blender_gs_addon.sh`:

    D_l[j, k] = Σ_i A_l⁻¹[j, i] · Y_l,k(Rᵀ d_i)      (A_l⁻¹ constant, precomputed in numpy)

with 2l+1 fixed directions d_i per band (:data:`~blender_gs_addon.sh.BAND_SAMPLE_DIRECTIONS`;
A_l's condition number is at most 1.94, so float32 nodes stay within a few 1e-6 of the float64
reference). The groups, each built once per file:

- ``GS SH Band l``: Direction, C1 … → the band's colour Σ_k Y_l,k(Direction) · C_k (the basis
  polynomials the splat display uses too, :mod:`.display.sh_nodes`);
- ``GS SH Rotate Band l``: Rotation, C1 … → the band turned, as f_i = ``GS SH Band l`` at
  Rᵀ d_i and c'_j = Σ_i A_l⁻¹[j, i] f_i;
- ``GS SH Rotation Matrices (SH d)``: Rotation → D_1 … D_d, 83 numbers for SH 3, packed 16 to
  a 4×4 matrix (``GS SH Rotate Band l`` applied to unit coefficients, three columns at a time
  in the three colour channels);
- ``GS SH Turn (SH d)``: those matrices and C1 … → c'_j = Σ_k D_l[j, k] c_k.

Splats that share a rotation (rigging's weight-row groups) get the matrices once per rotation
and sample them (6 matrix samples and 83 multiply-adds per splat for SH 3, about a third of
evaluating the rotation per splat); :func:`rotated_sh` does both steps on one geometry.
"""

from __future__ import annotations

import bpy

from ..blender_gs_addon.sh import BAND_SAMPLE_DIRECTIONS, band_sample_inverse, degree_for_coeffs
from .display.nodes import GeometryNodeBuilder, layout_nodes, versioned_node_group
from .display.sh_nodes import sh_band_basis

__all__ = ["BAND_GROUP", "ROTATE_GROUP", "MATRICES_GROUP", "TURN_GROUP", "band_node_group",
           "rotate_band_node_group", "matrix_count", "sh_rotation_matrices", "sh_turn",
           "rotated_sh", "turn_sh"]

BAND_GROUP = "GS SH Band {band}"  # node group name of band l's colour at a direction
ROTATE_GROUP = "GS SH Rotate Band {band}"  # node group name of band l's rotation
MATRICES_GROUP = "GS SH Rotation Matrices (SH {degree})"
TURN_GROUP = "GS SH Turn (SH {degree})"
_NODE_VERSION = 1


def band_node_group(band: int) -> bpy.types.NodeTree:
    """Node group ``GS SH Band l``: Direction, C1 … C(2l+1) (RGB coefficients) → Colour
    = Σ_k Y_l,k(Direction) · C_k."""
    return versioned_node_group(BAND_GROUP.format(band=band), _NODE_VERSION,
                                lambda tree: _build_band_tree(tree, band))


def _vectors(count: int) -> list:
    """Interface items C1 … C<count> (RGB coefficients)."""
    return [(f"C{k + 1}", 'NodeSocketVector') for k in range(count)]


def _build_band_tree(tree: bpy.types.NodeTree, band: int) -> None:
    g, gin, gout = GeometryNodeBuilder.start(
        tree, [("Direction", 'NodeSocketVector'), *_vectors(2 * band + 1)],
        [("Colour", 'NodeSocketVector')])
    basis = sh_band_basis(g, band, *g.split(gin["Direction"]))
    colour = None
    for k, value in enumerate(basis):
        # A float linked into a vector socket is read as (v, v, v).
        colour = g.vmath("MULTIPLY_ADD", gin[f"C{k + 1}"], value,
                         colour if colour is not None else (0.0, 0.0, 0.0))
    tree.links.new(colour, gout.inputs["Colour"])
    layout_nodes(tree)


def rotate_band_node_group(band: int) -> bpy.types.NodeTree:
    """Node group ``GS SH Rotate Band l``: Rotation, C1 … C(2l+1) → the coefficients turned
    by Rotation (outputs named like the inputs)."""
    return versioned_node_group(ROTATE_GROUP.format(band=band), _NODE_VERSION,
                                lambda tree: _build_rotate_tree(tree, band))


def _build_rotate_tree(tree: bpy.types.NodeTree, band: int) -> None:
    width = 2 * band + 1
    g, gin, gout = GeometryNodeBuilder.start(
        tree, [("Rotation", 'NodeSocketRotation'), *_vectors(width)], _vectors(width))
    undo = g.node("FunctionNodeInvertRotation", [(0, gin["Rotation"])]).outputs[0]  # Rᵀ
    colour_group = band_node_group(band)
    seen = []  # f_i: the band's colour along Rᵀ d_i
    for d in BAND_SAMPLE_DIRECTIONS[band]:
        direction = g.node("FunctionNodeRotateVector", [("Vector", tuple(map(float, d))),
                                                        ("Rotation", undo)]).outputs[0]
        inputs = [("Direction", direction)] + [(f"C{k + 1}", gin[f"C{k + 1}"])
                                               for k in range(width)]
        seen.append(g.group(colour_group, inputs).outputs["Colour"])
    for j, row in enumerate(band_sample_inverse(band)):  # c'_j = Σ_i A⁻¹[j, i] f_i
        total = None
        for weight, f in zip(row, seen):
            w = float(weight)
            if abs(w) < 1e-12:  # band 1's A⁻¹ is a signed permutation
                continue
            total = g.vmath("MULTIPLY_ADD", f, (w, w, w),
                            total if total is not None else (0.0, 0.0, 0.0))
        tree.links.new(total, gout.inputs[j])
    layout_nodes(tree)


def _entry_count(degree: int) -> int:
    return sum((2 * band + 1) ** 2 for band in range(1, degree + 1))  # 9, 34, 83


def _matrices(degree: int) -> list:
    """Interface items D1 … of the packed rotation matrices."""
    return [(f"D{m + 1}", 'NodeSocketMatrix') for m in range(matrix_count(degree))]


def matrix_count(degree: int) -> int:
    """How many 4×4 matrices hold the rotation matrices D_1 … D_degree (1, 3 or 6)."""
    return -(-_entry_count(degree) // 16)


def sh_rotation_matrices(degree: int) -> bpy.types.NodeTree:
    """Node group ``GS SH Rotation Matrices (SH d)``: Rotation → the entries of D_1 … D_d
    (band by band, row by row) packed 16 to a matrix, outputs "D1" … ("D6").

    Each column triple of D_l is band l's rotation applied to unit coefficients: with
    C_k = e_c for k = 3m + c (and 0 otherwise) output j of ``GS SH Rotate Band l`` holds
    D_l[j, 3m : 3m + 3] in its three channels.
    """
    return versioned_node_group(MATRICES_GROUP.format(degree=degree), _NODE_VERSION,
                                lambda tree: _build_matrices_tree(tree, degree))


def _build_matrices_tree(tree: bpy.types.NodeTree, degree: int) -> None:
    g, gin, gout = GeometryNodeBuilder.start(tree, [("Rotation", 'NodeSocketRotation')],
                                             _matrices(degree))
    entries = []
    for band in range(1, degree + 1):
        width = 2 * band + 1
        passes = []  # per pass m: output j = D_l[j, 3m : 3m + 3]
        for start in range(0, width, 3):
            units = [(f"C{k + 1}", tuple(float(k == start + c) for c in range(3)))
                     for k in range(width)]
            node = g.group(rotate_band_node_group(band), [("Rotation", gin["Rotation"])] + units)
            passes.append([g.split(node.outputs[j]) for j in range(width)])
        for j in range(width):
            entries += [value for chunk in passes for value in chunk[j]][:width]
    for m, matrix in enumerate(g.pack_matrices(entries)):
        tree.links.new(matrix, gout.inputs[m])
    layout_nodes(tree)


def sh_turn(degree: int) -> bpy.types.NodeTree:
    """Node group ``GS SH Turn (SH d)``: D1 … (as :func:`sh_rotation_matrices` packs them) and
    C1 … CK (K = (d+1)² − 1 RGB coefficients) → C1 … CK turned: c'_j = Σ_k D_l[j, k] c_k."""
    return versioned_node_group(TURN_GROUP.format(degree=degree), _NODE_VERSION,
                                lambda tree: _build_turn_tree(tree, degree))


def _build_turn_tree(tree: bpy.types.NodeTree, degree: int) -> None:
    count = (degree + 1) ** 2 - 1
    g, gin, gout = GeometryNodeBuilder.start(tree, [*_matrices(degree), *_vectors(count)],
                                             _vectors(count))
    entries = iter(g.unpack_matrices([gin[f"D{m + 1}"] for m in range(matrix_count(degree))]))
    for band in range(1, degree + 1):
        first, width = band * band - 1, 2 * band + 1
        for j in range(width):
            total = (0.0, 0.0, 0.0)
            for k in range(width):
                # A float linked into a vector socket is read as (v, v, v).
                total = g.vmath("MULTIPLY_ADD", gin[f"C{first + k + 1}"], next(entries), total)
            tree.links.new(total, gout.inputs[first + j])
    layout_nodes(tree)


def rotated_sh(g: GeometryNodeBuilder, rotation, coefficients: list) -> list:
    """Fields of the coefficients turned by ``rotation`` (a rotation field, the splat's
    rotation delta posed ⊗ rest⁻¹): the rotation matrices of ``rotation`` applied to them.

    ``coefficients``: K vector fields (RGB), bands 1..degree in 3DGS order, K in 3/8/15.
    Returns K vector fields in the same order. Where many splats share a rotation, compute
    the matrices once per rotation (:func:`sh_rotation_matrices`) and sample them instead.
    """
    degree = degree_for_coeffs(len(coefficients))
    if not degree:
        raise ValueError(f"{len(coefficients)} SH coefficients are not whole bands 1..d")
    matrices = g.group(sh_rotation_matrices(degree), [("Rotation", rotation)])
    return turn_sh(g, list(matrices.outputs)[:matrix_count(degree)], coefficients)


def turn_sh(g: GeometryNodeBuilder, matrices: list, coefficients: list) -> list:
    """The coefficient fields turned by packed rotation matrices (``GS SH Turn``)."""
    degree = degree_for_coeffs(len(coefficients))
    node = g.group(sh_turn(degree), [(f"D{m + 1}", d) for m, d in enumerate(matrices)] + [
        (f"C{k + 1}", c) for k, c in enumerate(coefficients)])
    return [node.outputs[k] for k in range(len(coefficients))]
