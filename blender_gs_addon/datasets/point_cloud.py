"""Sparse point clouds beside a data set: ``points3d.ply`` (positions + RGB), as INRIA 3DGS has.

INRIA 3DGS's NeRF-synthetic loader reads ``points3d.ply`` from the data set folder when it
exists (``fetchPly``: vertex properties ``x y z nx ny nz red green blue``, binary little endian,
float32 / uchar) and initialises its splats from it; the fit backend does the same
(:func:`blender_gs_addon.reconstruction.fit.splats_from_points`). The points are in the data
set's world (the frame of its ``transform_matrix`` cameras). We write exactly INRIA's layout
(normals zero) and read any PLY whose vertex element has scalar ``x y z`` (and optionally
``red green blue``): COLMAP's and pycolmap's ``export_PLY`` files too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GSError
from ..formats.ply_header import read_ply_header

__all__ = ["POINTS_FILE", "read_point_cloud", "write_point_cloud"]

POINTS_FILE = "points3d.ply"

_ROW = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"),
                 ("nz", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_MAX_BYTES = 2 << 30


def write_point_cloud(path, positions, colours) -> Path:
    """Write [N, 3] positions and [N, 3] uint8 colours as INRIA's ``points3d.ply``."""
    path = Path(path)
    xyz = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    rgb = np.asarray(colours).reshape(-1, 3)
    if len(rgb) != len(xyz):
        raise GSError(f"{path}: {len(xyz)} points but {len(rgb)} colours")
    if not np.isfinite(xyz).all():
        raise GSError(f"{path}: point positions must be finite")
    rows = np.zeros(len(xyz), dtype=_ROW)
    for axis, name in enumerate("xyz"):
        rows[name] = xyz[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        rows[name] = np.clip(rgb[:, channel], 0, 255)
    header = "\n".join(["ply", "format binary_little_endian 1.0", f"element vertex {len(rows)}",
                        *(f"property {'float' if _ROW[name].kind == 'f' else 'uchar'} {name}"
                          for name in _ROW.names), "end_header", ""])
    try:
        with open(path, "wb") as fh:
            fh.write(header.encode("ascii"))
            fh.write(rows.tobytes())
    except OSError as err:
        raise GSError(f"{path}: cannot write ({err})") from None
    return path


def read_point_cloud(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a point-cloud PLY → (positions [N, 3] float64, colours [N, 3] uint8).

    Colours default to mid grey when the file has none. Refuses files without scalar x, y, z,
    list properties on the vertex element or any element before it, and truncated data.
    """
    path = Path(path)
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise GSError(f"{path}: file is too large for a sparse point cloud")
        data = path.read_bytes()
    except OSError as err:
        raise GSError(f"{path}: cannot read ({err})") from None
    header = read_ply_header(data, source=str(path))
    vertex = header.element("vertex")
    if vertex is None or not {"x", "y", "z"} <= set(vertex.property_names()):
        raise GSError(f"{path}: no vertex element with x, y, z")
    before = header.elements[: header.elements.index(vertex)]
    if vertex.has_list or any(el.has_list for el in before):
        raise GSError(f"{path}: list properties are not supported in a point cloud")
    if header.format == "ascii":
        rows = _ascii_rows(data[header.header_size:], vertex, before, path)
    else:
        dtype = vertex.dtype(header.byte_order)
        offset = header.header_size + sum(el.count * el.dtype(header.byte_order).itemsize
                                          for el in before)
        if offset + vertex.count * dtype.itemsize > len(data):
            raise GSError(f"{path}: file is cut short ({vertex.count} points announced)")
        rows = np.frombuffer(data, dtype=dtype, count=vertex.count, offset=offset)
    positions = np.stack([rows["x"], rows["y"], rows["z"]], axis=1).astype(np.float64)
    if not np.isfinite(positions).all():
        raise GSError(f"{path}: point positions are not all finite")
    if {"red", "green", "blue"} <= set(vertex.property_names()):
        colours = np.stack([rows["red"], rows["green"], rows["blue"]], axis=1)
        if colours.dtype.kind == "f":  # some writers store 0‥1 floats
            colours = np.round(np.clip(colours, 0.0, 1.0) * 255.0)
        colours = np.clip(colours, 0, 255).astype(np.uint8)
    else:
        colours = np.full((len(positions), 3), 128, dtype=np.uint8)
    return positions, colours


def _ascii_rows(body: bytes, vertex, before, path: Path) -> np.ndarray:
    lines = body.decode("ascii", errors="replace").split("\n")
    skip = sum(el.count for el in before)
    wanted = lines[skip: skip + vertex.count]
    if len(wanted) < vertex.count:
        raise GSError(f"{path}: file is cut short ({vertex.count} points announced)")
    try:
        table = np.array([line.split() for line in wanted], dtype=np.float64)
    except ValueError:
        raise GSError(f"{path}: vertex rows are not all numbers of the declared count") from None
    table = table.reshape(vertex.count, -1)
    if table.shape[1] != len(vertex.properties):
        raise GSError(f"{path}: vertex rows have {table.shape[1]} values, expected "
                      f"{len(vertex.properties)}")
    return {name: table[:, i] for i, name in enumerate(vertex.property_names())}
