"""Rendering of Gaussian splats: camera conventions and the differentiable rasterizer.

``from blender_gs_addon.render.rasterize import rasterize`` (torch) — the function is not
re-exported here because the submodule of the same name would shadow it, and because this
package must stay importable without torch for the numpy camera helpers of :mod:`.cameras`.
:mod:`.rasterize_reference` is the slow dense renderer the tests compare against.
"""

from .cameras import (
    intrinsics,
    intrinsics_from_fov,
    opengl_c2w_to_viewmat,
    viewmat_to_opengl_c2w,
)

__all__ = [
    "intrinsics",
    "intrinsics_from_fov",
    "opengl_c2w_to_viewmat",
    "viewmat_to_opengl_c2w",
]
