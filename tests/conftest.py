"""Shared pytest set-up: the repository root on sys.path so ``import blender_gs_addon`` works.

bpy fixtures (extension registered once, fresh file around each test) live here too so every
test module that needs Blender gets the same behaviour.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# torch's JIT and gsplat's lazy CUDA loader write caches; keep them out of the user's home.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".pytest_cache" / "torch_extensions"))


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(1234)


# ---------------------------------------------------------------------------------- bpy
@pytest.fixture(scope="session")
def gs_extension():
    """The extension package (``gaussian_splats``), loaded next to the core and registered once.

    Skips when bpy is not installed. The core is aliased, so there is one copy of every module:
    ``gaussian_splats.blender_gs_addon.errors.GSError is blender_gs_addon.errors.GSError``.
    """
    bpy = pytest.importorskip("bpy")
    from blender_gs_addon.extension import load_extension

    extension = load_extension()
    if not hasattr(bpy.types, "GS_OT_import_splats"):
        extension.register()
    return extension


@pytest.fixture
def blender(gs_extension):
    """``bpy`` with the extension registered and a factory-fresh file before and after the test."""
    import bpy

    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    yield bpy
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
