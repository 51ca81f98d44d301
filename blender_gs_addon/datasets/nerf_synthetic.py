"""transforms.json data sets: NeRF-synthetic (``transforms_{train,val,test}.json``) and nerfstudio.

The details: docs/architecture.md, "Data sets: NeRF-synthetic transforms.json".
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import GSError, Report, log_report
from .camera_views import (
    OUTSIDE_PATHS_HINT,
    CameraView,
    ViewDataset,
    check_camera_pose,
    check_intrinsics,
    outside_problem,
    report_imageless,
)

__all__ = ["read_transforms", "write_transforms", "SPLITS"]

SPLITS = ("train", "val", "test")

_PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".bmp", ".webp"}
_MAX_JSON_BYTES = 512 * 1024 * 1024


# ---------------------------------------------------------------------------------------- read
def read_transforms(path, *, check_images: bool = True, allow_outside_paths: bool = False,
                    report: Report = log_report) -> ViewDataset:
    """Read a transforms.json data set.

    ``path`` is a folder (reads ``transforms_train/val/test.json`` that exist, else
    ``transforms.json``) or one json file (split from its name: ``transforms_test.json`` →
    ``"test"``, anything else → ``"train"``). With ``check_images`` every frame's image must
    exist. Every image must lie inside the json's folder — no ``..`` escape, no absolute path,
    no symlink out (:func:`.camera_views.outside_problem`) — unless ``allow_outside_paths``;
    without ``check_images`` (cameras only) such a view is kept without its image (file_path
    None, one WARNING). Raises GSError naming the file and frame at fault.
    """
    path = Path(path)
    files, root = _transforms_files(path)
    views: list[CameraView] = []
    found = {"normalisation": None, "background": None, "metadata": {}}
    for file in files:
        meta = _load_json(file)
        views.extend(_read_frames(file, meta, _split_from_name(file), check_images=check_images,
                                  allow_outside=allow_outside_paths))
        _read_data_set_fields(file, meta, found)
    if not views:
        report({"WARNING"}, f"{path}: the data set has no frames")
    report_imageless(views, source=path, report=report)
    found["metadata"]["source_files"] = [str(f) for f in files]
    normalisation = found["normalisation"]
    return ViewDataset(
        views=views,
        normalisation=np.eye(4) if normalisation is None else normalisation,
        background=found["background"],
        root=root,
        metadata=found["metadata"],
    )


def _transforms_files(path: Path) -> tuple[list[Path], Path]:
    """The json files of a data set folder or file, and the folder image paths are under."""
    if path.is_file():
        return [path], path.parent
    if not path.is_dir():
        raise GSError(f"{path}: no such file or folder")
    files = [f for f in (path / f"transforms_{s}.json" for s in SPLITS) if f.is_file()]
    if not files and (path / "transforms.json").is_file():
        files = [path / "transforms.json"]
    if not files:
        raise GSError(f"{path}: no transforms_train.json, transforms_test.json or transforms.json")
    return files, path


def _read_data_set_fields(file: Path, meta: dict, found: dict) -> None:
    """The data-set-wide fields of one json file into ``found`` (normalisation, background,
    metadata), checking that the splits agree on the normalisation."""
    if "normalisation_transform" in meta:
        n = _matrix(meta["normalisation_transform"], where=f"{file}: normalisation_transform")
        if found["normalisation"] is not None and not np.array_equal(n, found["normalisation"]):
            raise GSError(f"{file}: normalisation_transform differs from the other splits'")
        found["normalisation"] = n
    if meta.get("background_color") is not None:
        bg = _matrix(meta["background_color"], where=f"{file}: background_color")
        if bg.shape != (3,):
            raise GSError(f"{file}: background_color must be three numbers")
        found["background"] = tuple(bg.tolist())
    if "applied_transform" in meta:
        a = _matrix(meta["applied_transform"], where=f"{file}: applied_transform")
        if a.shape == (3, 4):
            a = np.vstack([a, [0.0, 0.0, 0.0, 1.0]])
        if a.shape != (4, 4):
            raise GSError(f"{file}: applied_transform must be 3×4 or 4×4")
        found["metadata"]["applied_transform"] = a
    for key in ("applied_scale", "ply_file_path", "aabb_scale"):
        if key in meta:
            found["metadata"][key] = meta[key]


def _load_json(file: Path) -> dict:
    try:
        if file.stat().st_size > _MAX_JSON_BYTES:
            raise GSError(f"{file}: file is too large for a transforms.json")
        with open(file, encoding="utf-8") as fh:
            meta = json.load(fh)
    except GSError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise GSError(f"{file}: cannot read JSON ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise GSError(f"{file}: not a transforms.json (no 'frames' list)")
    return meta


def _split_from_name(file: Path) -> str:
    stem = file.stem
    for split in SPLITS:
        if stem == f"transforms_{split}":
            return split
    return "train"


def _matrix(value, *, where: str) -> np.ndarray:
    try:
        m = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise GSError(f"{where}: not an array of numbers") from None
    if not np.isfinite(m).all():
        raise GSError(f"{where}: has non-finite values")
    return m


def _read_frames(file: Path, meta: dict, split: str, *, check_images: bool,
                 allow_outside: bool) -> list[CameraView]:
    views = []
    for index, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise GSError(f"{file}: frame {index} has no 'file_path' string")
        file_path = frame["file_path"]
        where = f"{file.name}: frame {index} ({file_path!r})"
        if "transform_matrix" not in frame:
            raise GSError(f"{where}: no 'transform_matrix'")
        c2w = check_camera_pose(frame["transform_matrix"], where=where)

        def value(key, frame=frame):
            return frame[key] if key in frame else meta.get(key)

        model = value("camera_model")
        if model is None:
            model = "OPENCV"  # nerfstudio's default; NeRF-synthetic files have none
        if model not in _PINHOLE_MODELS:
            raise GSError(
                f"{where}: camera model {model!r} is not supported "
                f"(only pinhole models: {', '.join(_PINHOLE_MODELS)} without distortion)"
            )
        for key in _DISTORTION_KEYS:
            k = value(key)
            if k is not None and k != 0:
                raise GSError(
                    f"{where}: distortion {key}={k} is not supported (undistort the images and "
                    "use a PINHOLE camera)"
                )

        image, width, height = _frame_image(file.parent, file_path, value, where=where,
                                            check_images=check_images,
                                            allow_outside=allow_outside)
        try:
            width, height = float(width), float(height)
        except (TypeError, ValueError):
            raise GSError(f"{where}: image size is not a number") from None
        fx, fy, cx, cy = _focal_and_centre(value, width, height, where=where)
        width, height, fx, fy, cx, cy = check_intrinsics(width, height, fx, fy, cx, cy, where=where)
        name = frame.get("name")
        if not isinstance(name, str) or not name:
            name = _name_from_path(file_path)
        views.append(
            CameraView(
                name=name, file_path=image, width=width, height=height, fx=fx, fy=fy, cx=cx,
                cy=cy, camera_to_world=c2w, split=split,
            )
        )
    return views


def _focal_and_centre(value, width: float, height: float, *, where: str):
    try:
        if value("fl_x") is not None:
            fx = float(value("fl_x"))
        elif value("camera_angle_x") is not None:
            fx = 0.5 * width / math.tan(0.5 * float(value("camera_angle_x")))
        else:
            raise GSError(f"{where}: no focal length (neither 'fl_x' nor 'camera_angle_x')")
        if value("fl_y") is not None:
            fy = float(value("fl_y"))
        elif value("camera_angle_y") is not None:
            fy = 0.5 * height / math.tan(0.5 * float(value("camera_angle_y")))
        else:
            fy = fx  # square pixels, as INRIA 3DGS assumes
        cx = float(value("cx")) if value("cx") is not None else 0.5 * width
        cy = float(value("cy")) if value("cy") is not None else 0.5 * height
    except (TypeError, ValueError, OverflowError):
        raise GSError(f"{where}: intrinsics are not numbers") from None
    return fx, fy, cx, cy


def _frame_image(base: Path, file_path: str, value, *, where: str, check_images: bool,
                 allow_outside: bool) -> tuple[Path | None, object, object]:
    """(image, width, height) of a frame. An image outside the data set folder is an error
    when images are checked; otherwise the view keeps its camera without it (image None)."""
    image, problem = _resolve_image(base, file_path, where=where, allow_outside=allow_outside)
    if problem is not None and check_images:
        raise GSError(problem)
    if problem is None and check_images and not image.is_file():
        raise GSError(f"{where}: image {image} is missing")
    width, height = value("w"), value("h")
    if width is None or height is None:
        if problem is not None:
            raise GSError(f"{problem} (and the frame has no 'w'/'h' for its size)")
        width, height = _image_size(image, where=where)
    return (image if problem is None else None), width, height


def _resolve_image(base: Path, file_path: str, *, where: str,
                   allow_outside: bool) -> tuple[Path, str | None]:
    """The image a frame's ``file_path`` names (as given, or with ``.png`` appended), and why
    it may not be read — it lies outside ``base`` — or None (always None with
    ``allow_outside``)."""
    p = Path(file_path)
    if p.is_absolute() and not allow_outside:
        return p, (f"{where}: the image path is absolute; images must lie inside the data set "
                   f"folder {base} — {OUTSIDE_PATHS_HINT}")
    if not p.is_absolute():
        p = base / p
    with_png = p.with_name(p.name + ".png")
    if p.suffix.lower() in _IMAGE_SUFFIXES:
        candidates = [p, with_png]
    else:
        candidates = [with_png, p]
    image = next((c for c in candidates if c.is_file()), candidates[0])
    return image, None if allow_outside else outside_problem(image, base, where=where)


def _image_size(image: Path, *, where: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(image) as im:
            return im.size
    except FileNotFoundError:
        raise GSError(
            f"{where}: image {image} is missing and the file has no 'w'/'h' for its size"
        ) from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise GSError(f"{where}: cannot read image {image} ({err})") from None


def _name_from_path(file_path: str) -> str:
    p = Path(file_path.replace("\\", "/"))
    if p.suffix.lower() in _IMAGE_SUFFIXES:
        p = p.with_suffix("")
    parts = [part for part in p.parts if part not in (".", "")]
    return "/".join(parts) if parts else file_path


# --------------------------------------------------------------------------------------- write
def write_transforms(dataset: ViewDataset, folder, *, report: Report = log_report) -> list[Path]:
    """Write ``transforms_train.json`` and ``transforms_test.json`` (and ``_val`` if used).

    Images are not written here (the capture renders them); each view's ``file_path`` is stored
    relative to ``folder``. Returns the json paths written.
    """
    folder = Path(folder)
    if not dataset.views:
        raise GSError(f"{folder}: the data set has no views to write")
    unknown = [s for s in dataset.splits if s not in SPLITS]
    if unknown:
        raise GSError(f"data set has split(s) {unknown}; transforms files hold only {SPLITS}")
    for view in dataset.views:
        if view.file_path is None:
            raise GSError(f"view {view.name!r} has no image file to reference")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GSError(f"{folder}: cannot create folder ({err})") from None

    written = []
    first = dataset.views[0]
    for split in SPLITS:
        views = dataset.split_views(split)
        if not views and split == "val":
            continue
        # an empty split still needs camera_angle_x for INRIA 3DGS: take the first view's
        quiet = lambda levels, message: None  # noqa: E731 — nothing to warn about without frames
        meta = _split_meta(views or [first], split, report=report if views else quiet)
        meta["normalisation_transform"] = dataset.normalisation.tolist()
        if dataset.background is not None:
            meta["background_color"] = list(dataset.background)
        frames = []
        for view in views:
            frame = {
                "file_path": _relative_file_path(view.file_path, folder, report=report),
                "transform_matrix": view.camera_to_world.tolist(),
                "name": view.name,
            }
            if "fl_x" not in meta:
                frame.update(_intrinsics_dict(view))
            frames.append(frame)
        meta["frames"] = frames
        out = folder / f"transforms_{split}.json"
        try:
            with open(out, "w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=2)
                fh.write("\n")
        except OSError as err:
            raise GSError(f"{out}: cannot write ({err})") from None
        written.append(out)
    return written


def _intrinsics_dict(view: CameraView) -> dict:
    return {
        "fl_x": view.fx,
        "fl_y": view.fy,
        "cx": view.cx,
        "cy": view.cy,
        "w": view.width,
        "h": view.height,
    }


def _split_meta(views: list[CameraView], split: str, *, report: Report) -> dict:
    """Top-level keys of one transforms file; intrinsics at the top when all views share them."""
    first = views[0]
    meta = {
        "camera_angle_x": 2.0 * math.atan(0.5 * first.width / first.fx),
        "camera_model": "PINHOLE",
    }
    shared = _intrinsics_dict(first)
    if all(_intrinsics_dict(v) == shared for v in views):
        meta.update(shared)
    else:
        report(
            {"WARNING"},
            f"transforms_{split}.json: views have different intrinsics; they are written per "
            "frame, but readers that use only camera_angle_x (INRIA 3DGS) assume the first "
            "view's field of view for all",
        )
    if any(
        not math.isclose(v.fx, v.fy, rel_tol=1e-9)
        or not math.isclose(v.cx, 0.5 * v.width, abs_tol=1e-9)
        or not math.isclose(v.cy, 0.5 * v.height, abs_tol=1e-9)
        for v in views
    ):
        report(
            {"WARNING"},
            f"transforms_{split}.json: some views have non-square pixels or an off-centre "
            "principal point (lens shift); readers that use only camera_angle_x (INRIA 3DGS) "
            "will ignore that, nerfstudio-style readers use fl_x/fl_y/cx/cy",
        )
    return meta


def _relative_file_path(image: Path, folder: Path, *, report: Report) -> str:
    rel = Path(os.path.relpath(Path(image).absolute(), folder.absolute())).as_posix()
    if rel.endswith(".png"):
        rel = rel[: -len(".png")]
    else:
        report(
            {"WARNING"},
            f"{image}: not a .png; INRIA 3DGS and nerfstudio's blender parser append '.png' to "
            "file_path and will not find it",
        )
    return rel if rel.startswith("../") else "./" + rel
