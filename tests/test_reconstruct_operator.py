"""One-click reconstruction in Blender: gs.reconstruct in background mode, the session's cancel
at every stage, a bad capture's error text, preferences and the Check Worker button.

Kept tiny for a 2-core CPU: the built-in toy, 8 orbit views at 64², Workbench, a few fit
steps.
"""

import os
import stat
import time

import numpy as np
import pytest
from conftest import TORCH_HERE, WORKER_PYTHON, needs_torch, use_test_worker

pytestmark = pytest.mark.bpy

STEPS = 5  # fit steps of the full run (each is about a second on a busy 2-core machine)


@pytest.fixture
def ext(blender):
    from blender_gs_addon.extension import extension_module

    class Ext:
        job = extension_module("scene.reconstruct_job")
        runner = extension_module("scene.model_runner")
        capture = extension_module("scene.capture")
        samples = extension_module("scene.sample_scenes")
        splat_object = extension_module("scene.splat_object")
        preferences = extension_module("preferences")
        operators = extension_module("operators.reconstruct")

    Ext.preferences.ensure_preferences()
    use_test_worker()
    yield Ext
    prefs = Ext.preferences.ensure_preferences()  # a test may have re-made the entry
    for name in Ext.preferences.Settings.__dataclass_fields__:
        setattr(prefs, name, getattr(Ext.preferences.DEFAULTS, name))
    use_test_worker()
    assert Ext.job.active_session() is None


@pytest.fixture(scope="module", autouse=True)
def _no_worker_left():
    yield
    from blender_gs_addon.extension import extension_module

    runner = extension_module("scene.model_runner")
    client = runner.current_worker()
    runner.stop_worker()
    if client is not None:
        assert client.proc.poll() is not None


def toy_scene(ext, bpy):
    objects = ext.samples.build_sample_scene("toy")
    for obj in objects:
        obj.select_set(True)
    bpy.context.view_layer.objects.active = objects[0]
    settings = bpy.context.scene.gs_capture
    settings.rig = "orbit"
    settings.views = 8
    settings.elevations = "15"
    settings.resolution_x = settings.resolution_y = 64
    settings.engine = "WORKBENCH"
    return objects


def _settings(ext):
    """The preferences as a job sees them (the worker when this Python has no torch)."""
    return ext.preferences.settings_from(ext.preferences.ensure_preferences())


def tiny_capture():
    return {"rig": "orbit", "views": 8, "elevations": (15.0,), "resolution": 64,
            "engine": "WORKBENCH"}


def scene_state(bpy):
    bpy.context.view_layer.update()  # matrix_world of new objects is stale until evaluated
    scene = bpy.context.scene
    render = scene.render
    return {
        "objects": sorted(o.name for o in bpy.data.objects),
        "counts": {kind: len(getattr(bpy.data, kind)) for kind in (
            "scenes", "cameras", "meshes", "pointclouds", "objects", "images", "materials",
            "collections", "worlds", "lights")},
        "matrices": {o.name: np.array(o.matrix_world).round(6).tolist() for o in scene.objects},
        "render": (render.engine, render.resolution_x, render.resolution_y, render.filepath,
                   render.film_transparent, render.resolution_percentage),
        "frame": scene.frame_current,
        "camera": scene.camera.name if scene.camera else None,
        "world": scene.world.name if scene.world else None,
    }


def _world_bounds(objects):
    points = []
    for obj in objects:
        co = np.empty(len(obj.data.vertices) * 3, dtype=np.float64)
        obj.data.vertices.foreach_get("co", co)
        m = np.array(obj.matrix_world)
        points.append(co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3])
    points = np.concatenate(points)
    return points.min(axis=0), points.max(axis=0)


def step_until(session, condition, *, timeout=120.0):
    """Step the session like the modal timer does until ``condition()``; returns the longest
    time one step() call took while the model was running."""
    longest, deadline = 0.0, time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"stuck at {session.stage}: {session.message}"
        start = time.perf_counter()
        assert session.step(), f"session ended at {session.stage}: {session.error}"
        if session.stage == "reconstruct":
            longest = max(longest, time.perf_counter() - start)
        time.sleep(0.02)
    return longest


# ---------------------------------------------------------------------------- preferences
def test_preferences_fall_back_to_defaults_and_are_found_by_package_name(ext, blender):
    prefs_module = ext.preferences
    assert prefs_module.ROOT_PACKAGE == "gaussian_splats"  # what load_extension registers
    assert prefs_module.GS_AddonPreferences.bl_idname == prefs_module.ROOT_PACKAGE
    prefs = prefs_module.get_preferences(blender.context)
    assert prefs.bl_rna.identifier == "GS_AddonPreferences"
    prefs.execution, prefs.device = "SUBPROCESS", "CPU"
    settings = prefs_module.settings_from(prefs_module.get_preferences())
    assert (settings.execution, settings.device, settings.default_backend) == (
        "SUBPROCESS", "CPU", "FIT")
    assert ext.runner.use_in_process(settings) is False
    # Without the add-on entry (registered by hand, not enabled): the defaults.
    entry = blender.context.preferences.addons[prefs_module.ROOT_PACKAGE]
    blender.context.preferences.addons.remove(entry)
    assert prefs_module.get_preferences() is prefs_module.DEFAULTS
    assert ext.runner.use_in_process(prefs_module.DEFAULTS) is TORCH_HERE  # AUTO: where torch is
    # A configured remote worker is what Automatic uses, even with torch here.
    remote = ext.preferences.Settings(execution="AUTO", worker_command="ssh gpu-box python")
    assert ext.runner.use_in_process(remote) is False
    prefs_module.ensure_preferences()


def test_in_process_refused_with_clear_message_when_torch_is_missing(ext, monkeypatch):
    settings = ext.preferences.Settings(execution="IN_PROCESS")
    from blender_gs_addon import devices

    monkeypatch.setitem(devices._TORCH_STATE, "ok", False)
    monkeypatch.setitem(devices._TORCH_STATE, "why", "torch is not installed in this Python")
    with pytest.raises(ext.job.GSError, match="torch is not installed.*Worker Process"):
        ext.runner.use_in_process(settings)
    assert ext.runner.use_in_process(ext.preferences.Settings(execution="AUTO")) is False


def test_lgm_backends_capture_with_the_lgm_rig(ext, blender):
    objects = toy_scene(ext, blender)
    reports = []
    for backend in ("lgm", "lgm+fit"):
        session = ext.job.ReconstructSession(
            blender.context, objects=objects, capture=tiny_capture(), backend=backend,
            report=lambda levels, message: reports.append(message))
        assert session.capture_options.rig == "lgm"
        assert session.capture_options.resolution == 64  # a square size is kept
    assert "LGM rig" in reports[-1]
    fit = ext.job.ReconstructSession(blender.context, objects=objects, capture=tiny_capture())
    assert fit.backend == "fit" and fit.capture_options.rig == "orbit"
    with pytest.raises(ext.job.GSError, match="unknown backend"):
        ext.job.ReconstructSession(blender.context, objects=objects, backend="nerf")


# --------------------------------------------------------------------------- the full run
def test_operator_in_background_imports_the_reported_splats_on_the_source(ext, blender):
    bpy = blender
    objects = toy_scene(ext, bpy)
    before = scene_state(bpy)
    source_lo, source_hi = _world_bounds(objects)

    assert bpy.app.background
    assert bpy.ops.gs.reconstruct(steps=STEPS) == {'FINISHED'}

    result = ext.job.last_result()
    assert result["in_process"] is TORCH_HERE and result["steps"] == STEPS  # else the worker
    obj = bpy.data.objects[result["object"]]
    assert ext.splat_object.is_splat_object(obj)
    assert ext.splat_object.splat_count(obj) == result["count"] > 0
    assert not os.path.exists(result["job_dir"])

    # Placement: the capture's normalisation undone on top of the 3DGS → Blender rotation.
    from blender_gs_addon.capture import rigs as capture_rigs
    from blender_gs_addon.conventions.frames import file_to_blender_matrix

    normalisation = np.array(result["normalisation"])
    np.testing.assert_allclose(
        normalisation, capture_rigs.normalisation_transform(source_lo, source_hi), atol=1e-6)
    expected = np.linalg.inv(normalisation) @ file_to_blender_matrix("-Y")
    bpy.context.view_layer.update()
    np.testing.assert_allclose(np.array(obj.matrix_world), expected, atol=1e-5)
    # The splats sit on the toy: their centre inside its box, their extent overlapping it.
    co = ext.splat_object.splat_positions(obj).astype(np.float64)
    world = co @ expected[:3, :3].T + expected[:3, 3]
    centre = np.median(world, axis=0)
    assert np.all(centre > source_lo) and np.all(centre < source_hi), (centre, source_lo)
    lo, hi = np.percentile(world, 5, axis=0), np.percentile(world, 95, axis=0)
    overlap = np.clip(np.minimum(hi, source_hi) - np.maximum(lo, source_lo), 0, None)
    assert np.all(overlap > 0.5 * (source_hi - source_lo)), (lo, hi, source_lo, source_hi)

    # Nothing else changed: one new object with its data (a native splat point cloud on
    # Blender 5.3+, a mesh before), every other setting as it was.
    after = scene_state(bpy)
    assert after["objects"] == sorted(before["objects"] + [obj.name])
    data = "pointclouds" if obj.type == 'POINTCLOUD' else "meshes"
    # The importer may give the splats a display material of their own.
    own_materials = {m.name for m in obj.data.materials if m is not None}
    assert after["counts"] == {**before["counts"], data: before["counts"][data] + 1,
                               "objects": before["counts"]["objects"] + 1,
                               "materials": before["counts"]["materials"] + len(own_materials)}
    del after["matrices"][obj.name]
    for key in ("matrices", "render", "frame", "camera", "world"):
        assert after[key] == before[key], key
    assert bpy.context.window_manager.gs_reconstruct.last_result.startswith("Reconstructed")


# ----------------------------------------------------------------------------- bad capture
@pytest.mark.parametrize("execution", [pytest.param("IN_PROCESS", marks=needs_torch),
                                       "SUBPROCESS"])
def test_bad_capture_reports_the_dataset_readers_error(ext, blender, monkeypatch, execution):
    bpy = blender
    toy_scene(ext, bpy)
    prefs = ext.preferences.ensure_preferences()
    prefs.execution = execution
    prefs.worker_python = WORKER_PYTHON
    finish = ext.capture.CaptureSession.finish

    def finish_then_lose_an_image(session):
        out = finish(session)
        os.remove(out / "train" / "view_003.png")
        return out

    monkeypatch.setattr(ext.capture.CaptureSession, "finish", finish_then_lose_an_image)
    before = scene_state(bpy)
    with pytest.raises(RuntimeError, match=r"transforms_train\.json.*view_003\.png is missing"):
        bpy.ops.gs.reconstruct(steps=1)
    assert scene_state(bpy) == before


# ----------------------------------------------------------------------------------- cancel
def test_cancel_before_start_and_during_capture_changes_nothing(ext, blender):
    bpy = blender
    objects = toy_scene(ext, bpy)
    before = scene_state(bpy)

    idle = ext.job.ReconstructSession(bpy.context, objects=objects, capture=tiny_capture())
    assert idle.cancel() is True and idle.stage == "cancelled"
    assert idle.step() is False and idle.job_dir is None

    session = ext.job.ReconstructSession(bpy.context, objects=objects, capture=tiny_capture())
    session.start()
    mode = stat.S_IMODE(os.stat(session.job_dir).st_mode)
    assert mode == 0o700, oct(mode)
    assert session.step() and session.stage == "capture"
    assert "GS Capture (temporary)" in bpy.data.scenes  # the capture is under way
    assert session.cancel() is True
    assert session.stage == "cancelled" and not session.running
    assert not session.job_dir.exists()
    assert scene_state(bpy) == before
    assert session.cancel() is False  # nothing left to cancel


@needs_torch  # the in-process model thread is what this drives
def test_modal_operator_stays_responsive_shows_progress_and_esc_cancels(ext, blender,
                                                                       monkeypatch):
    """The modal loop of gs.reconstruct driven by hand (background mode has no event loop):
    the in-process model runs in a thread, every timer tick returns at once, the progress
    reaches the window manager, the status bar and the panel's property, Esc restores all
    at once even while the model is inside a step it cannot leave."""
    from types import SimpleNamespace

    import blender_gs_addon.reconstruction.fit as fit_module

    real_fit = fit_module.fit_splats

    def fit_with_slow_steps(*, progress=None, **kwargs):
        # Each reported step then takes 2 s more, like a long network forward: the model
        # thread cannot look at the stop flag during it.
        def slow(p):
            progress(p)
            time.sleep(2.0)

        return real_fit(progress=slow, **kwargs)

    monkeypatch.setattr(fit_module, "fit_splats", fit_with_slow_steps)
    bpy = blender
    objects = toy_scene(ext, bpy)
    before = scene_state(bpy)
    op_class = ext.operators.GS_OT_reconstruct
    from fakes import RecordingWindowManager, plain_operator

    wm = RecordingWindowManager(bpy.context.window_manager)
    status_texts = []
    context = SimpleNamespace(window_manager=wm, window="window",
                              workspace=SimpleNamespace(status_text_set=status_texts.append))
    reports = []
    op = plain_operator(op_class, lambda levels, message: reports.append((set(levels), message)))
    settings = ext.preferences.Settings(execution="AUTO")
    session = ext.job.ReconstructSession(bpy.context, objects=objects, capture=tiny_capture(),
                                         settings=settings, steps=500, report=op.report)
    assert session.in_process
    assert op._start_modal(context, session) == {'RUNNING_MODAL'}
    assert [c if isinstance(c, str) else c[0] for c in wm.calls[:3]] == [
        "progress_begin", "timer_add", "modal_handler_add"]
    status = bpy.context.window_manager.gs_reconstruct
    assert status.running and status.stage == "capture"

    tick = SimpleNamespace(type='TIMER', value='NOTHING', timer="timer")
    longest, deadline = 0.0, time.monotonic() + 120
    while not session.message.startswith("fit:"):
        assert time.monotonic() < deadline, session.message
        start = time.perf_counter()
        assert op.modal(context, tick) == {'PASS_THROUGH'}
        if session.stage == "reconstruct":
            longest = max(longest, time.perf_counter() - start)
        time.sleep(0.02)
    assert longest < 0.5, longest  # the model never holds up the UI
    thread = session._thread
    assert thread.is_alive() and thread.name == "gs-reconstruct"
    assert 0.25 <= status.progress < 1.0 and status.message.startswith("fit:")
    assert "Esc to cancel" in status_texts[-1]
    progress = [c[1] for c in wm.calls if isinstance(c, tuple)]
    assert progress == sorted(progress) and progress[-1] >= 0.25

    # Other events pass through (the viewport stays usable); Esc cancels.
    mouse = SimpleNamespace(type='MOUSEMOVE', value='NOTHING', timer=None)
    assert op.modal(context, mouse) == {'PASS_THROUGH'}
    start = time.monotonic()
    esc = SimpleNamespace(type='ESC', value='PRESS', timer=None)
    assert op.modal(context, esc) == {'CANCELLED'}
    took = time.monotonic() - start
    assert took < 1.5, took  # the main thread does not wait for the model
    assert wm.calls[-2:] == ["timer_remove", "progress_end"] and status_texts[-1] is None
    assert not status.running and reports[-1][0] == {'WARNING'}
    assert ext.job.active_session() is None and session.stage == "cancelled"
    assert scene_state(bpy) == before
    # The model thread stops at its next fit step; its result is thrown away, its folder
    # removed, and the scene stays as it was.
    assert session.wait_released(timeout=60)
    assert not thread.is_alive() and not session.job_dir.exists()
    assert session.object is None and session.result is None
    assert scene_state(bpy) == before


def test_cancel_at_import_stage_imports_nothing(ext, blender):
    bpy = blender
    objects = toy_scene(ext, bpy)
    before = scene_state(bpy)
    session = ext.job.ReconstructSession(bpy.context, objects=objects, capture=tiny_capture(),
                                         settings=_settings(ext), steps=1)
    session.start()
    step_until(session, lambda: session.stage == "import")
    assert session.result["count"] > 0
    assert session.cancel() is True
    assert session.object is None and not session.job_dir.exists()
    assert scene_state(bpy) == before


def _worker_session(ext, bpy):
    """A 500-step fit of the toy in a worker subprocess (not started) and the scene before."""

    objects = toy_scene(ext, bpy)
    before = scene_state(bpy)
    settings = ext.preferences.Settings(execution="SUBPROCESS", worker_python=WORKER_PYTHON)
    session = ext.job.ReconstructSession(bpy.context, objects=objects, capture=tiny_capture(),
                                         settings=settings, steps=500)
    return session, before


def test_cancel_in_the_worker_keeps_it_warm_and_changes_nothing(ext, blender):
    bpy = blender
    session, before = _worker_session(ext, bpy)
    assert not session.in_process
    session.start()
    step_until(session, lambda: session._job is not None and session.message.startswith("fit:"))
    client = ext.runner.current_worker()
    start = time.monotonic()
    assert session.cancel() is True
    took = time.monotonic() - start
    assert took < 0.5, took  # the request goes out; the grace runs on the owner thread
    assert scene_state(bpy) == before
    assert session.wait_released(timeout=ext.runner.CANCEL_GRACE + 0.5)
    assert time.monotonic() - start < ext.runner.CANCEL_GRACE + 0.5
    assert session._job.cancelled and client.alive  # cooperative cancel: worker stays warm
    assert ext.runner.current_worker() is client
    assert not session.job_dir.exists()
    assert scene_state(bpy) == before
    assert client.run("wait", {"seconds": 0.05}, timeout=30) == {"waited": 0.05}


def test_worker_job_outliving_the_grace_is_terminated(ext, blender, monkeypatch):
    # No grace at all: the cancelled job has no time to stop, so the worker is terminated
    # and forgotten; the next reconstruction starts a fresh one.
    bpy = blender
    session, before = _worker_session(ext, bpy)
    session.start()
    step_until(session, lambda: session._job is not None and session.message.startswith("fit:"))
    client = ext.runner.current_worker()
    monkeypatch.setattr(ext.runner, "CANCEL_GRACE", 0.0)
    start = time.monotonic()
    assert session.cancel() is True
    assert time.monotonic() - start < 0.5
    assert session.wait_released(timeout=5)
    assert time.monotonic() - start < 3.0  # close: 0.5 s for a clean exit, then terminate
    assert not client.alive and ext.runner.current_worker() is None
    assert not session.job_dir.exists() and scene_state(bpy) == before


def test_a_stopped_worker_fails_the_session_within_seconds_and_changes_nothing(
        ext, blender, monkeypatch):
    """SIGSTOP: the worker's pipes stay open, so only its missing heartbeat tells."""
    import signal

    from blender_gs_addon.worker import protocol

    monkeypatch.setattr(protocol, "HEARTBEAT_TIMEOUT", 2.0)
    ext.runner.stop_worker()  # the next worker is made with the short timeout
    bpy = blender
    session, before = _worker_session(ext, bpy)
    session.start()
    step_until(session, lambda: session._job is not None and session.message.startswith("fit:"))
    client = ext.runner.current_worker()
    os.kill(client.info["pid"], signal.SIGSTOP)
    start = time.monotonic()
    with pytest.raises(ext.job.GSError, match=r"has sent nothing for 2\.\d s"):
        while time.monotonic() - start < 30:
            assert session.step()
            time.sleep(0.05)
    assert time.monotonic() - start < 3.0
    assert session.stage == "failed" and "stopped or hangs" in session.error
    assert scene_state(bpy) == before and not session.job_dir.exists()
    assert not client.alive and client.proc.wait(timeout=5) == -signal.SIGKILL


# ----------------------------------------------------------------------------- check worker
def test_check_worker_reports_torch_gsplat_and_cuda(ext, blender):
    import subprocess

    prefs = ext.preferences.ensure_preferences()
    prefs.worker_python = WORKER_PYTHON
    assert blender.ops.gs.check_worker() == {'FINISHED'}
    text = blender.context.window_manager.gs_reconstruct.check_text
    versions = subprocess.run([WORKER_PYTHON, "-c", "import gsplat, torch; print("
                               "torch.__version__, gsplat.__version__)"], capture_output=True,
                              text=True, check=True).stdout.split()
    assert f"torch {versions[0]}" in text and f"gsplat {versions[1]}" in text
    assert "CUDA no" in text or "CUDA yes" in text
    if TORCH_HERE:
        assert "torch imports" in text
    else:  # Blender 5.1+'s Python: the worker does the work
        assert "torch is not installed" in text and "run in the worker process" in text

    prefs.worker_python = "/nonexistent/python"
    assert blender.ops.gs.check_worker() == {'FINISHED'}
    text = blender.context.window_manager.gs_reconstruct.check_text
    assert "/nonexistent/python' does not exist" in text


def test_unregister_stops_the_worker(ext, blender, gs_extension):

    client = ext.runner.get_worker({"python": WORKER_PYTHON})
    assert client.alive
    gs_extension.unregister()
    try:
        assert client.proc.poll() is not None
        assert not hasattr(blender.types.WindowManager, "gs_reconstruct")
    finally:
        gs_extension.register()
        ext.preferences.ensure_preferences()


# -------------------------------------------------------------------------------- the panel
class _Layout:
    """Records what a draw function asks the layout for."""

    def __init__(self, calls):
        self.calls, self.enabled, self.active = calls, True, True

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name in ("box", "row", "column"):
                return _Layout(self.calls)
            return None
        return call


def test_sidebar_draws_the_button_or_the_progress_bar(ext, blender):
    from types import SimpleNamespace

    from blender_gs_addon.extension import extension_module

    sidebar = extension_module("panels.sidebar")
    status = blender.context.window_manager.gs_reconstruct
    context = SimpleNamespace(window_manager=blender.context.window_manager,
                              selected_objects=["a", "b"])
    calls = []
    sidebar._draw_reconstruct(_Layout(calls), context)
    operators = [c[1][0] for c in calls if c[0] == "operator"]
    assert operators == ["gs.reconstruct"] and not any(c[0] == "progress" for c in calls)
    assert any("(2)" in c[2].get("text", "") for c in calls if c[0] == "operator")

    status.running, status.progress, status.stage, status.message = True, 0.42, "capture", "v"
    try:
        calls.clear()
        sidebar._draw_reconstruct(_Layout(calls), context)
    finally:
        status.running = False
    bars = [c[2] for c in calls if c[0] == "progress"]
    assert len(bars) == 1 and abs(bars[0]["factor"] - 0.42) < 1e-6
    assert "42%" in bars[0]["text"]
    assert [c[1][0] for c in calls if c[0] == "operator"] == ["gs.reconstruct_cancel"]

    # A data set folder chosen in the panel: the button reconstructs it, selection or not.
    context.scene = blender.context.scene
    context.scene.gs_capture.reconstruct_dataset = "/some/capture"
    calls.clear()
    sidebar._draw_reconstruct(_Layout(calls), context)
    assert [c[2].get("text") for c in calls if c[0] == "operator"] == [
        "Reconstruct Data Set", "Reconstruct from Photos"]  # photos: test_reconstruct_photos
    assert any(c[0] == "prop" and "reconstruct_dataset" in c[1] for c in calls)


def test_reconstruct_an_existing_data_set_places_it_by_its_normalisation(ext, blender,
                                                                         tmp_path):
    """dataset=: no capture, no selection needed; the splats land where the capture's
    normalisation says, exactly as when the operator captured them itself."""
    from blender_gs_addon.conventions.frames import file_to_blender_matrix
    from blender_gs_addon.datasets.nerf_synthetic import read_transforms

    bpy = blender
    objects = toy_scene(ext, bpy)
    folder = ext.capture.capture_views(bpy.context, objects=objects, out_dir=tmp_path / "cap",
                                       **tiny_capture())
    normalisation = read_transforms(folder).normalisation
    for obj in bpy.context.scene.objects:
        obj.select_set(False)
    before = scene_state(bpy)
    assert bpy.ops.gs.reconstruct(dataset=str(folder), steps=STEPS) == {'FINISHED'}
    result = ext.job.last_result()
    obj = bpy.data.objects[result["object"]]
    assert obj.name == "cap Splats" and ext.splat_object.splat_count(obj) == result["count"] > 0
    bpy.context.view_layer.update()
    np.testing.assert_allclose(np.array(obj.matrix_world),
                               np.linalg.inv(normalisation) @ file_to_blender_matrix("-Y"),
                               atol=1e-5)
    assert (folder / "transforms_train.json").is_file()  # the user's data set is left alone
    assert not os.path.exists(result["job_dir"])
    assert scene_state(bpy)["objects"] == sorted(before["objects"] + [obj.name])

    # The same through the panel's folder field (the operator called with no arguments).
    bpy.context.scene.gs_capture.reconstruct_dataset = str(folder)
    assert bpy.ops.gs.reconstruct(steps=STEPS) == {'FINISHED'}
    second = bpy.data.objects[ext.job.last_result()["object"]]
    assert second != obj and second.matrix_world == obj.matrix_world
    bpy.data.objects.remove(second)
    bpy.context.scene.gs_capture.reconstruct_dataset = ""

    with pytest.raises(RuntimeError, match="missing_folder: no such file or folder"):
        bpy.ops.gs.reconstruct(dataset=str(tmp_path / "missing_folder"), steps=STEPS)
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(RuntimeError, match="empty_folder.*transforms"):
        bpy.ops.gs.reconstruct(dataset=str(tmp_path / "empty_folder"), steps=STEPS)
    assert scene_state(bpy)["objects"] == sorted(before["objects"] + [obj.name])
    assert ext.job.active_session() is None
