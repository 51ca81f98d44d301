"""The real SH basis of bands 1–3 in Geometry Nodes, shared by the splat display (view colour)
and rigging's SH rotation (:mod:`scene.sh_rotation_nodes`)."""

from __future__ import annotations

from ...blender_gs_addon.sh import SH_C1, SH_C2, SH_C3
from .nodes import GeometryNodeBuilder

__all__ = ["sh_band_basis"]


def sh_band_basis(g: GeometryNodeBuilder, band: int, x, y, z) -> list:
    """Band ``band``'s basis functions at the unit direction (x, y, z) (float sockets), in the
    order of the 3DGS coefficients (as :func:`blender_gs_addon.sh.sh_basis`)."""
    if band == 1:
        return [g.mul(-SH_C1, y), g.mul(SH_C1, z), g.mul(-SH_C1, x)]
    xx, yy, zz = g.mul(x, x), g.mul(y, y), g.mul(z, z)
    if band == 2:
        return [g.mul(SH_C2[0], g.mul(x, y)), g.mul(SH_C2[1], g.mul(y, z)),
                g.mul(SH_C2[2], g.sub(g.mul(2.0, zz), g.add(xx, yy))),
                g.mul(SH_C2[3], g.mul(x, z)), g.mul(SH_C2[4], g.sub(xx, yy))]
    four_zz_minus = g.sub(g.mul(4.0, zz), g.add(xx, yy))
    return [
        g.mul(SH_C3[0], g.mul(y, g.sub(g.mul(3.0, xx), yy))),
        g.mul(SH_C3[1], g.mul(g.mul(x, y), z)),
        g.mul(SH_C3[2], g.mul(y, four_zz_minus)),
        g.mul(SH_C3[3], g.mul(z, g.sub(g.mul(2.0, zz), g.mul(3.0, g.add(xx, yy))))),
        g.mul(SH_C3[4], g.mul(x, four_zz_minus)),
        g.mul(SH_C3[5], g.mul(z, g.sub(xx, yy))),
        g.mul(SH_C3[6], g.mul(x, g.sub(xx, g.mul(3.0, yy)))),
    ]
