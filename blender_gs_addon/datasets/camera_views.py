"""In-memory model of a multi-view data set: posed pinhole views plus how they were framed.

Conventions shared by every reader, writer and reconstruction backend:

* **World, camera axes, pixels**: as :mod:`..conventions` defines them — Blender's world for data
  sets we capture (data sets read from elsewhere keep their own world; see :mod:`.colmap` and
  :mod:`.nerf_synthetic`), ``camera_to_world`` with OpenGL camera axes (a Blender camera
  object's ``matrix_world`` without scale), pixel centres at integer + 0.5.
* **Normalisation**: captures render the selection scaled into a unit cube at the origin; the
  data set's ``normalisation`` is the 4×4 taking the original Blender world into the data set's
  world (where the cameras are). A result reconstructed in the data set's world maps back onto
  the original object by ``inv(normalisation)``.
* **Images**: RGBA PNGs with straight (not premultiplied) alpha, as Blender writes them;
  ``background`` is the colour a trainer should composite them on (``None``: keep alpha).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..conventions.frames import opengl_c2w_to_viewmat
from ..errors import GSError

__all__ = [
    "CameraView",
    "ViewDataset",
    "check_camera_pose",
    "check_intrinsics",
    "outside_problem",
    "report_imageless",
    "OUTSIDE_PATHS_HINT",
    "load_view_image",
    "composite_on_background",
]


# A rotation read from a text file with ~7 significant digits is orthonormal to ~1e-6; anything
# much worse is a scaled or sheared matrix that no pinhole reader handles correctly.
_ROTATION_TOLERANCE = 1e-3


def check_camera_pose(matrix, *, where: str) -> np.ndarray:
    """Validate a camera-to-world matrix; return it as a float64 [4, 4] copy.

    ``where`` names the file and frame for the error message. Accepts [4, 4] or [3, 4] (the last
    row is then taken as 0, 0, 0, 1). Refuses non-numeric, non-finite, scaled, sheared or mirrored
    rotations and a bottom row other than (0, 0, 0, 1).
    """
    try:
        m = np.array(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise GSError(f"{where}: camera matrix is not a 4×4 array of numbers") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise GSError(f"{where}: camera matrix has shape {m.shape}, expected 4×4")
    if not np.isfinite(m).all():
        raise GSError(f"{where}: camera matrix has non-finite values (NaN or infinity)")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise GSError(f"{where}: camera matrix's last row is {m[3].tolist()}, not 0 0 0 1")
    rot = m[:3, :3]
    if np.abs(rot.T @ rot - np.eye(3)).max() > _ROTATION_TOLERANCE or np.linalg.det(rot) <= 0:
        raise GSError(f"{where}: camera matrix's rotation part is scaled, sheared or mirrored")
    return m


OUTSIDE_PATHS_HINT = ("pass allow_outside_paths=True (command line: --allow-outside-paths) "
                      "only if you trust where the data set came from")


def outside_problem(path: Path, folder: Path, *, where: str) -> str | None:
    """Why image ``path`` may not be read as part of the data set in ``folder`` — it resolves
    (``..``, an absolute path, symlinks) outside the folder — or None when it lies inside.

    Data sets come from the internet: a ``file_path`` of ``../../x``, ``/etc/passwd`` or a
    symlink out of the folder must not make a reconstruction read files from anywhere on the
    computer. ``where`` names the file and frame in the message.
    """
    try:
        real, top = Path(path).resolve(), Path(folder).resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop
        return f"{where}: cannot resolve image path {path} ({err})"
    if real != top and top not in real.parents:
        return (f"{where}: image {path} lies outside the data set folder {top} (it resolves "
                f"to {real}); refused — {OUTSIDE_PATHS_HINT}")
    return None


def report_imageless(views: list, *, source, report) -> None:
    """One WARNING for views kept without their image because it lies outside the data set
    (readers that only need cameras keep such views; readers of images refuse them)."""
    missing = [v.name for v in views if v.file_path is None]
    if missing:
        report({"WARNING"}, f"{source}: {len(missing)} view(s) name an image outside the data "
                            f"set folder (first: {missing[0]!r}); their cameras are kept "
                            f"without the image — {OUTSIDE_PATHS_HINT}")


def check_intrinsics(width, height, fx, fy, cx, cy, *, where: str) -> tuple:
    """Validate pinhole intrinsics; return (width, height, fx, fy, cx, cy) as (int, int, float…)."""
    try:
        w_f, h_f = float(width), float(height)
        fx, fy, cx, cy = float(fx), float(fy), float(cx), float(cy)
    except (TypeError, ValueError):
        raise GSError(f"{where}: intrinsics are not numbers") from None
    if not (w_f.is_integer() and h_f.is_integer() and w_f >= 1 and h_f >= 1):
        raise GSError(f"{where}: image size {width}×{height} is not a positive whole number")
    if not all(np.isfinite([fx, fy, cx, cy])) or fx <= 0 or fy <= 0:
        raise GSError(
            f"{where}: focal lengths must be finite and positive and the principal point finite "
            f"(fx={fx}, fy={fy}, cx={cx}, cy={cy})"
        )
    return int(w_f), int(h_f), fx, fy, cx, cy


@dataclass(eq=False)
class CameraView:
    """One posed pinhole view (see the module docstring for the conventions).

    ``file_path`` is the image file (absolute, or relative to the working directory; ``None``
    for a camera that has not been rendered yet). ``split`` is the data set split the view
    belongs to: ``"train"``, ``"test"`` or ``"val"``.
    """

    name: str
    file_path: Path | None
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    camera_to_world: np.ndarray  # [4, 4] float64, Blender/OpenGL camera axes
    split: str = "train"

    def __post_init__(self) -> None:
        where = f"view {self.name!r}"
        self.camera_to_world = check_camera_pose(self.camera_to_world, where=where)
        self.width, self.height, self.fx, self.fy, self.cx, self.cy = check_intrinsics(
            self.width, self.height, self.fx, self.fy, self.cx, self.cy, where=where
        )
        if self.file_path is not None:
            self.file_path = Path(self.file_path)

    def resized(self, longer_side: int | None) -> CameraView:
        """The same camera rendering ``longer_side`` pixels along its longer image side (the
        intrinsics scale with it; no image file). ``None`` returns the view unchanged."""
        if not longer_side:
            return self
        f = longer_side / max(self.width, self.height)
        return CameraView(name=self.name, file_path=None, width=round(self.width * f),
                          height=round(self.height * f), fx=self.fx * f, fy=self.fy * f,
                          cx=self.cx * f, cy=self.cy * f, camera_to_world=self.camera_to_world,
                          split=self.split)

    @property
    def position(self) -> np.ndarray:
        """[3] camera centre in the world."""
        return self.camera_to_world[:3, 3].copy()

    def intrinsics_matrix(self) -> np.ndarray:
        """[3, 3] K for the OpenCV camera (x right, y down, looking along +z)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def world_to_camera_opencv(self) -> np.ndarray:
        """[4, 4] world → OpenCV camera (what gsplat calls ``viewmats``, COLMAP's [R | t])."""
        return opengl_c2w_to_viewmat(self.camera_to_world)

    def project(self, points) -> np.ndarray:
        """[N, 3] world points → [N, 2] pixel coordinates (u right, v down); no clipping."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        w2c = self.world_to_camera_opencv()
        cam = p @ w2c[:3, :3].T + w2c[:3, 3]  # [N, 3] OpenCV camera space, +z forward
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * cam[:, 0] / cam[:, 2] + self.cx
            v = self.fy * cam[:, 1] / cam[:, 2] + self.cy
        return np.stack([u, v], axis=1)


@dataclass(eq=False)
class ViewDataset:
    """A list of views (each tagged with its split) and how the capture was framed.

    ``normalisation`` [4, 4]: original Blender world → this data set's world (identity for data
    sets that were not captured by us). ``background``: RGB in 0‥1 to composite the RGBA images on,
    or ``None``. ``root``: the folder the data set was read from or written to. ``metadata``:
    reader-specific facts kept for the importer (e.g. nerfstudio's ``applied_transform``).
    """

    views: list[CameraView]
    normalisation: np.ndarray = field(default_factory=lambda: np.eye(4))  # [4, 4]
    background: tuple[float, float, float] | None = None
    root: Path | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.views = list(self.views)
        n = np.array(self.normalisation, dtype=np.float64)
        if n.shape != (4, 4) or not np.isfinite(n).all() or abs(np.linalg.det(n)) < 1e-12:
            raise GSError("data set normalisation must be a finite, invertible 4×4 matrix")
        self.normalisation = n
        if self.background is not None:
            bg = tuple(float(c) for c in self.background)
            if len(bg) != 3 or not all(np.isfinite(bg)):
                raise GSError(f"data set background must be three finite numbers, got {bg}")
            self.background = bg
        if self.root is not None:
            self.root = Path(self.root)

    def __len__(self) -> int:
        return len(self.views)

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names present, in first-appearance order."""
        return tuple(dict.fromkeys(v.split for v in self.views))

    def split_views(self, split: str) -> list[CameraView]:
        return [v for v in self.views if v.split == split]

    def camera_to_world_stack(self, split: str | None = None) -> np.ndarray:
        """[N, 4, 4] camera-to-world matrices of one split (all views for ``None``)."""
        views = self.views if split is None else self.split_views(split)
        if not views:
            return np.zeros((0, 4, 4))
        return np.stack([v.camera_to_world for v in views])

    def denormalisation(self) -> np.ndarray:
        """[4, 4] data set world → original Blender world (apply to reconstructed results)."""
        return np.linalg.inv(self.normalisation)


def load_view_image(view: CameraView) -> np.ndarray:
    """Read a view's image as float32 [H, W, 4] RGBA in 0‥1 (alpha 1 where the file has none).

    8-bit and 16-bit images are scaled by their full range; the image must be exactly
    ``view.width`` × ``view.height``. Raises GSError naming the view and file if the image is
    missing, unreadable or of another size.
    """
    from PIL import Image  # pillow is only needed where images are read

    if view.file_path is None:
        raise GSError(f"view {view.name!r} has no image file")
    path = Path(view.file_path)
    where = f"view {view.name!r} ({path})"
    if not path.is_file():
        raise GSError(f"{where}: image file is missing")
    try:
        with Image.open(path) as im:
            if im.size != (view.width, view.height):
                raise GSError(
                    f"{where}: image is {im.size[0]}×{im.size[1]} but the camera expects "
                    f"{view.width}×{view.height}"
                )
            if im.mode in ("I;16", "I;16L", "I;16B", "I"):
                gray = np.asarray(im, dtype=np.float32) / 65535.0  # [H, W]
                rgba = np.empty((*gray.shape, 4), np.float32)
                rgba[..., :3] = gray[..., None]
                rgba[..., 3] = 1.0
            elif im.mode == "F":
                gray = np.asarray(im, dtype=np.float32)
                rgba = np.empty((*gray.shape, 4), np.float32)
                rgba[..., :3] = gray[..., None]
                rgba[..., 3] = 1.0
            else:
                rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except GSError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise GSError(f"{where}: cannot read image ({err})") from None
    return np.ascontiguousarray(rgba, dtype=np.float32)


def composite_on_background(rgba: np.ndarray, background) -> np.ndarray:
    """[H, W, 4] straight-alpha RGBA over an RGB background colour → [H, W, 3] float32."""
    rgba = np.asarray(rgba, dtype=np.float32)
    alpha = rgba[..., 3:4]
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    return rgba[..., :3] * alpha + bg * (1.0 - alpha)
