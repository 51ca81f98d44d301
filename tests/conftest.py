"""Shared pytest set-up: the repository root on sys.path so ``import blender_gs_addon`` works.

bpy fixtures (extension registered once, fresh file around each test) live here too so every
test module that needs Blender gets the same behaviour.

The bpy tests run twice in CI (scripts/test.sh): on bpy 5.0.1 in the Python 3.11 environment,
with torch in-process, and on bpy 5.3.0 in ``.venv313`` (Python 3.13, no torch, as Blender
5.1+ embeds it). There ``GS_WORKER_PYTHON`` names the 3.11 environment's python: the extension's
preferences point at it, so reconstruction and the exact render engine run through the real
worker, and tests that need torch in Blender's own Python skip (:data:`needs_torch`).
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# torch's JIT and gsplat's lazy CUDA loader write caches; keep them out of the user's home.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".pytest_cache" / "torch_extensions"))


TORCH_HERE = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(
    not TORCH_HERE, reason=f"needs torch in this Python ({sys.version.split()[0]}, none "
                           "installed); the worker-backed path runs instead")
# A Python with torch for the reconstruction worker: this one, or GS_WORKER_PYTHON's.
WORKER_PYTHON = sys.executable if TORCH_HERE else os.environ.get("GS_WORKER_PYTHON", "")


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
    use_test_worker()
    return extension


def use_test_worker() -> None:
    """Without torch here, point the preferences at :data:`WORKER_PYTHON` (as a user of
    Blender 5.1+ points them at an environment with torch)."""
    if not TORCH_HERE and WORKER_PYTHON:
        from blender_gs_addon.extension import extension_module

        extension_module("preferences").ensure_preferences().worker_python = WORKER_PYTHON


@pytest.fixture
def blender(gs_extension):
    """``bpy`` with the extension registered and a factory-fresh file before and after the test."""
    import bpy

    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    yield bpy
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
