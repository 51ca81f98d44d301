"""Small stand-ins shared by tests: what background-mode Blender lacks, and image writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class RecordingWindowManager:
    """A window manager for driving modal operators by hand (background mode has no window):
    the calls that need a window are recorded; everything else goes to ``wm`` when given."""

    def __init__(self, wm=None):
        self._wm, self.calls = wm, []

    def __getattr__(self, name):
        if self._wm is None:
            raise AttributeError(name)
        return getattr(self._wm, name)

    def event_timer_add(self, seconds, window=None):
        self.calls.append("timer_add")
        return "timer"

    def event_timer_remove(self, timer):
        self.calls.append("timer_remove")

    def modal_handler_add(self, operator):
        self.calls.append("modal_handler_add")

    def progress_begin(self, lo, hi):
        self.calls.append(("progress_begin", lo, hi))

    def progress_update(self, value):
        self.calls.append(("progress", value))

    def progress_end(self):
        self.calls.append("progress_end")


def plain_operator(op_class, report):
    """An instance of a plain-Python copy of the bpy operator class ``op_class`` (its own and its
    mixins' methods and attributes, without bpy's base classes, which cannot be instantiated
    by hand), whose ``report`` is ``report``: for calling modal methods by hand."""
    namespace = {}
    for cls in reversed(op_class.__mro__):
        if cls.__module__ not in ("_bpy_types", "bpy_types", "builtins"):
            namespace.update({k: v for k, v in vars(cls).items() if not k.startswith("__")})
    operator = type(f"Plain{op_class.__name__}", (), namespace)()
    operator.report = report
    return operator


def save_rgba(path: Path, rgb: np.ndarray, alpha: np.ndarray) -> None:
    """Premultiplied [H, W, 3] colour and [H, W, 1] alpha → an 8-bit straight-alpha PNG, as a
    Blender capture writes it."""
    from PIL import Image

    straight = np.where(alpha > 1e-6, rgb / np.maximum(alpha, 1e-6), 0.0)
    rgba = np.clip(np.concatenate([straight, alpha], -1), 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(path)


class Reports:
    """A ``report=`` callback that records ``(levels, message)`` pairs."""

    def __init__(self):
        self.messages: list[tuple[set, str]] = []

    def __call__(self, levels, message):
        self.messages.append((set(levels), message))

    def at(self, level: str) -> list[str]:
        return [m for lv, m in self.messages if level in lv]

def write_torus_dataset(root: Path, *, train: int = 12, test: int = 3, resolution: int = 32,
                        test_views_see_nothing: bool = False, seed: int = 3) -> Path:
    """A small NeRF-synthetic data set of a 400-splat torus rendered with our rasterizer
    (RGBA on black; no Blender needed). With ``test_views_see_nothing`` the held-out cameras
    stand far above the scene looking away from it, and their images are empty."""
    import math

    from blender_gs_addon.capture.rigs import sphere_rig
    from blender_gs_addon.conventions.frames import splats_file_to_world
    from blender_gs_addon.samples import sample_splats

    root = Path(root)
    truth = splats_file_to_world(sample_splats("torus", count=400, sh_degree=0, seed=seed))
    truth.log_scales += np.float32(math.log(3.0))  # visible at 32 px
    rig = sphere_rig(count=train, radius=2.5, fov_deg=40, width=resolution, height=resolution)
    views = rig.to_views(root / "train", split="train")
    held_out = sphere_rig(count=test, radius=2.5, fov_deg=40, width=resolution,
                          height=resolution)
    held_out.names = [f"t{i}" for i in range(test)]
    if test_views_see_nothing:  # 100 units up, looking up (OpenGL camera: -Z forward)
        away = np.diag([1.0, -1.0, -1.0, 1.0])
        away[2, 3] = 100.0
        held_out.camera_to_world = np.repeat(away[None], test, axis=0)
    views += held_out.to_views(root / "test", split="test")
    write_rendered_dataset(root, truth, views)
    return root


def write_rendered_dataset(root: Path, truth, views) -> np.ndarray:
    """Render the splats ``truth`` (world frame) with our rasterizer into every view's image
    (RGBA on black) and write the data set's transforms into ``root``; the alpha images
    [V, H, W]."""
    from blender_gs_addon.datasets.camera_views import ViewDataset
    from blender_gs_addon.datasets.nerf_synthetic import write_transforms
    from blender_gs_addon.reconstruction.evaluate import render_views

    rgb, alpha = render_views(truth, views, background=(0.0, 0.0, 0.0))
    for view, image, a in zip(views, rgb, alpha):
        save_rgba(view.file_path, image, a)
    write_transforms(ViewDataset(views=views), Path(root))
    return alpha
