"""The command-line contract: python -m blender_gs_addon info/convert/import/export."""

import json

import numpy as np
import pytest
from cli_runner import run_cli as cli
from cli_runner import run_script

from blender_gs_addon.formats import read_splats, write_splats
from blender_gs_addon.samples import sample_splats


@pytest.fixture(scope="module")
def sample_ply(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "sample.ply"
    splats = sample_splats("torus", count=3000, sh_degree=3, seed=5)
    write_splats(path, splats)
    return path, splats


def test_info_json_reports_count_degree_format_and_bbox(sample_ply):
    path, splats = sample_ply
    info = json.loads(cli("info", path, "--json").stdout)
    assert info["count"] == 3000 and info["sh_degree"] == 3 and info["format"] == "ply"
    assert np.allclose(info["bbox_min"], splats.positions.min(0), atol=1e-6)
    assert np.allclose(info["bbox_max"], splats.positions.max(0), atol=1e-6)


@pytest.mark.parametrize("suffix, fmt, degree", [(".compressed.ply", "compressed_ply", 3),
                                                 (".spz", "spz", 3), (".splat", "splat", 0),
                                                 (".glb", "gltf", 3), (".gltf", "gltf", 3),
                                                 (".sog", "sog", 3), ("/meta.json", "sog", 3)])
def test_convert_picks_format_from_extension(sample_ply, tmp_path, suffix, fmt, degree):
    path, splats = sample_ply
    out = tmp_path / f"out{suffix}"
    out.parent.mkdir(exist_ok=True)
    proc = cli("convert", path, out)
    assert "Converted 3,000 splats" in proc.stdout
    info = json.loads(cli("info", out, "--json").stdout)
    assert (info["format"], info["count"], info["sh_degree"]) == (fmt, 3000, degree)
    if suffix == "/meta.json":  # the folder of an unbundled SOG reads as the SOG
        assert json.loads(cli("info", out.parent, "--json").stdout)["count"] == 3000
    # Every format keeps centres to within 1e-3 of the scene here (quantisation bounds are
    # tested per format); compare order-free via the bounding box.
    assert np.allclose(info["bbox_min"], splats.positions.min(0), atol=2e-3)


@pytest.mark.parametrize(
    "args, words",
    [
        (["info", "/nonexistent/x.ply"], "no such file"),
        (["convert", "{bad}", "{tmp}/o.spz"], "not a PLY file"),
        (["convert", "{good}", "{tmp}/o.obj"], "unknown splat file extension"),
        (["export", "--blend", "/nonexistent.blend", "--object", "x", "{tmp}/o.ply"],
         "no such .blend"),
        (["info"], "the following arguments are required: file"),
        (["capture", "--builtin", "toy", "--rig", "cube", "--out", "{tmp}/c"],
         "invalid choice: 'cube'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_user_errors_are_one_line_without_traceback(sample_ply, tmp_path, args, words):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"this is not a ply file at all")
    args = [a.format(bad=bad, tmp=tmp_path, good=sample_ply[0]) for a in args]
    proc = cli(*args, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.bpy
def test_import_then_export_round_trips_bit_exact(sample_ply, tmp_path):
    pytest.importorskip("bpy")
    path, _ = sample_ply
    blend = tmp_path / "scene.blend"
    proc = cli("import", path, "--blend", blend, "--name", "Scan")
    assert blend.is_file() and "Imported 3,000 splats (SH 3)" in proc.stdout
    out = tmp_path / "back.ply"
    cli("export", "--blend", blend, "--object", "Scan", out)
    assert out.read_bytes() == path.read_bytes()
    missing = cli("export", "--blend", blend, "--object", "Nope", out, check=False)
    assert missing.returncode == 2 and "no object named 'Nope'" in missing.stderr
    assert "Scan" in missing.stderr


@pytest.mark.bpy
def test_demo_captures_reconstructs_and_imports(tmp_path):
    pytest.importorskip("bpy")
    pytest.importorskip("torch")
    proc = cli("demo", "--out", tmp_path, "--steps", "8", "--views", "6", "--test-views", "2",
               "--resolution", "48", "--backend", "fit")
    for name in ("splats.ply", "demo.blend", "preview.png", "metrics.json",
                 "capture/transforms_train.json", "formats/splats.spz", "formats/splats.sog",
                 "formats/splats.glb"):
        assert (tmp_path / name).is_file(), proc.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["count"] == read_splats(tmp_path / "splats.ply").count
    assert metrics["test_views"] == 2 and 5 < metrics["psnr"] < 60
    assert "Held-out PSNR" in proc.stdout
    # The .blend opens showing splats as splats: native on 5.3+ (Blender draws them from any
    # view), else the display, which projects through the scene camera: a held-out view.
    shown = json.loads(run_script(
        "import json, sys, bpy; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
        "s = bpy.context.scene; o = bpy.data.objects['Toy Splats']; "
        "print(json.dumps({'version': bpy.app.version[:], 'type': o.type, "
        "'kind': getattr(o.data, 'type', None), 'modifiers': [m.type for m in o.modifiers], "
        "'visible': o.visible_get(), 'camera': s.camera and s.camera.type, "
        "'camera_name': s.camera and s.camera.name, 'size': [s.render.resolution_x, "
        "s.render.resolution_y]}))", tmp_path / "demo.blend").splitlines()[-1])
    assert shown["visible"] and shown["camera"] == "CAMERA" and shown["size"] == [48, 48]
    assert shown["camera_name"] == "test_000"  # the first held-out view
    if tuple(shown["version"]) >= (5, 3, 0):
        assert (shown["type"], shown["kind"]) == ("POINTCLOUD", "GAUSSIAN_SPLAT")
    else:
        assert shown["type"] == "MESH" and "NODES" in shown["modifiers"]
