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
