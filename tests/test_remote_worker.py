"""The worker on the far side of a real SSH connection (an OpenSSH server on 127.0.0.1 that the
test starts, with throwaway keys: see tests/local_sshd.py).

The remote worker runs from a copy of the core in another folder, with its own TMPDIR: all it
gets (the data set, the splats to render) comes over the pipe, and all it gives back (splats,
images) goes the same way. Covered: reconstruction and F12 through Blender, the command line,
the Check Worker report, a dropped connection and a stalled or slow link mid-job, a version
mismatch, and bad set-ups (unreachable host, wrong worker path, no torch over there), each one
clear line with nothing half-written left behind. Skips when no sshd can be run.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import write_torus_dataset
from local_sshd import LocalSshd, copy_core, unavailable_reason, worker_remote_command

from blender_gs_addon import GSError
from blender_gs_addon.worker.client import WorkerClient
from blender_gs_addon.worker.protocol import JOB_DIR_PREFIX
from blender_gs_addon.worker.transfer import dataset_bundle

ROOT = Path(__file__).resolve().parent.parent
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no SSH server for the remote-worker tests: {reason}")
    server = LocalSshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


class Remote:
    """The far side: a copy of the core in ``core``, the worker's TMPDIR ``tmp``."""

    def __init__(self, sshd, root: Path):
        self.sshd, self.core, self.tmp = sshd, copy_core(root / "opt"), root / "tmp"
        self.tmp.mkdir()
        self.command = sshd.command(worker_remote_command(self.core, self.tmp, sys.executable))

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir() if p.name.startswith(JOB_DIR_PREFIX))

    def wait_clean(self, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.leftovers()


@pytest.fixture(scope="module")
def remote(sshd, tmp_path_factory):
    return Remote(sshd, tmp_path_factory.mktemp("remote"))


@pytest.fixture(scope="module")
def torus(tmp_path_factory):
    return write_torus_dataset(tmp_path_factory.mktemp("torus"), train=8, test=2)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "blender_gs_addon", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- command line
def test_cli_reconstructs_through_ssh_and_writes_only_the_finished_file(remote, torus,
                                                                        tmp_path):
    out = tmp_path / "result" / "torus.spz"
    run = _cli("reconstruct", "--capture", str(torus), "--steps", "3", "--device", "cpu",
               "--out", str(out), "--json", "--worker-command", remote.command)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    from blender_gs_addon.formats import read_splats

    assert read_splats(out).count == result["count"] > 0 and result["splats"] == str(out)
    assert result["steps"] == 3 and result["psnr"] > 5.0 and result["device"] == "cpu"
    sent = dataset_bundle(torus).size
    transfer = result["transfer"]
    assert transfer["payload_bytes"] == sent + out.stat().st_size
    assert transfer["wire_bytes"] > transfer["payload_bytes"]  # base64, progress, heartbeats
    assert os.listdir(out.parent) == ["torus.spz"]  # no scratch left beside it
    assert remote.wait_clean() == []


def test_check_worker_reports_torch_over_the_link(remote):
    run = _cli("check-worker", "--worker-command", remote.command, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Worker ssh 127.0.0.1" in run.stdout and f"torch {torch.__version__}" in run.stdout
    assert "CUDA " in run.stdout


@pytest.mark.parametrize("case", ["unreachable", "wrong_path", "no_torch"])
def test_bad_remote_set_ups_give_one_clear_line_and_no_file(remote, torus, tmp_path, case):
    sshd = remote.sshd
    if case == "unreachable":
        command, words = sshd.command("true", port=1), ["could not be reached over SSH",
                                                         "Connection refused"]
    elif case == "wrong_path":
        command = sshd.command(worker_remote_command(remote.core, remote.tmp,
                                                     "/opt/nowhere/bin/python"))
        words = ["exited with code 127 before answering", "/opt/nowhere/bin/python"]
    else:
        command = sshd.command(worker_remote_command(remote.core, remote.tmp, sys.executable,
                                                     prelude="import sys; "
                                                             "sys.modules['torch'] = None"))
        words = ["ssh 127.0.0.1", "cannot import torch", "install torch"]
    out = tmp_path / "out" / "s.ply"
    run = _cli("reconstruct", "--capture", str(torus), "--steps", "2", "--out", str(out),
               "--worker-command", command, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not out.exists() and not [p for p in out.parent.iterdir()]
    assert remote.wait_clean() == []


def test_version_mismatch_over_ssh_names_both_versions(remote):
    from blender_gs_addon import __version__
    from blender_gs_addon.worker.protocol import PROTOCOL

    with pytest.raises(GSError) as err:
        WorkerClient(command=remote.command, version="0.0.0-test", startup_timeout=120)
    text = str(err.value)
    assert f"the worker is version {__version__} (protocol {PROTOCOL})" in text
    assert "the add-on is version 0.0.0-test" in text and "refused the connection" in text


# ---------------------------------------------------------------------- a link that fails
def _noise_dataset(root: Path) -> Path:
    """A data set whose images do not compress (so a slow link shows): 6 views at 192²."""
    from PIL import Image

    folder = write_torus_dataset(root, train=6, test=1, resolution=192)
    rng = np.random.default_rng(0)
    for png in (folder / "train").glob("*.png"):
        Image.fromarray(rng.integers(0, 256, (192, 192, 4), dtype=np.uint8), "RGBA").save(png)
    return folder


def test_slow_link_shows_upload_progress_and_cancels_within_seconds(remote, tmp_path):
    folder = _noise_dataset(tmp_path / "noise")
    bundle = dataset_bundle(folder)
    assert bundle.size > 800_000
    relay = shlex.join([sys.executable, str(ROOT / "tests" / "slow_link.py"), "250000"])
    client = WorkerClient(command=f"{relay} {remote.command}", startup_timeout=120)
    try:
        job = client.submit("reconstruct", {"steps": 2}, upload=bundle,
                            download_dir=tmp_path / "down")
        uploads = []
        deadline = time.monotonic() + 60
        while not uploads or uploads[-1].fraction < 0.3:
            assert time.monotonic() < deadline and not job.done
            uploads += [e for e in job.poll() if e.stage == "upload"]
            time.sleep(0.05)
        assert uploads[-1].fraction < 0.9 and " of " in uploads[-1].message
        start = time.monotonic()
        job.cancel(grace=10.0)
        took = time.monotonic() - start
        assert job.cancelled and client.alive and took < 5.0, took  # cooperative, in seconds
        assert remote.wait_clean() == []  # the partial upload is gone over there
        assert client.run("wait", {"seconds": 0.05}, timeout=30) == {"waited": 0.05}
    finally:
        client.close()


def test_stalled_link_is_detected_by_the_heartbeat_and_the_far_side_cleans_up(remote,
                                                                             torus):
    client = WorkerClient(command=remote.command, startup_timeout=120, heartbeat_timeout=2.0)
    worker_pid = client.info["pid"]
    try:
        job = client.submit("wait", {"seconds": 60})
        time.sleep(0.3)
        os.kill(client.proc.pid, signal.SIGSTOP)  # the local ssh freezes: no byte moves
        start = time.monotonic()
        with pytest.raises(GSError, match=r"\(ssh 127\.0\.0\.1\) has sent nothing for 2\.\d s"):
            job.wait(timeout=30)
        took = time.monotonic() - start
        assert took < 3.0, took
        print(f"heartbeat over ssh: a stalled link was detected after {took:.2f} s")
        assert not client.alive
        assert _gone(worker_pid, timeout=10.0)  # the far side saw its connection close
    finally:
        client.close()


# ------------------------------------------------------------------------------ Blender
@pytest.fixture
def scene(blender, remote, tmp_path, monkeypatch):
    """Blender set to reconstruct through the SSH worker, with its own temporary folder."""
    import tempfile

    from blender_gs_addon.extension import extension_module

    preferences = extension_module("preferences")
    runner = extension_module("scene.model_runner")
    blender_tmp = tmp_path / "blender_tmp"
    blender_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(blender_tmp))
    prefs = preferences.ensure_preferences()
    prefs.execution, prefs.device = "SUBPROCESS", "CPU"
    prefs.worker_command = remote.command
    prefs.worker_python = "/nowhere/python"  # proof that the command, not this, is used
    runner.stop_worker()
    yield runner, blender_tmp
    runner.stop_worker()
    for name in preferences.Settings.__dataclass_fields__:
        setattr(prefs, name, getattr(preferences.DEFAULTS, name))


def _proc_environment(pid: int) -> dict:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        pairs = [item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def _samples_ext():
    from types import SimpleNamespace

    from blender_gs_addon.extension import extension_module

    return SimpleNamespace(samples=extension_module("scene.sample_scenes"))


@pytest.mark.bpy
def test_blender_reconstructs_and_renders_f12_through_ssh(blender, scene, remote,
                                                          monkeypatch):
    from test_reconstruct_operator import scene_state, tiny_capture, toy_scene

    from blender_gs_addon.extension import extension_module

    runner, blender_tmp = scene
    bpy = blender
    toy_scene(_samples_ext(), bpy)
    capture = bpy.context.scene.gs_capture
    capture.views, capture.resolution_x, capture.resolution_y = 6, 48, 48
    before = scene_state(bpy)
    assert bpy.ops.gs.reconstruct(steps=3) == {'FINISHED'}
    result = extension_module("scene.reconstruct_job").last_result()
    obj = bpy.data.objects[result["object"]]
    assert len(obj.data.vertices) == result["count"] > 0 and not result["in_process"]
    assert scene_state(bpy)["objects"] == sorted(before["objects"] + [obj.name])
    # The worker that did it: the copy of the core, its own TMPDIR, reached through ssh.
    client = runner.current_worker()
    pid = client.info["pid"]
    assert client.argv[0] == "ssh" and os.readlink(f"/proc/{pid}/cwd") == str(remote.core)
    assert _proc_environment(pid)["TMPDIR"] == str(remote.tmp)
    assert Path(result["job_dir"]).parent == blender_tmp and not Path(result["job_dir"]).exists()
    assert remote.wait_clean() == []
    assert not [n for n in os.listdir(blender_tmp) if n.startswith(JOB_DIR_PREFIX)]
    assert tiny_capture()  # (the helper's defaults stay what the other tests use)

    _f12_through_the_worker(bpy, monkeypatch)
    assert runner.current_worker() is client and remote.wait_clean() == []


def _f12_through_the_worker(bpy, monkeypatch) -> None:
    """F12 with no torch in Blender's Python equals the in-process frame."""
    from blender_gs_addon import devices
    from blender_gs_addon.extension import extension_module
    from blender_gs_addon.samples import sample_splats

    engine = extension_module("scene.render_engine")
    splat_object = extension_module("scene.splat_object")
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.0, -4.0, 0.0), (np.pi / 2, 0.0, 0.0)
    scene.camera = cam
    scene.render.resolution_x, scene.render.resolution_y = 40, 30
    engine.configure_scene(scene, "exact")
    splat_object.create_splat_object(sample_splats("torus", count=200, sh_degree=1, seed=2),
                                     name="s")
    here = engine.render_exact(bpy.context.evaluated_depsgraph_get())
    assert here["rgba"][..., 3].max() > 0.1
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(devices._TORCH_STATE, "ok", False)
    there = engine.render_exact(bpy.context.evaluated_depsgraph_get())
    monkeypatch.undo()
    np.testing.assert_allclose(there["rgba"], here["rgba"], atol=1e-5)


@pytest.mark.bpy
def test_dropped_connection_mid_reconstruction_leaves_the_scene_as_it_was(blender, scene,
                                                                         remote):
    from test_reconstruct_operator import scene_state, step_until, tiny_capture, toy_scene

    from blender_gs_addon.extension import extension_module

    runner, blender_tmp = scene
    bpy = blender
    objects = toy_scene(_samples_ext(), bpy)
    before = scene_state(bpy)
    job = extension_module("scene.reconstruct_job")
    preferences = extension_module("preferences")
    session = job.ReconstructSession(
        bpy.context, objects=objects, capture=tiny_capture(), steps=500,
        settings=preferences.settings_from(preferences.get_preferences()))
    session.start()
    step_until(session, lambda: session._job is not None and session.message.startswith("fit:"))
    worker_pid = runner.current_worker().info["pid"]
    assert remote.leftovers()  # the worker's copy of the capture, over there
    for pid in remote.sshd.sessions():  # the server side of the connection dies
        os.kill(pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(GSError, match=r"\(ssh 127\.0\.0\.1\) lost its SSH connection"):
        while time.monotonic() - start < 30:
            session.step()
            time.sleep(0.05)
    took = time.monotonic() - start
    assert took < 3.0, took
    print(f"dropped SSH connection reported after {took:.2f} s")
    assert session.stage == "failed" and job.active_session() is None
    assert scene_state(bpy) == before and not session.job_dir.exists()
    assert _gone(worker_pid, timeout=10.0) and remote.wait_clean() == []


@pytest.mark.bpy
def test_check_worker_button_reports_the_remote_torch(blender, scene):
    assert blender.ops.gs.check_worker() == {'FINISHED'}
    text = blender.context.window_manager.gs_reconstruct.check_text
    assert f"Worker ssh 127.0.0.1 (Python {'.'.join(map(str, sys.version_info[:3]))}: " \
           f"torch {torch.__version__}" in text, text
    assert "Reconstruction will run in the worker process" in text
