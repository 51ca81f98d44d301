"""COLMAP sparse models (cameras + images, text and binary) as posed pinhole views.

COLMAP stores for each image the world → camera transform of an OpenCV camera (+X right, +Y
down, looking along +Z): x_cam = R(qvec) · x_world + tvec, qvec = (w, x, y, z). We turn it into
our camera-to-world with OpenGL camera axes::

    c2w = [[Rᵀ, −Rᵀ·t], [0, 1]] · diag(1, −1, −1, 1)

so the translation is the camera centre and −Z (third column, negated) is the viewing direction.
COLMAP's world is arbitrary (whatever the reconstruction settled on: usually Y down, no
meaningful scale or origin). We keep it unchanged; the importer may need an up-axis choice
(see :mod:`..conventions.frames`: COLMAP worlds are commonly "−Y" up) to show the result upright in
Blender.

Accepted camera models: SIMPLE_PINHOLE, PINHOLE, and SIMPLE_RADIAL / RADIAL / OPENCV /
FULL_OPENCV whose distortion coefficients are all zero. Anything else (fisheye models, non-zero
distortion, model ids this reader does not know) is refused with a GSError naming the camera and
the images that use it. Pixel coordinates: COLMAP's (0, 0) is the top-left corner of the image,
the same convention as :mod:`.camera_views`, so cx, cy carry over unchanged.

Binary layout (little endian) — cameras.bin: uint64 count, then per camera int32 camera_id,
int32 model_id, uint64 width, uint64 height, float64 params[n(model)]. images.bin: uint64
count, then per image int32 image_id, float64 qvec[4], float64 tvec[3], int32 camera_id,
NUL-terminated name, uint64 num_points2D, then (float64 x, float64 y, int64 point3D_id) each.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..conventions.frames import OPENCV_FROM_OPENGL
from ..errors import GSError, Report, log_report
from ..quaternions import matrix_to_quat, quat_to_matrix
from .camera_views import (
    OUTSIDE_PATHS_HINT,
    CameraView,
    ViewDataset,
    check_intrinsics,
    outside_problem,
    report_imageless,
)

__all__ = [
    "ColmapCamera",
    "ColmapImage",
    "COLMAP_CAMERA_MODELS",
    "read_colmap_model",
    "write_colmap_model",
    "read_colmap_cameras",
    "read_colmap_images",
    "write_colmap_cameras",
    "write_colmap_images",
    "views_from_colmap",
    "colmap_from_views",
]

# name → (model id, number of params), from COLMAP's src/colmap/sensor/models.h.
COLMAP_CAMERA_MODELS = {
    "SIMPLE_PINHOLE": (0, 3),
    "PINHOLE": (1, 4),
    "SIMPLE_RADIAL": (2, 4),
    "RADIAL": (3, 5),
    "OPENCV": (4, 8),
    "OPENCV_FISHEYE": (5, 8),
    "FULL_OPENCV": (6, 12),
    "FOV": (7, 5),
    "SIMPLE_RADIAL_FISHEYE": (8, 4),
    "RADIAL_FISHEYE": (9, 5),
    "THIN_PRISM_FISHEYE": (10, 12),
    "RAD_TAN_THIN_PRISM_FISHEYE": (11, 16),
}
_MODEL_BY_ID = {mid: (name, n) for name, (mid, n) in COLMAP_CAMERA_MODELS.items()}

# Pinhole-compatible models: (index of fx, index of fy, index of cx, first distortion index).
_PINHOLE_LAYOUT = {
    "SIMPLE_PINHOLE": (0, 0, 1, 3),
    "PINHOLE": (0, 1, 2, 4),
    "SIMPLE_RADIAL": (0, 0, 1, 3),
    "RADIAL": (0, 0, 1, 3),
    "OPENCV": (0, 1, 2, 4),
    "FULL_OPENCV": (0, 1, 2, 4),
}

_CAMERA_HEAD = struct.Struct("<iiQQ")
_IMAGE_HEAD = struct.Struct("<i4d3di")
_U64 = struct.Struct("<Q")
_POINT2D_BYTES = 24
_MAX_NAME_BYTES = 4096


@dataclass(eq=False)
class ColmapCamera:
    camera_id: int
    model: str
    width: int
    height: int
    params: tuple  # floats, count fixed by the model


@dataclass(eq=False)
class ColmapImage:
    image_id: int
    qvec: np.ndarray  # [4] (w, x, y, z), world → camera rotation
    tvec: np.ndarray  # [3] world → camera translation
    camera_id: int
    name: str


# ---------------------------------------------------------------------------------- model level
def read_colmap_model(
    sparse_dir,
    *,
    images_dir=None,
    check_images: bool = True,
    allow_outside_paths: bool = False,
    report: Report = log_report,
) -> ViewDataset:
    """Read ``cameras`` + ``images`` (``.bin`` preferred over ``.txt``) from a sparse model folder.

    ``images_dir`` defaults to the first existing ``images`` folder among ``sparse_dir``, its
    parent and grandparent (``scene/sparse/0`` → ``scene/images``). All views go to the
    ``"train"`` split, ordered by image id; the world is COLMAP's (module docstring). Image
    names must resolve inside ``images_dir`` (no ``..``, absolute path or symlink out) unless
    ``allow_outside_paths``; without ``check_images`` such a view keeps no image (one
    WARNING).
    """
    sparse_dir = Path(sparse_dir)
    if not sparse_dir.is_dir():
        raise GSError(f"{sparse_dir}: no such folder")
    for ext in (".bin", ".txt"):
        cameras_file, images_file = sparse_dir / f"cameras{ext}", sparse_dir / f"images{ext}"
        if cameras_file.is_file() and images_file.is_file():
            break
    else:
        raise GSError(f"{sparse_dir}: no cameras.bin + images.bin or cameras.txt + images.txt")

    if images_dir is None:
        candidates = [
            d / "images" for d in (sparse_dir, sparse_dir.parent, sparse_dir.parent.parent)
        ]
        images_dir = next((d for d in candidates if d.is_dir()), candidates[1])
    images_dir = Path(images_dir)

    images = read_colmap_images(images_file)
    used_by: dict[int, list[str]] = {}
    for im in images:
        used_by.setdefault(im.camera_id, []).append(im.name)
    cameras = read_colmap_cameras(cameras_file, used_by=used_by)
    views = views_from_colmap(
        cameras,
        images,
        images_dir=images_dir,
        check_images=check_images,
        allow_outside_paths=allow_outside_paths,
        source=images_file.name,
    )
    if not views:
        report({"WARNING"}, f"{sparse_dir}: the model has no registered images")
    report_imageless(views, source=sparse_dir, report=report)
    return ViewDataset(
        views=views,
        root=sparse_dir,
        metadata={"world": "colmap", "images_dir": str(images_dir)},
    )


def write_colmap_model(
    dataset: ViewDataset, sparse_dir, *, binary: bool = False, images_dir=None
) -> list[Path]:
    """Write cameras, images and an empty points3D (text or binary) for ``dataset``'s views.

    One PINHOLE camera per distinct set of intrinsics. Image names are the file paths relative
    to ``images_dir`` (default: just the file name). Returns the paths written.
    """
    sparse_dir = Path(sparse_dir)
    try:
        sparse_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GSError(f"{sparse_dir}: cannot create folder ({err})") from None
    cameras, images = colmap_from_views(dataset.views, images_dir=images_dir)
    ext = ".bin" if binary else ".txt"
    paths = [
        sparse_dir / f"cameras{ext}",
        sparse_dir / f"images{ext}",
        sparse_dir / f"points3D{ext}",
    ]
    write_colmap_cameras(paths[0], cameras)
    write_colmap_images(paths[1], images)
    _write_bytes(
        paths[2],
        _U64.pack(0)
        if binary
        else b"# 3D point list with one line of data per point:\n"
        b"#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
        b"# Number of points: 0, mean track length: 0\n",
    )
    return paths


# --------------------------------------------------------------------------------- conversions
def views_from_colmap(
    cameras: dict[int, ColmapCamera],
    images: list[ColmapImage],
    *,
    images_dir,
    check_images: bool = True,
    allow_outside_paths: bool = False,
    source: str = "images",
) -> list[CameraView]:
    """COLMAP cameras + images → views (OpenGL camera axes, COLMAP's world), by image id;
    image names must resolve inside ``images_dir`` unless ``allow_outside_paths``."""
    images_dir = Path(images_dir)
    views = []
    for im in sorted(images, key=lambda i: i.image_id):
        where = f"{source}: image {im.image_id} ({im.name!r})"
        cam = cameras.get(im.camera_id)
        if cam is None:
            raise GSError(f"{where}: uses camera {im.camera_id}, which the cameras file lacks")
        fx, fy, cx, cy = _pinhole_params(cam, where=f"{where}: camera {cam.camera_id}")
        width, height, fx, fy, cx, cy = check_intrinsics(
            cam.width, cam.height, fx, fy, cx, cy, where=f"{where}: camera {cam.camera_id}"
        )
        qvec = np.asarray(im.qvec, dtype=np.float64)
        tvec = np.asarray(im.tvec, dtype=np.float64)
        if not (np.isfinite(qvec).all() and np.isfinite(tvec).all()):
            raise GSError(f"{where}: pose has non-finite values (NaN or infinity)")
        norm = np.linalg.norm(qvec)
        if norm < 1e-12:
            raise GSError(f"{where}: rotation quaternion is zero")
        rot = quat_to_matrix(qvec / norm)  # [3, 3] world → OpenCV camera
        c2w_cv = np.eye(4)
        c2w_cv[:3, :3] = rot.T
        c2w_cv[:3, 3] = -rot.T @ tvec
        path = _image_path(images_dir, im.name, where=where, check_images=check_images,
                           allow_outside=allow_outside_paths)
        views.append(
            CameraView(
                name=im.name, file_path=path, width=width, height=height, fx=fx, fy=fy, cx=cx,
                cy=cy, camera_to_world=c2w_cv @ OPENCV_FROM_OPENGL, split="train",
            )
        )
    return views


def _image_path(images_dir: Path, name: str, *, where: str, check_images: bool,
                allow_outside: bool) -> Path | None:
    """``images_dir / name``, which must lie inside ``images_dir`` (unless ``allow_outside``):
    an error when images are checked, else None (the view keeps no image)."""
    path = images_dir / name
    problem = None
    if Path(name).is_absolute() and not allow_outside:
        problem = (f"{where}: the image name is an absolute path; images must lie inside "
                   f"{images_dir} — {OUTSIDE_PATHS_HINT}")
    elif not allow_outside:
        problem = outside_problem(path, images_dir, where=where)
    if problem is not None:
        if check_images:
            raise GSError(problem)
        return None
    if check_images and not path.is_file():
        raise GSError(f"{where}: image file {path} is missing")
    return path


def _pinhole_params(cam: ColmapCamera, *, where: str) -> tuple[float, float, float, float]:
    layout = _PINHOLE_LAYOUT.get(cam.model)
    if layout is None:
        raise GSError(
            f"{where}: camera model {cam.model!r} is not supported (only "
            f"{', '.join(_PINHOLE_LAYOUT)} without distortion)"
        )
    expected = COLMAP_CAMERA_MODELS[cam.model][1]
    params = cam.params
    if len(params) != expected:
        raise GSError(f"{where}: {cam.model} has {len(params)} parameters, expected {expected}")
    ifx, ify, icx, idist = layout
    distortion = params[idist:]
    if any(d != 0 for d in distortion):
        raise GSError(
            f"{where}: {cam.model} camera has non-zero distortion {list(distortion)}; undistort "
            "the images (colmap image_undistorter) and use the PINHOLE model"
        )
    return params[ifx], params[ify], params[icx], params[icx + 1]


def colmap_from_views(
    views: list[CameraView], *, images_dir=None
) -> tuple[dict[int, ColmapCamera], list[ColmapImage]]:
    """Views → PINHOLE cameras (one per distinct intrinsics) and images (ids from 1)."""
    cameras: dict[int, ColmapCamera] = {}
    ids: dict[tuple, int] = {}
    images = []
    for index, view in enumerate(views):
        key = (view.width, view.height, view.fx, view.fy, view.cx, view.cy)
        if key not in ids:
            ids[key] = len(ids) + 1
            cameras[ids[key]] = ColmapCamera(
                ids[key], "PINHOLE", view.width, view.height, (view.fx, view.fy, view.cx, view.cy)
            )
        w2c = view.world_to_camera_opencv()
        if view.file_path is None:
            name = view.name
        elif images_dir is None:
            name = Path(view.file_path).name
        else:
            name = Path(
                os.path.relpath(Path(view.file_path).absolute(), Path(images_dir).absolute())
            )
            name = name.as_posix()
        images.append(
            ColmapImage(
                image_id=index + 1,
                qvec=matrix_to_quat(w2c[:3, :3]).astype(np.float64),
                tvec=w2c[:3, 3].copy(),
                camera_id=ids[key],
                name=name,
            )
        )
    return cameras, images


# ----------------------------------------------------------------------------------- cameras
def read_colmap_cameras(path, *, used_by: dict | None = None) -> dict[int, ColmapCamera]:
    """cameras.txt / cameras.bin → {camera_id: ColmapCamera}. ``used_by`` (camera id → image
    names) only makes error messages name the images that use a bad camera."""
    path = Path(path)
    if path.suffix == ".bin":
        return _read_cameras_bin(path, used_by or {})
    cameras: dict[int, ColmapCamera] = {}
    for lineno, line in _text_lines(path):
        elems = line.split()
        where = f"{path.name}: line {lineno}"
        if len(elems) < 4:
            raise GSError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]")
        try:
            camera_id, width, height = int(elems[0]), int(elems[2]), int(elems[3])
            params = tuple(float(p) for p in elems[4:])
        except ValueError:
            raise GSError(f"{where}: camera id, size or parameters are not numbers") from None
        if camera_id in cameras:
            raise GSError(f"{where}: camera {camera_id} is defined twice")
        model = elems[1]
        if model in COLMAP_CAMERA_MODELS and len(params) != COLMAP_CAMERA_MODELS[model][1]:
            raise GSError(
                f"{where}: camera {camera_id} {model} has {len(params)} parameters, expected "
                f"{COLMAP_CAMERA_MODELS[model][1]}"
            )
        cameras[camera_id] = ColmapCamera(camera_id, model, width, height, params)
    return cameras


def _read_cameras_bin(path: Path, used_by: dict) -> dict[int, ColmapCamera]:
    data = _read_bytes(path)
    count, offset = _unpack(_U64, data, 0, path)
    if count * _CAMERA_HEAD.size > len(data) - offset:
        raise GSError(f"{path.name}: header says {count} cameras but the file is too short")
    cameras: dict[int, ColmapCamera] = {}
    for _ in range(count):
        (camera_id, model_id, width, height), offset = _unpack(_CAMERA_HEAD, data, offset, path)
        if model_id not in _MODEL_BY_ID:
            users = used_by.get(camera_id, [])
            named = f" (used by {', '.join(repr(u) for u in users[:5])})" if users else ""
            raise GSError(
                f"{path.name}: camera {camera_id}{named} has unknown camera model id {model_id}"
            )
        model, n = _MODEL_BY_ID[model_id]
        params, offset = _unpack(struct.Struct(f"<{n}d"), data, offset, path)
        if camera_id in cameras:
            raise GSError(f"{path.name}: camera {camera_id} is defined twice")
        cameras[camera_id] = ColmapCamera(camera_id, model, width, height, tuple(params))
    return cameras


def write_colmap_cameras(path, cameras) -> None:
    """Write {id: ColmapCamera} (or a list) as cameras.txt or cameras.bin (by suffix)."""
    path = Path(path)
    cams = list(cameras.values()) if isinstance(cameras, dict) else list(cameras)
    if path.suffix == ".bin":
        chunks = [_U64.pack(len(cams))]
        for cam in cams:
            if cam.model not in COLMAP_CAMERA_MODELS:
                raise GSError(f"{path.name}: camera model {cam.model!r} has no COLMAP id")
            model_id, n = COLMAP_CAMERA_MODELS[cam.model]
            if len(cam.params) != n:
                raise GSError(f"{path.name}: camera {cam.camera_id} needs {n} parameters")
            chunks.append(_CAMERA_HEAD.pack(cam.camera_id, model_id, cam.width, cam.height))
            chunks.append(struct.pack(f"<{n}d", *cam.params))
        _write_bytes(path, b"".join(chunks))
        return
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(cams)}",
    ]
    for cam in cams:
        params = " ".join(repr(float(p)) for p in cam.params)
        lines.append(f"{cam.camera_id} {cam.model} {cam.width} {cam.height} {params}".rstrip())
    _write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


# ------------------------------------------------------------------------------------ images
def read_colmap_images(path) -> list[ColmapImage]:
    """images.txt / images.bin → list of ColmapImage (2D points are skipped)."""
    path = Path(path)
    if path.suffix == ".bin":
        return _read_images_bin(path)
    images = []
    seen = set()
    lines = _text_lines(path, keep_blank=True)
    i = 0
    while i < len(lines):
        lineno, line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        elems = line.split()
        where = f"{path.name}: line {lineno}"
        if len(elems) < 10:
            raise GSError(f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        try:
            image_id, camera_id = int(elems[0]), int(elems[8])
            pose = np.array([float(e) for e in elems[1:8]], dtype=np.float64)
        except ValueError:
            raise GSError(f"{where}: image id, pose or camera id are not numbers") from None
        name = " ".join(elems[9:])
        if image_id in seen:
            raise GSError(f"{where}: image {image_id} is listed twice")
        seen.add(image_id)
        images.append(ColmapImage(image_id, pose[:4], pose[4:], camera_id, name))
        i += 2  # the next line holds this image's 2D points (possibly empty)
    return images


def _read_images_bin(path: Path) -> list[ColmapImage]:
    data = _read_bytes(path)
    count, offset = _unpack(_U64, data, 0, path)
    min_record = _IMAGE_HEAD.size + 1 + _U64.size
    if count * min_record > len(data) - offset:
        raise GSError(f"{path.name}: header says {count} images but the file is too short")
    images = []
    seen = set()
    for _ in range(count):
        head, offset = _unpack(_IMAGE_HEAD, data, offset, path)
        image_id, camera_id = head[0], head[8]
        end = data.find(b"\x00", offset, offset + _MAX_NAME_BYTES)
        if end < 0:
            raise GSError(f"{path.name}: image {image_id} has no terminated name (file cut short?)")
        try:
            name = data[offset:end].decode("utf-8")
        except UnicodeDecodeError:
            raise GSError(f"{path.name}: image {image_id} has a name that is not UTF-8") from None
        offset = end + 1
        num_points, offset = _unpack(_U64, data, offset, path)
        if num_points * _POINT2D_BYTES > len(data) - offset:
            raise GSError(
                f"{path.name}: image {image_id} ({name!r}) claims {num_points} 2D points but the "
                "file is too short"
            )
        offset += num_points * _POINT2D_BYTES
        if image_id in seen:
            raise GSError(f"{path.name}: image {image_id} is listed twice")
        seen.add(image_id)
        images.append(
            ColmapImage(image_id, np.array(head[1:5]), np.array(head[5:8]), camera_id, name)
        )
    return images


def write_colmap_images(path, images: list[ColmapImage]) -> None:
    """Write images (without 2D points) as images.txt or images.bin (by suffix)."""
    path = Path(path)
    if path.suffix == ".bin":
        chunks = [_U64.pack(len(images))]
        for im in images:
            name = im.name.encode("utf-8")
            if b"\x00" in name:
                raise GSError(f"{path.name}: image {im.image_id} name contains a NUL byte")
            chunks.append(
                _IMAGE_HEAD.pack(
                    im.image_id, *map(float, im.qvec), *map(float, im.tvec), im.camera_id
                )
            )
            chunks.append(name + b"\x00" + _U64.pack(0))
        _write_bytes(path, b"".join(chunks))
        return
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(images)}, mean observations per image: 0",
    ]
    for im in images:
        pose = " ".join(repr(float(v)) for v in (*im.qvec, *im.tvec))
        lines.append(f"{im.image_id} {pose} {im.camera_id} {im.name}")
        lines.append("")
    _write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


# ------------------------------------------------------------------------------------ helpers
def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise GSError(f"{path}: cannot read ({err})") from None


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as err:
        raise GSError(f"{path}: cannot write ({err})") from None


def _text_lines(path: Path, *, keep_blank: bool = False) -> list[tuple[int, str]]:
    """(1-based line number, line) pairs without comments (and without blank lines unless kept)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise GSError(f"{path}: cannot read ({err})") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if keep_blank:
            out.append((lineno, line))
        elif line.strip() and not line.lstrip().startswith("#"):
            out.append((lineno, line))
    return out


def _unpack(fmt: struct.Struct, data: bytes, offset: int, path: Path):
    if offset + fmt.size > len(data):
        raise GSError(f"{path.name}: file is cut short at byte {offset}")
    values = fmt.unpack_from(data, offset)
    return (values[0] if len(values) == 1 else values), offset + fmt.size
