"""Core of the Gaussian-splat Blender extension: data model, formats, reconstruction.

Nothing in this package imports bpy; torch, gsplat, safetensors and huggingface_hub are imported
lazily where reconstruction runs, so the worker, the command line and the tests use it directly.
"""

from .errors import GSError
from .splats import SplatSet, concatenate

__version__ = "0.1.0"

__all__ = ["GSError", "SplatSet", "concatenate", "__version__"]
