"""Multi-view data sets shared by the capture operator and the reconstruction backends.

:mod:`.camera_views` holds the in-memory model (conventions in its docstring);
:mod:`.nerf_synthetic` reads/writes transforms.json data sets (NeRF-synthetic and nerfstudio);
:mod:`.colmap` reads/writes COLMAP sparse models. No bpy here; pillow is imported only where
images are read.
"""

from .camera_views import CameraView, ViewDataset, composite_on_background, load_view_image
from .colmap import read_colmap_model, write_colmap_model
from .nerf_synthetic import read_transforms, write_transforms

__all__ = [
    "CameraView",
    "ViewDataset",
    "load_view_image",
    "composite_on_background",
    "read_transforms",
    "write_transforms",
    "read_colmap_model",
    "write_colmap_model",
]
