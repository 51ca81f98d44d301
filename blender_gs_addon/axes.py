"""Frames and the mapping of splat files into Blender's world.

Splat files in the usual 3DGS convention (INRIA .ply, .splat, compressed .ply; .spz after the
reader's RUB → RDF conversion) live in the COLMAP/OpenCV world: +X right, +Y down, +Z forward.
Other splat tools show them with −Y up. Blender is Z-up with −Y towards the viewer of the front
view, so such a file is shown upright by a −90° rotation about X:

    Blender (x, y, z) = (x_f, z_f, −y_f)          for up axis "-Y" (the default)
    Blender (x, y, z) = (x_f, −z_f, y_f)          for up axis "+Y" (OpenGL/glTF/LGM, Y-up)
    Blender (x, y, z) = (x_f, y_f, z_f)           for up axis "+Z" (already Z-up)

The importer keeps the file's values in the mesh and puts this rotation on the object (as other
Blender splat add-ons do), so Blender → file → Blender round trips are bit-exact; the exporter
bakes the object's world matrix and undoes the same rotation.

Formats that store another frame convert on read and write, with these constants (each a 180°
turn, so its own inverse; positions map as x_file = M · x_3DGS, rotations and SH turn along):

==================  =================  =========================================================
constant            file frame         used by
==================  =================  =========================================================
``RUB_FROM_RDF``    right, up, back    Niantic .spz (the reference library's storage frame)
``GLTF_FROM_RDF``   left, up, forward  glTF KHR_gaussian_splatting: +Y up, +Z forward, −X right
                                       (glTF's own axes); the 3DGS camera's right/down/forward
                                       become glTF right/up/forward: (x, y, z) → (−x, −y, z),
                                       as splat-transform and Niantic's spz library convert
==================  =================  =========================================================
"""

from __future__ import annotations

import numpy as np

from .errors import GSError

__all__ = ["UP_AXES", "file_to_blender_matrix", "RUB_FROM_RDF", "GLTF_FROM_RDF"]

UP_AXES = {
    "-Y": "3DGS / COLMAP convention (Y down): most .ply, .splat and .spz files",
    "+Y": "Y up (OpenGL, glTF, LGM output)",
    "+Z": "Z up (Blender, no rotation)",
}

_MATRICES = {
    "-Y": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64),
    "+Y": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64),
    "+Z": np.eye(3),
}

# .spz stores right-up-back; 3DGS files are right-down-forward: a 180° turn about X.
RUB_FROM_RDF = np.diag([1.0, -1.0, -1.0])
# glTF stores left-up-forward (+Y up, +Z forward); 3DGS files right-down-forward: 180° about Z.
GLTF_FROM_RDF = np.diag([-1.0, -1.0, 1.0])


def file_to_blender_matrix(up_axis: str) -> np.ndarray:
    """[4, 4] rotation taking a file's frame with the given up axis into Blender's world."""
    try:
        rot = _MATRICES[up_axis]
    except KeyError:
        raise GSError(f"unknown up axis {up_axis!r}; choose one of {', '.join(UP_AXES)}") from None
    out = np.eye(4)
    out[:3, :3] = rot
    return out
