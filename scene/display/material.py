"""The splat material: emission mixed with transparency by the Gaussian's alpha.

The display tree (:mod:`.tree`) gives each quad corner ``gsd_uv`` (offset in standard
deviations), ``gsd_color`` and ``gsd_opacity``; the material computes the rasterizer's
``alpha = min(0.999, opacity · exp(−½ |uv|²))``, cut below 1/255. EEVEE (blended render method,
faces drawn in the tree's back-to-front order) and Cycles (camera rays pass transparent surfaces)
both composite "over". The splat's colour (SH + 0.5: display-referred sRGB) is converted to
scene-linear with the sRGB curve exactly as Blender's native splats convert theirs
(:mod:`blender_gs_addon.conventions.colour`), so "Standard" shows the trained colours.
"""

from __future__ import annotations

import bpy

from ...blender_gs_addon.conventions.colour import SRGB_THRESHOLD
from .nodes import NodeBuilder, layout_nodes

__all__ = ["MATERIAL_NAME", "MATERIAL_VERSION", "VERSION_PROP", "UV", "COLOR", "OPACITY",
           "ALPHA_THRESHOLD", "ALPHA_MAX", "display_material"]

MATERIAL_NAME = "GS Splat"
MATERIAL_VERSION = 3  # bump when the material changes: older ones are rebuilt (3: sRGB → linear)
VERSION_PROP = "gs_display_version"

# Display attribute names: "gsd_" does not match the "gs_*" pattern the tree removes.
UV = "gsd_uv"
COLOR = "gsd_color"
OPACITY = "gsd_opacity"

ALPHA_THRESHOLD = 1.0 / 255.0
ALPHA_MAX = 0.999


def _srgb_to_linear(s: NodeBuilder, colour):
    """Per component, as Cycles' ``color_srgb_to_linear``: max(c, 0) / 12.92 below the
    threshold, ((c + 0.055) / 1.055)^2.4 from it on (vector maths: no per-channel nodes)."""
    c = s.vmath("MAXIMUM", colour, (0.0, 0.0, 0.0))
    low = s.vscale(c, 1.0 / 12.92)
    high = s.vmath("POWER", s.vscale(s.vmath("ADD", c, (0.055,) * 3), 1.0 / 1.055), (2.4,) * 3)
    # 1 where c > threshold, else 0 (at the threshold both branches agree to 1e-7).
    above = s.vmath("MAXIMUM", s.vmath("SIGN", s.vmath("SUBTRACT", c, (SRGB_THRESHOLD,) * 3)),
                    (0.0, 0.0, 0.0))
    return s.vmath("ADD", low, s.vmath("MULTIPLY", above, s.vmath("SUBTRACT", high, low)))


def _build_material(mat: bpy.types.Material) -> None:
    if mat.node_tree is None:  # Blender < 5 makes node trees only on request
        mat.use_nodes = True
    tree = mat.node_tree
    tree.nodes.clear()
    s = NodeBuilder(tree)

    def attr(name: str, out: str):
        return s.node("ShaderNodeAttribute", attribute_name=name,
                      attribute_type='GEOMETRY').outputs[out]

    uv = attr(UV, "Vector")
    falloff = s.math("EXPONENT", s.mul(-0.5, s.vmath("DOT_PRODUCT", uv, uv, out=1)))
    alpha = s.math("MINIMUM", s.mul(attr(OPACITY, "Fac"), falloff), ALPHA_MAX)
    alpha = s.mul(alpha, s.math("GREATER_THAN", alpha, ALPHA_THRESHOLD * (1.0 - 1e-6)))
    emission = s.node("ShaderNodeEmission", [("Color", _srgb_to_linear(s, attr(COLOR, "Color"))),
                                             ("Strength", 1.0)])
    clear = s.node("ShaderNodeBsdfTransparent", [("Color", (1.0, 1.0, 1.0, 1.0))])
    mix = s.node("ShaderNodeMixShader", [(0, alpha)])
    tree.links.new(clear.outputs[0], mix.inputs[1])
    tree.links.new(emission.outputs[0], mix.inputs[2])
    out = s.node("ShaderNodeOutputMaterial")
    tree.links.new(mix.outputs[0], out.inputs["Surface"])
    layout_nodes(tree)
    # EEVEE: alpha blending in draw order (the node tree sorts back to front); both sides.
    mat.surface_render_method = 'BLENDED'
    mat.use_transparency_overlap = True
    mat.use_backface_culling = False
    mat.use_transparent_shadow = True
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)


def display_material() -> bpy.types.Material:
    """The shared splat material (made on first use)."""
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is not None and mat.get(VERSION_PROP) == MATERIAL_VERSION:
        return mat
    if mat is None:
        mat = bpy.data.materials.new(MATERIAL_NAME)
    _build_material(mat)
    mat[VERSION_PROP] = MATERIAL_VERSION
    return mat
