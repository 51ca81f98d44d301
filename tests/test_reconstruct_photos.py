"""Reconstruct from Photos in Blender (gs.reconstruct_photos): poses and fit in the worker (or
in Blender's Python when torch and pycolmap import there), the splats and the recovered cameras
with their photos as backgrounds in one new collection, upright; the report lines; bad input
named with the user's paths; a failed or cancelled run leaves the scene, bpy.data and the data
set folder as they were.

Fast runs use ten overlapping crops of one texture (pycolmap places them in about a second with
one thread); the upright test (slow) photographs a textured object with a known up direction.
"""

import functools
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import WORKER_PYTHON, needs_torch
from PIL import Image
from test_photo_job import overlapping_photos, texture

# Shared with the one-click reconstruction's tests: the ext fixture (the extension's modules,
# preferences reset after each test), the warm worker stopped after the module, scene_state.
# (Tests naming a fixture as their argument "redefine" it, hence the file-wide F811.)
# ruff: noqa: F811
from test_reconstruct_operator import _no_worker_left, ext, scene_state  # noqa: F401

pytestmark = pytest.mark.bpy

STEPS = 2  # fit steps of the fast runs: the fit is tested elsewhere; this is the plumbing


@functools.cache
def _worker_has_pycolmap() -> bool:
    if not WORKER_PYTHON:
        return False
    return subprocess.run([WORKER_PYTHON, "-c", "import pycolmap, torch"],
                          capture_output=True).returncode == 0


def _pycolmap_here() -> bool:
    from blender_gs_addon.poses.packages import pycolmap_available

    return pycolmap_available()


worker_with_pycolmap = pytest.mark.skipif(
    not _worker_has_pycolmap(), reason="the worker Python (GS_WORKER_PYTHON) lacks pycolmap")
IN_PROCESS = pytest.param("IN_PROCESS", marks=[needs_torch, pytest.mark.skipif(
    not _pycolmap_here(), reason="pycolmap does not import in this Python")])
EXECUTIONS = [IN_PROCESS, pytest.param("SUBPROCESS", marks=worker_with_pycolmap)]


def _use(ext, execution: str):
    prefs = ext.preferences.ensure_preferences()
    prefs.execution, prefs.worker_python, prefs.device = execution, WORKER_PYTHON, "CPU"


def _user_scene(bpy):
    """Something of the user's that must stay as it is."""
    bpy.ops.mesh.primitive_cube_add(size=2.0, location=(3.0, 0.0, 0.0))
    bpy.context.scene.render.resolution_x, bpy.context.scene.render.resolution_y = 640, 480


def _unrelated_photo(path: Path, size=(128, 96)) -> None:
    """A photo of something else (smooth colour blobs): it shares no features."""
    rng = np.random.default_rng(7)
    small = Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8))
    small.resize(size, Image.BICUBIC).save(path)


def _hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- the full run
@pytest.mark.parametrize("execution", EXECUTIONS)
def test_photos_become_splats_and_cameras_in_one_collection(ext, blender, tmp_path, capfd,
                                                           execution):
    bpy = blender
    _use(ext, execution)
    photos = overlapping_photos(tmp_path / "shoot", 10)
    _unrelated_photo(photos / "zz_unrelated.png")
    _user_scene(bpy)
    before = scene_state(bpy)
    user_objects = set(bpy.data.objects)

    assert bpy.ops.gs.reconstruct_photos(photos=str(photos), steps=STEPS,
                                         threads=1) == {'FINISHED'}

    result = ext.job.last_result()
    assert result["in_process"] is (execution == "IN_PROCESS")
    collection = bpy.data.collections[result["collection"]]
    assert collection.name == "shoot Photos"
    assert collection.name in bpy.context.scene.collection.children
    splats = bpy.data.objects[result["object"]]
    assert list(collection.objects) == [splats] and splats.name == "shoot Splats"
    assert ext.splat_object.splat_count(splats) == result["count"] > 0
    assert bpy.context.view_layer.objects.active == splats and splats.select_get()

    # The data set is kept beside the photos, with the splats, and the report names it.
    dataset = tmp_path / "shoot_poses"
    report = json.loads((dataset / "report.json").read_text())
    assert result["poses"] == report and result["dataset"] == str(dataset)
    assert (report["placed"], report["images"]) == (10, 11)
    assert report["left_out"] == ["zz_unrelated.png"]
    assert report["source"] == str(photos) and report["splats"] == str(dataset / "splats.ply")
    assert (dataset / "splats.ply").is_file() and (dataset / "sparse" / "0").is_dir()
    assert _hidden_leftovers(tmp_path) == []

    # One camera per placed photo, in a child collection, showing its photo.
    (cameras,) = collection.children
    assert cameras.name == "shoot Cameras"
    names = sorted(o.name for o in cameras.objects)
    assert names == [f"p{i:02d}" for i in range(10)]
    for obj in cameras.objects:
        background = obj.data.background_images[0]
        assert obj.data.show_background_images
        assert Path(background.image.filepath) == dataset / "images" / f"{obj.name}.png"
        assert background.image.size[:] == (128, 96)
    scene = bpy.context.scene
    assert (scene.render.resolution_x, scene.render.resolution_y) == (128, 96)
    assert scene.camera == cameras.objects["p00"]  # the scene had none

    # The report lines: INFO after the run, the sidebar's last result, a warning naming the
    # photo left out.
    last = bpy.context.window_manager.gs_reconstruct.last_result
    focal = report["focal_length_px"][0]
    assert last.startswith("Reconstructed shoot Splats from photos: placed 10/11 images (left "
                           f"out: zz_unrelated.png); reprojection error "
                           f"{report['reprojection_error_px']:.2f} px; focal length "
                           f"{focal:.1f} px"), last
    assert "held-out PSNR" in last and f"{report['psnr']:.2f} dB" in last
    printed = "".join(capfd.readouterr())
    assert f"Info: {last}" in printed
    assert "Warning: placed 10 of 11 images; left out: zz_unrelated.png (" in printed

    # Nothing of the user's changed but the render size and the active camera.
    after = scene_state(bpy)
    new = sorted(o.name for o in set(bpy.data.objects) - user_objects)
    assert new == sorted(names + [splats.name])
    assert {k: v for k, v in after["matrices"].items() if k not in new} == before["matrices"]
    assert after["world"] == before["world"] and after["frame"] == before["frame"]


# Written by the worker's Python (it has PyAV; Blender's need not): frames → lossless video.
_WRITE_VIDEO = r"""
import sys
import av
import numpy as np
from PIL import Image

with av.open(sys.argv[1], "w") as container:
    stream = container.add_stream("ffv1", rate=10)
    stream.width, stream.height, stream.pix_fmt = 128, 96, "bgr0"
    for path in sys.argv[2:]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
    container.mux(stream.encode())
"""


@worker_with_pycolmap
def test_a_video_becomes_splats_and_cameras_through_the_worker(ext, blender, tmp_path):
    bpy = blender
    _use(ext, "SUBPROCESS")
    paths = sorted(overlapping_photos(tmp_path / "crops", 10).iterdir())
    frames = [np.asarray(Image.open(p)) for p in paths]
    video = tmp_path / "walk.mkv"
    subprocess.run([WORKER_PYTHON, "-c", _WRITE_VIDEO, str(video), *map(str, paths)],
                   check=True, capture_output=True)
    assert bpy.ops.gs.reconstruct_photos(photos=str(video), frames=10, steps=STEPS,
                                         threads=1) == {'FINISHED'}
    result = ext.job.last_result()
    collection = bpy.data.collections[result["collection"]]
    assert collection.name == "walk Photos" and result["dataset"] == str(tmp_path / "walk_poses")
    cameras = collection.children[0].objects
    assert sorted(c.name for c in cameras) == [f"frame_{i:04d}" for i in range(1, 11)]
    for camera in cameras:  # each frame as its camera's background, as sampled
        image = camera.data.background_images[0].image
        index = int(camera.name.split("_")[1]) - 1
        assert np.array_equal(np.asarray(Image.open(image.filepath)), frames[index])
    assert result["poses"]["source"] == str(video)


def test_sidebar_has_the_photos_field_and_button(ext, blender):
    from types import SimpleNamespace

    from test_reconstruct_operator import _Layout

    from blender_gs_addon.extension import extension_module

    sidebar = extension_module("panels.sidebar")
    context = SimpleNamespace(window_manager=blender.context.window_manager,
                              scene=blender.context.scene, selected_objects=[])
    calls = []
    sidebar._draw_reconstruct(_Layout(calls), context)
    assert ("prop", (context.scene.gs_photos, "photos"), {"text": "Photos"}) in calls
    buttons = [c for c in calls if c[0] == "operator" and c[1][0] == "gs.reconstruct_photos"]
    assert buttons and buttons[0][2]["text"] == "Reconstruct from Photos"


# ---------------------------------------------------------------------------- bad input
def _one_photo(tmp_path):
    folder = tmp_path / "single"
    folder.mkdir()
    Image.fromarray(texture(64, 48, 0)).save(folder / "only.png")
    return folder, r"{path}: only one photo \(only.png\); poses need at least 3"


def _not_images(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("no photos")
    (folder / "scan.pdf").write_bytes(b"%PDF")
    return folder, r"{path}: no photos in this folder"


def _corrupt_video(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing after it" * 3)
    return video, r"{path}: the video decoder cannot read this file"


def _corrupt_photo(tmp_path):
    folder = overlapping_photos(tmp_path / "shoot", 3)
    (folder / "p01.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return folder, r"{path}/p01.png: cannot read this photo"


def _no_shared_features(tmp_path):
    folder = tmp_path / "noise"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(texture(128, 96, 100 + i)).save(folder / f"noise{i}.png")
    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(folder / "blank.png")
    return folder, (r"share no features.*blank.png: no features found.*noise0.png: shares no "
                    "features")


def _mixed_shapes(tmp_path):
    folder = overlapping_photos(tmp_path / "shoot", 3)
    Image.fromarray(texture(96, 128, 5)).save(folder / "portrait.png")
    return folder, r"most are 128×96, but portrait.png \(96×128\) differ"


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("make", [_one_photo, _not_images, _corrupt_video, _corrupt_photo,
                                  _no_shared_features, _mixed_shapes],
                         ids=lambda f: f.__name__.strip("_"))
def test_bad_input_is_named_and_changes_nothing(ext, blender, tmp_path, execution, make):
    import re

    bpy = blender
    _use(ext, execution)
    _user_scene(bpy)
    bpy.ops.object.camera_add(location=(0, -5, 1))
    bpy.context.scene.camera = bpy.context.object
    source, pattern = make(tmp_path)
    before = scene_state(bpy)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=pattern.format(path=re.escape(str(source)))) as err:
        bpy.ops.gs.reconstruct_photos(photos=str(source), steps=STEPS, threads=1)
    assert "gs_reconstruct_" not in str(err.value)  # the user's paths, not the worker's
    assert time.monotonic() - start < 30
    assert scene_state(bpy) == before
    assert ext.job.active_session() is None
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith("_poses")
                 or p.name.startswith(".")]
    assert leftovers == []


def test_a_foreign_data_set_folder_is_refused_before_any_work(ext, blender, tmp_path):
    bpy = blender
    _use(ext, "SUBPROCESS")
    photos = overlapping_photos(tmp_path / "shoot", 3)
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("precious")
    before = scene_state(bpy)
    with pytest.raises(RuntimeError, match="thesis: the folder is not empty and is not a pose"):
        bpy.ops.gs.reconstruct_photos(photos=str(photos), dataset=str(thesis))
    assert (thesis / "thesis.tex").read_text() == "precious" and len(list(thesis.iterdir())) == 1
    assert scene_state(bpy) == before
    with pytest.raises(RuntimeError, match="choose a folder of photos or a video file"):
        bpy.ops.gs.reconstruct_photos()  # nothing chosen in the panel either

    # The sidebar's settings are what the button runs with; the operator's own win.
    panel = bpy.context.scene.gs_photos
    panel.photos, panel.dataset = str(photos), str(thesis)
    with pytest.raises(RuntimeError, match="thesis: the folder is not empty"):
        bpy.ops.gs.reconstruct_photos()
    with pytest.raises(RuntimeError, match="elsewhere: no such folder or video file"):
        bpy.ops.gs.reconstruct_photos(photos=str(tmp_path / "elsewhere"))
    assert scene_state(bpy) == before


# ---------------------------------------------------------------------- cancel and failure
@worker_with_pycolmap
def test_esc_while_the_worker_runs_changes_nothing(ext, blender, tmp_path):
    """The modal operator driven by hand (background mode has no event loop): the progress
    bar moves through the poses' stages into the fit, Esc cancels at once, and the scene and
    the photos' folder are as they were. (Whether the worker stays warm depends on its fit step
    ending within the cancel grace: test_reconstruct_operator's business.)"""
    from types import SimpleNamespace

    from fakes import RecordingWindowManager, plain_operator

    bpy = blender
    photos = overlapping_photos(tmp_path / "shoot", 10)
    _user_scene(bpy)
    before = scene_state(bpy)
    settings = ext.preferences.Settings(execution="SUBPROCESS", worker_python=WORKER_PYTHON,
                                        device="CPU")
    job = ext.job.PhotoJob(photos=str(photos), threads=1)
    session = ext.job.ReconstructSession(bpy.context, settings=settings, photos=job, steps=500)
    wm = RecordingWindowManager(bpy.context.window_manager)
    texts = []
    context = SimpleNamespace(window_manager=wm, window="window",
                              workspace=SimpleNamespace(status_text_set=texts.append))
    op = plain_operator(ext.operators.GS_OT_reconstruct_photos, lambda *report: None)
    assert op._start_modal(context, session) == {'RUNNING_MODAL'}
    tick = SimpleNamespace(type='TIMER', value='NOTHING', timer="timer")
    stages, deadline = [], time.monotonic() + 120
    while not session.message.startswith("fit:"):
        assert time.monotonic() < deadline, session.message
        assert op.modal(context, tick) == {'PASS_THROUGH'}
        stages.append(session.message.split(":")[0])
        time.sleep(0.02)
    assert {"extract", "match"} <= set(stages) or "map" in stages, stages
    bar = [c[1] for c in wm.calls if isinstance(c, tuple) and c[0] == "progress"]
    assert bar == sorted(bar), bar
    assert 0.4 < bar[-1] < 0.97, bar  # the fit's share of the bar, after the poses'
    assert "Esc to cancel" in texts[-1], texts[-1]
    start = time.monotonic()
    esc = SimpleNamespace(type='ESC', value='PRESS', timer=None)
    assert op.modal(context, esc) == {'CANCELLED'}
    assert time.monotonic() - start < 1.0 and texts[-1] is None
    assert session.wait_released(timeout=10)
    assert scene_state(bpy) == before and not session.job_dir.exists()
    assert not (tmp_path / "shoot_poses").exists() and _hidden_leftovers(tmp_path) == []


def _fake_result(folder: Path, views: int = 4) -> Path:
    """A photos job's result folder made by hand: a pose data set (transforms, images,
    report.json) and splats.ply, cameras on a ring around the origin."""
    from blender_gs_addon.capture.rigs import camera_position, look_at_origin
    from blender_gs_addon.conventions.frames import splats_world_to_file
    from blender_gs_addon.datasets import CameraView, ViewDataset, write_transforms
    from blender_gs_addon.formats import write_splats
    from blender_gs_addon.splats import SplatSet

    dataset = folder / "dataset"
    (dataset / "images").mkdir(parents=True)
    azimuth = np.arange(views) * 360.0 / views
    c2w = look_at_origin(camera_position(azimuth, np.full(views, 20.0), 3.0),
                         azimuth_deg=azimuth)
    out = []
    for i, matrix in enumerate(c2w):
        path = dataset / "images" / f"v{i}.png"
        Image.fromarray(texture(80, 60, i)).save(path)
        out.append(CameraView(name=f"v{i}", file_path=path, width=80, height=60, fx=70.0,
                              fy=70.0, cx=40.0, cy=30.0, camera_to_world=matrix))
    write_transforms(ViewDataset(views=out), dataset)
    (dataset / "report.json").write_text(json.dumps({"placed": views, "images": views}))
    splats = SplatSet.empty(50)
    splats.positions[:] = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 3))
    splats.log_scales[:] = np.log(0.05)
    write_splats(folder / "splats.ply", splats_world_to_file(splats))
    return folder


def test_a_failure_while_importing_puts_everything_back(ext, blender, tmp_path, monkeypatch):
    from blender_gs_addon.errors import GSError
    from blender_gs_addon.extension import extension_module

    bpy = blender
    photo_import = extension_module("scene.photo_import")
    photos = overlapping_photos(tmp_path / "shoot", 3)
    earlier = tmp_path / "shoot_poses"
    earlier.mkdir()
    (earlier / "report.json").write_text(json.dumps({"placed": 9, "marker": "earlier"}))
    _user_scene(bpy)
    before = {**scene_state(bpy), "node_groups": len(bpy.data.node_groups)}
    real_import = photo_import.import_splats

    def import_then_fail(*args, **kwargs):
        real_import(*args, **kwargs)  # the splat object exists when the failure comes
        raise GSError("disk full")

    monkeypatch.setattr(photo_import, "import_splats", import_then_fail)
    job = ext.job.PhotoJob(photos=str(photos))
    with pytest.raises(GSError, match="disk full"):
        photo_import.import_photo_result(job, _fake_result(tmp_path / "r1"),
                                         scene=bpy.context.scene,
                                         view_layer=bpy.context.view_layer)
    # No objects, cameras, images, collections, display node groups; no active camera.
    assert {**scene_state(bpy), "node_groups": len(bpy.data.node_groups)} == before
    assert json.loads((earlier / "report.json").read_text())["marker"] == "earlier"
    assert _hidden_leftovers(tmp_path) == []

    # Without the failure: the cameras sit exactly where the data set says, the earlier data
    # set is replaced.
    monkeypatch.setattr(photo_import, "import_splats", real_import)
    collection, obj, report = photo_import.import_photo_result(
        job, _fake_result(tmp_path / "r2"), scene=bpy.context.scene,
        view_layer=bpy.context.view_layer)
    assert report["placed"] == 4 and "marker" not in json.loads(
        (earlier / "report.json").read_text())
    assert _hidden_leftovers(tmp_path) == []
    from blender_gs_addon.datasets import read_transforms

    views = {v.name: v for v in read_transforms(earlier).views}
    bpy.context.view_layer.update()
    for camera in collection.children[0].objects:
        np.testing.assert_allclose(np.array(camera.matrix_world),
                                   views[camera.name].camera_to_world, atol=1e-5)
        assert camera.data.background_images[0].image.filepath == str(
            earlier / "images" / f"{camera.name}.png")
    assert ext.splat_object.splat_count(obj) == 50


# ------------------------------------------------------------------------------- upright
@pytest.mark.slow  # 9-21 s on 2 shared cores, rendering the photos included
@worker_with_pycolmap
def test_photos_of_an_object_arrive_upright_through_the_worker(ext, blender, tmp_path):
    """30 photos of a textured object (three rings of 10 at 160²; 8 per ring are too far apart
    for accurate poses): the recovered cameras and the splats stand upright: aligned onto the
    known cameras, Blender's +Z is the object's up within 3°, and the splats lie on the
    object."""
    from photo_subject import photos_from_capture, render_subject

    from blender_gs_addon.datasets import read_transforms
    from blender_gs_addon.poses.alignment import pose_errors

    bpy = blender
    _use(ext, "SUBPROCESS")
    truth = read_transforms(render_subject(tmp_path, views_per_ring=10, resolution=160))
    photos_from_capture(truth, tmp_path / "photos")
    assert bpy.ops.gs.reconstruct_photos(photos=str(tmp_path / "photos"), steps=1,
                                         threads=1) == {'FINISHED'}
    result = ext.job.last_result()
    report = result["poses"]
    assert report["placed"] >= 27 and len(report["held_out"]) >= 3
    collection = bpy.data.collections[result["collection"]]
    cameras = collection.children[0].objects
    assert len(cameras) == report["placed"]
    bpy.context.view_layer.update()
    by_name = {Path(v.name).name: v.camera_to_world for v in truth.views}
    recovered = np.stack([np.array(c.matrix_world) for c in cameras])
    errors = pose_errors(recovered, np.stack([by_name[c.name] for c in cameras]))
    assert errors.rotation_error_deg < 1.5 and errors.centre_error_percent < 3.0
    rotation = errors.alignment[:3, :3] / np.cbrt(np.linalg.det(errors.alignment[:3, :3]))
    tilt = np.degrees(np.arccos(np.clip(rotation[2, 2], -1.0, 1.0)))
    print(f"placed {report['placed']}/30, rotation error {errors.rotation_error_deg:.2f}°, "
          f"centre error {errors.centre_error_percent:.2f} %, tilt {tilt:.2f}°")
    assert tilt < 3.0, tilt  # Blender's +Z is the object's up

    splats = bpy.data.objects[result["object"]]
    local = ext.splat_object.splat_positions(splats).astype(np.float64)
    m = errors.alignment @ np.array(splats.matrix_world)
    on_object = local @ m[:3, :3].T + m[:3, 3]  # in the capture's world: the object in a
    inside = np.all(np.abs(on_object) <= 0.6, axis=1)  # unit cube at the origin
    assert inside.mean() > 0.9, inside.mean()
    last = bpy.context.window_manager.gs_reconstruct.last_result
    assert f"placed {report['placed']}/30 images" in last and "held-out PSNR" in last
    true_focal = truth.views[0].fx
    assert abs(report["focal_length_px"][0] / true_focal - 1.0) < 0.03
