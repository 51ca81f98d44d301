"""The extension as Blender ships it: manifest, Blender's own validator and builder, and an
install of the built zip into a throw-away user folder (in a subprocess, as a user would)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

import blender_gs_addon
from blender_gs_addon import SplatSet
from blender_gs_addon.extension import EXTENSION_ID, extension_root
from blender_gs_addon.formats import write_splats

ROOT = extension_root()
MANIFEST = ROOT / "blender_manifest.toml"

pytestmark = pytest.mark.bpy


def blender_ext_cli() -> Path:
    """Blender's extension command line tool inside the bpy wheel (any Blender version)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bpy is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(package.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        pytest.skip(f"no blender_ext.py under {package}")
    return found[-1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(blender_ext_cli()), *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = run_cli("build", "--source-dir", str(ROOT), "--output-dir", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1, proc.stdout
    return zips[0]


def test_manifest_fields():
    manifest = tomllib.loads(MANIFEST.read_text())
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == EXTENSION_ID == "gaussian_splats"
    assert manifest["version"] == blender_gs_addon.__version__ == "0.1.0"
    assert manifest["type"] == "add-on" and manifest["name"] == "Gaussian Splats"
    tagline = manifest["tagline"]
    assert len(tagline) <= 64 and not re.search(r"[.!?,;:]$", tagline)
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert manifest["blender_version_min"] == "4.2.0"
    assert set(manifest["permissions"]) == {"files", "network"}  # network: LGM weights
    assert all(len(v) <= 64 for v in manifest["permissions"].values())  # Blender's limit
    assert "paths_exclude_pattern" in manifest["build"]


def test_blender_validates_the_manifest():
    proc = run_cli("validate", str(ROOT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in (proc.stdout + proc.stderr).lower()


def test_zip_holds_the_extension_and_nothing_else(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    for required in ("blender_manifest.toml", "__init__.py", "blender_gs_addon/__init__.py",
                     "blender_gs_addon/mesh_layout.py", "blender_gs_addon/formats/ply.py",
                     "operators/io_splats.py", "panels/sidebar.py", "scene/splat_object.py"):
        assert required in names, required
    if (ROOT / "README.md").exists():
        assert "README.md" in names
    excluded = ("tests/", "docs/", "scripts/", "benchmarks/", ".ci/", ".venv", ".git",
                "dist/", "out/", ".pytest_cache/", ".ruff_cache/")
    assert not [n for n in names if n.startswith(excluded)]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "pyproject.toml" not in names
    assert len(built_zip.read_bytes()) < 5 << 20  # no data or wheels slipped in


_INSTALL_SCRIPT = textwrap.dedent("""
    import sys
    import bpy

    result = bpy.ops.extensions.package_install_files(
        filepath=sys.argv[1], repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}, result
    assert hasattr(bpy.types, "GS_OT_import_splats"), "operator not registered"
    package = sys.modules["bl_ext.user_default.gaussian_splats"]
    assert "blender_gs_addon" not in sys.modules, "the extension imported the core absolutely"
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    assert bpy.ops.gs.import_splats(filepath=sys.argv[2]) == {"FINISHED"}
    obj = bpy.context.active_object
    count = len(obj.data.points if obj.type == 'POINTCLOUD' else obj.data.vertices)
    print("RESULT", obj.name, count, obj.data["gs_sh_degree"], package.__file__)
""")


def test_installed_extension_imports_a_file(built_zip, tmp_path):
    rng = np.random.default_rng(3)
    splats = SplatSet.from_arrays(
        positions=rng.normal(size=(40, 3)), log_scales=np.full((40, 3), -3.0),
        rotations=np.tile([1.0, 0, 0, 0], (40, 1)), opacity_logits=np.zeros(40),
        sh_dc=rng.normal(size=(40, 3)), sh_rest=rng.normal(size=(40, 3, 3)))
    sample = tmp_path / "sample.ply"
    write_splats(sample, splats)
    script = tmp_path / "install.py"
    script.write_text(_INSTALL_SCRIPT)
    resources = tmp_path / "user_resources"
    resources.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["BLENDER_USER_RESOURCES"] = str(resources)
    proc = subprocess.run([sys.executable, str(script), str(built_zip), str(sample)],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    _, name, count, degree, package_file = line.split(" ", 4)
    assert (name, int(count), int(degree)) == ("sample", 40, 1)
    # The installed copy ran, not the repository.
    assert Path(package_file).resolve().is_relative_to(resources.resolve())


def test_registering_imports_no_torch_and_core_imports_no_bpy():
    """The Blender side loads with bpy and numpy only; the core never needs bpy."""
    root = str(extension_root())
    probe = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {root!r})
        import blender_gs_addon, blender_gs_addon.formats, blender_gs_addon.cli
        import blender_gs_addon.reconstruction.pipeline, blender_gs_addon.worker.client
        assert "bpy" not in sys.modules, "the core imported bpy"
        import bpy
        from blender_gs_addon.extension import load_extension
        load_extension().register()
        heavy = [m for m in ("torch", "gsplat", "safetensors", "huggingface_hub")
                 if m in sys.modules]
        print("HEAVY", heavy)
    """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
