"""Rotating SH bands in Geometry Nodes: the coefficients of each splat turned by a per-splat
rotation field (what posing does to a splat's view-dependent colour).

Blender's renderers evaluate a splat's SH in object space, so a splat turned by its bones
keeps showing its rest colours unless the coefficients turn with it. For a rotation R the new
band-l coefficients are (:mod:`blender_gs_addon.sh`, sampled form)

    f_i = Σ_k Y_l,k(Rᵀ d_i) · c_k          (the band's colour seen along Rᵀ d_i)
    c'_j = Σ_i A_l⁻¹[j, i] · f_i           (A_l⁻¹ constant, precomputed in numpy)

with 2l+1 fixed directions d_i per band (:data:`~blender_gs_addon.sh.BAND_SAMPLE_DIRECTIONS`;
A_l's condition number is at most 1.94, so float32 nodes stay within ~1e-6 of the float64
reference). Each f_i is one instance of the band's node group ``GS SH Band l`` (the basis
polynomials of :func:`~blender_gs_addon.sh.sh_basis` and a weighted sum of the coefficients),
and each band's rotation is one group, ``GS SH Rotate Band l`` (2l+1 rotated directions, 2l+1
band groups and 2l+1 constant-weighted sums), so a tree that turns SH stays readable: one node
per band.
"""

from __future__ import annotations

import bpy

from ..blender_gs_addon.sh import (
    BAND_SAMPLE_DIRECTIONS,
    SH_C1,
    SH_C2,
    SH_C3,
    band_sample_inverse,
    degree_for_coeffs,
)
from .display.nodes import GeometryNodeBuilder, layout_nodes, versioned_node_group

__all__ = ["BAND_GROUP", "ROTATE_GROUP", "band_node_group", "rotate_band_node_group",
           "rotated_sh"]

BAND_GROUP = "GS SH Band {band}"  # node group name of band l's colour at a direction
ROTATE_GROUP = "GS SH Rotate Band {band}"  # node group name of band l's rotation
_NODE_VERSION = 1


def band_node_group(band: int) -> bpy.types.NodeTree:
    """Node group ``GS SH Band l``: Direction, C1 … C(2l+1) (RGB coefficients) → Colour
    = Σ_k Y_l,k(Direction) · C_k."""
    return versioned_node_group(BAND_GROUP.format(band=band), _NODE_VERSION,
                                lambda tree: _build_band_tree(tree, band))


def _build_band_tree(tree: bpy.types.NodeTree, band: int) -> None:
    iface = tree.interface
    iface.new_socket("Direction", in_out='INPUT', socket_type='NodeSocketVector')
    for k in range(2 * band + 1):
        iface.new_socket(f"C{k + 1}", in_out='INPUT', socket_type='NodeSocketVector')
    iface.new_socket("Colour", in_out='OUTPUT', socket_type='NodeSocketVector')
    g = GeometryNodeBuilder(tree)
    gin = g.node("NodeGroupInput").outputs
    gout = g.node("NodeGroupOutput")
    basis = _band_basis(g, band, g.split(gin["Direction"]))
    colour = None
    for k, value in enumerate(basis):
        # A float linked into a vector socket is read as (v, v, v).
        colour = g.vmath("MULTIPLY_ADD", gin[f"C{k + 1}"], value,
                         colour if colour is not None else (0.0, 0.0, 0.0))
    tree.links.new(colour, gout.inputs["Colour"])
    layout_nodes(tree)


def _band_basis(g: GeometryNodeBuilder, band: int, xyz) -> list:
    """The band's real SH basis values at (x, y, z), as :func:`sh_basis` writes them."""
    x, y, z = xyz
    if band == 1:
        return [g.mul(y, -SH_C1), g.mul(z, SH_C1), g.mul(x, -SH_C1)]
    xx, yy, zz = g.mul(x, x), g.mul(y, y), g.mul(z, z)
    xx_minus_yy = g.sub(xx, yy)
    if band == 2:
        two_zz = g.sub(g.sub(g.mul(zz, 2.0), xx), yy)  # 2zz − xx − yy
        return [g.mul(g.mul(x, y), SH_C2[0]), g.mul(g.mul(y, z), SH_C2[1]),
                g.mul(two_zz, SH_C2[2]), g.mul(g.mul(x, z), SH_C2[3]),
                g.mul(xx_minus_yy, SH_C2[4])]
    four_zz = g.sub(g.sub(g.mul(zz, 4.0), xx), yy)  # 4zz − xx − yy
    return [
        g.mul(g.mul(y, g.math("MULTIPLY_ADD", xx, 3.0, g.mul(yy, -1.0))), SH_C3[0]),
        g.mul(g.mul(g.mul(x, y), z), SH_C3[1]),
        g.mul(g.mul(y, four_zz), SH_C3[2]),
        g.mul(g.mul(z, g.math("MULTIPLY_ADD", g.add(xx, yy), -3.0, g.mul(zz, 2.0))), SH_C3[3]),
        g.mul(g.mul(x, four_zz), SH_C3[4]),
        g.mul(g.mul(z, xx_minus_yy), SH_C3[5]),
        g.mul(g.mul(x, g.math("MULTIPLY_ADD", yy, -3.0, xx)), SH_C3[6]),
    ]


def rotate_band_node_group(band: int) -> bpy.types.NodeTree:
    """Node group ``GS SH Rotate Band l``: Rotation, C1 … C(2l+1) → the coefficients turned
    by Rotation (outputs named like the inputs)."""
    return versioned_node_group(ROTATE_GROUP.format(band=band), _NODE_VERSION,
                                lambda tree: _build_rotate_tree(tree, band))


def _build_rotate_tree(tree: bpy.types.NodeTree, band: int) -> None:
    width = 2 * band + 1
    iface = tree.interface
    iface.new_socket("Rotation", in_out='INPUT', socket_type='NodeSocketRotation')
    for k in range(width):
        iface.new_socket(f"C{k + 1}", in_out='INPUT', socket_type='NodeSocketVector')
    for k in range(width):
        iface.new_socket(f"C{k + 1}", in_out='OUTPUT', socket_type='NodeSocketVector')
    g = GeometryNodeBuilder(tree)
    gin = g.node("NodeGroupInput").outputs
    gout = g.node("NodeGroupOutput")
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


def rotated_sh(g: GeometryNodeBuilder, rotation, coefficients: list) -> list:
    """Fields of the coefficients turned by ``rotation`` (a rotation field, the splat's
    rotation delta posed ⊗ rest⁻¹): one ``GS SH Rotate Band l`` node per band.

    ``coefficients``: K vector fields (RGB), bands 1..degree in 3DGS order, K in 3/8/15.
    Returns K vector fields in the same order.
    """
    degree = degree_for_coeffs(len(coefficients))
    if degree is None:
        raise ValueError(f"{len(coefficients)} SH coefficients are not whole bands 1..d")
    out = []
    for band in range(1, degree + 1):
        first = band * band - 1  # rest index of the band's first coefficient
        coeffs = coefficients[first:first + 2 * band + 1]
        node = g.group(rotate_band_node_group(band), [("Rotation", rotation)] + [
            (f"C{k + 1}", c) for k, c in enumerate(coeffs)])
        out += [node.outputs[k] for k in range(len(coeffs))]
    return out
