"""Batch reconstruction: inputs, the per-item work without Ray, resumption, the summary, bad
inputs, and one end-to-end run on a local Ray with Ctrl-C."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cli_runner import ROOT
from cli_runner import run_cli as cli
from fakes import write_rendered_dataset

from blender_gs_addon import GSError
from blender_gs_addon.batch import BatchConfig, resolve_inputs, run_batch, run_item
from blender_gs_addon.batch.inputs import parse_input
from blender_gs_addon.batch.summary import ProgressBar
from blender_gs_addon.capture.rigs import sphere_rig, subject_bounds_from_cameras
from blender_gs_addon.datasets.camera_views import ViewDataset
from blender_gs_addon.datasets.colmap import write_colmap_model
from blender_gs_addon.datasets.nerf_synthetic import read_transforms

RES, FOV = 32, 40.0
FAST = BatchConfig(steps=4, views=4, test_views=2, resolution=32, engine="WORKBENCH")


def _truth(seed: int):
    from blender_gs_addon.conventions.frames import splats_file_to_world
    from blender_gs_addon.samples import sample_splats

    truth = splats_file_to_world(sample_splats("torus", count=300, sh_degree=0, seed=seed))
    truth.log_scales += np.float32(math.log(3.0))  # visible at 32 px
    return truth


def make_dataset(root: Path, *, seed: int = 3, train: int = 8, test: int = 2) -> Path:
    """A transforms data set: ``train`` + ``test`` views at 32² of a 300-splat torus."""
    views = sphere_rig(count=train, radius=2.5, fov_deg=FOV, width=RES, height=RES).to_views(
        root / "train", split="train")
    if test:
        held_out = sphere_rig(count=test, radius=2.6, fov_deg=FOV, width=RES, height=RES)
        held_out.names = [f"t{i}" for i in range(test)]
        views += held_out.to_views(root / "test", split="test")
    write_rendered_dataset(root, _truth(seed), views)
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    pytest.importorskip("torch")
    base = tmp_path_factory.mktemp("batch_data")
    make_dataset(base / "alpha", seed=3)
    make_dataset(base / "beta", seed=4)
    (base / "notaset").mkdir()
    (base / "notaset" / "readme.txt").write_text("just a folder")
    return base


def _similarity(scale: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = scale * q, rng.normal(size=3) * 5
    return m


# ----------------------------------------------------------------------------------- inputs
def test_inputs_are_classified_and_named(tmp_path, datasets):
    scene = tmp_path / "garden"
    (scene / "sparse" / "0").mkdir(parents=True)
    for name in ("cameras.txt", "images.txt"):
        (scene / "sparse" / "0" / name).write_text("# empty\n")
    blend = tmp_path / "props.blend"
    blend.write_bytes(b"BLENDER")
    other = tmp_path / "notes.txt"
    other.write_text("x")

    got = {i.source: (i.kind, i.name) for i in map(parse_input, [
        str(datasets / "alpha"), str(datasets / "alpha" / "transforms_train.json"),
        str(scene), str(scene / "sparse" / "0"), str(blend), f"{blend}:Chair,Lamp",
        f"hero={datasets / 'beta'}", str(datasets / "notaset"), str(tmp_path / "missing"),
        str(other)])}
    assert got[str(datasets / "alpha")] == ("transforms", "alpha")
    assert got[str(datasets / "alpha" / "transforms_train.json")] == ("transforms", "alpha")
    assert got[str(scene)] == got[str(scene / "sparse" / "0")] == ("colmap", "garden")
    assert got[str(blend)] == ("blend", "props")
    assert got[f"{blend}:Chair,Lamp"] == ("blend", "props-Chair-Lamp")
    assert got[f"hero={datasets / 'beta'}"] == ("transforms", "hero")
    assert parse_input(f"{blend}:Chair,Lamp").objects == ("Chair", "Lamp")
    assert parse_input(str(scene)).path == scene / "sparse" / "0"
    for bad, words in ((datasets / "notaset", "not a data set"),
                       (tmp_path / "missing", "no such file or folder"),
                       (other, "not a data set or a .blend")):
        item = parse_input(str(bad))
        assert item.kind == "invalid" and words in item.problem and str(bad) in item.problem


def test_duplicate_and_reserved_names_refuse_the_batch(tmp_path, datasets):
    twin = tmp_path / "ALPHA"
    twin.mkdir()
    (twin / "transforms.json").write_text("{}")  # named by its folder; read only when run
    with pytest.raises(GSError, match="two inputs are named 'ALPHA'") as err:
        resolve_inputs([datasets / "alpha", twin])
    assert str(datasets / "alpha") in str(err.value) and "NAME=PATH" in str(err.value)
    resolve_inputs([datasets / "alpha", f"alpha2={twin}"])  # named apart: fine
    with pytest.raises(GSError, match="name the batch uses"):
        resolve_inputs([f"_failed={twin}"])


@pytest.mark.parametrize("case", ["duplicate", "out_is_file", "out_under_file"])
def test_batch_user_errors_are_one_line_and_write_nothing(tmp_path, datasets, case):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = {"duplicate": tmp_path / "out", "out_is_file": blocker,
           "out_under_file": blocker / "out"}[case]
    inputs = ([datasets / "alpha", f"{datasets / 'alpha'}"] if case == "duplicate"
              else [datasets / "alpha"])
    proc = cli("batch", *inputs, "--out", out, "--local", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert {"duplicate": "two inputs are named 'alpha'", "out_is_file": "not a folder",
            "out_under_file": "cannot be created or written"}[case] in lines[0]
    assert not (tmp_path / "out").exists() and blocker.read_text() == "not a folder"


def test_subject_bounds_are_where_the_cameras_look():
    rig = sphere_rig(count=6, radius=3.0, fov_deg=FOV, width=RES, height=RES)
    moved = _similarity(1.0, seed=1) @ rig.camera_to_world  # rigid: still camera poses
    lo, hi = subject_bounds_from_cameras(moved, np.full(6, math.radians(FOV)))
    centre = _similarity(1.0, seed=1)[:3, 3]  # the origin the rig looked at, moved
    assert np.allclose(0.5 * (lo + hi), centre, atol=1e-9)
    assert np.allclose(0.5 * (hi - lo), 0.6 * 3.0 * math.tan(math.radians(FOV / 2)))
    parallel = np.repeat(np.eye(4)[None], 3, axis=0)
    parallel[:, 0, 3] = [0.0, 1.0, 2.0]
    with pytest.raises(GSError, match="parallel"):
        subject_bounds_from_cameras(parallel, np.full(3, 0.7))


# ------------------------------------------------------------------------ the item, no Ray
def test_item_is_published_whole_with_metrics_that_match_its_file(tmp_path, datasets):
    from blender_gs_addon.conventions.frames import splats_file_to_world
    from blender_gs_addon.formats import read_splats
    from blender_gs_addon.reconstruction.evaluate import evaluate_splats

    item = resolve_inputs([datasets / "alpha"])[0]
    metrics = run_item(item, tmp_path, FAST, device="cpu")
    folder = tmp_path / "alpha"
    assert metrics["status"] == "done" and metrics["steps"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha"]  # no staging left
    assert json.loads((folder / "metrics.json").read_text()) == metrics
    splats = read_splats(folder / "splats.ply")
    assert splats.count == metrics["count"]
    again = evaluate_splats(splats_file_to_world(splats), read_transforms(datasets / "alpha"),
                            split="test", device="cpu")
    assert again["psnr"] == pytest.approx(metrics["psnr"], abs=1e-3)  # float32 file round trip
    assert metrics["test_views"] == 2
    log = (folder / "log.txt").read_text()
    assert "[fit" in log and "done:" in log


def test_failed_item_keeps_its_log_and_leaves_no_item_folder(tmp_path, datasets):
    broken = tmp_path / "broken"
    make_dataset(broken, train=3, test=0)
    (broken / "train" / "view_001.png").unlink()
    out = tmp_path / "out"
    metrics = run_item(resolve_inputs([broken])[0], out, FAST, device="cpu")
    assert metrics["status"] == "failed" and "view_001" in metrics["error"]
    assert sorted(p.name for p in out.iterdir()) == ["_failed"]
    kept = json.loads((out / "_failed" / "broken" / "metrics.json").read_text())
    assert kept["error"] == metrics["error"]
    assert metrics["error"] in (out / "_failed" / "broken" / "log.txt").read_text()


def test_interrupted_item_leaves_nothing_behind(tmp_path, datasets, monkeypatch):
    from blender_gs_addon.reconstruction import pipeline

    def interrupted(*, out, **kwargs):
        Path(out).write_bytes(b"half a file")  # as if killed while writing
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "reconstruct", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_item(resolve_inputs([datasets / "alpha"])[0], tmp_path, FAST, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_item_never_replaces_a_folder_the_batch_did_not_write(tmp_path, datasets):
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "mine.txt").write_text("user data")
    result = run_batch([datasets / "alpha"], tmp_path, config=FAST, executor="local",
                       show_progress=False)
    assert result.rows[0]["status"] == "failed"
    assert "is not a finished batch item" in result.rows[0]["error"]
    assert (tmp_path / "alpha" / "mine.txt").read_text() == "user data"


def test_colmap_input_is_normalised_and_every_nth_photo_held_out(tmp_path, datasets):
    """A COLMAP model of the alpha views in a scaled, rotated, shifted world: the batch frames
    it where the cameras look (the torus) and scores it on every 4th photo."""
    source = read_transforms(datasets / "alpha")
    world = _similarity(7.0, seed=2)
    views = []
    for view in source.views:
        c2w = world @ view.camera_to_world
        c2w[:3, :3] /= 7.0  # cameras turn with the world, but do not scale
        target = tmp_path / "garden" / "images" / f"{view.name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(view.file_path.read_bytes())
        views.append(replace(view, camera_to_world=c2w, file_path=target, split="train"))
    write_colmap_model(ViewDataset(views=views), tmp_path / "garden" / "sparse" / "0")

    out = tmp_path / "out"
    metrics = run_item(resolve_inputs([tmp_path / "garden"])[0], out,
                       replace(FAST, colmap_holdout=4), device="cpu")
    assert metrics["status"] == "done", metrics["error"]
    made = read_transforms(out / "garden" / "dataset")  # paths still resolve after the rename
    assert [v.name for v in made.split_views("test")] == ["view_000.png", "view_004.png", "t0.png"]
    assert metrics["test_views"] == 3 and metrics["psnr"] is not None
    # Framing: every optical axis passes through the origin, and the median distance puts a
    # subject of 0.6·D·tan(fov/2) half size into a unit cube: D = 1 / (1.2 tan(fov/2)).
    c2ws = made.camera_to_world_stack()
    origins, dirs = c2ws[:, :3, 3], -c2ws[:, :3, 2]
    miss = origins - np.einsum("vi,vi->v", origins, dirs)[:, None] * dirs
    assert np.abs(miss).max() < 1e-6
    distance = np.median(np.linalg.norm(origins, axis=1))
    assert distance == pytest.approx(1.0 / (1.2 * math.tan(math.radians(FOV / 2))), rel=1e-9)


@pytest.mark.bpy
def test_blend_input_is_captured_in_a_subprocess(tmp_path):
    pytest.importorskip("bpy")
    pytest.importorskip("torch")
    blend = tmp_path / "props.blend"
    subprocess.run([sys.executable, "-c", (
        "import bpy, sys; bpy.ops.wm.read_factory_settings(use_empty=True); "
        "bpy.ops.mesh.primitive_monkey_add(); bpy.ops.mesh.primitive_cube_add(location=(3,0,0));"
        " bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])"), blend],
        check=True, capture_output=True)
    out = tmp_path / "out"
    good, missing = resolve_inputs([f"{blend}:Suzanne", f"{blend}:Nope"])
    metrics = run_item(good, out, FAST, device="cpu")
    assert metrics["status"] == "done", metrics["error"]
    captured = read_transforms(out / "props-Suzanne" / "dataset")
    assert len(captured.split_views("train")) == 4 and len(captured.split_views("test")) == 2
    assert metrics["capture_seconds"] > 0 and metrics["test_views"] == 2
    assert "Read blend" in (out / "props-Suzanne" / "log.txt").read_text()  # Blender's output
    failed = run_item(missing, out, FAST, device="cpu")
    assert failed["status"] == "failed"
    assert "no object named 'Nope'" in failed["error"] and "Suzanne" in failed["error"]


# ------------------------------------------------------------------- batch without Ray
def test_local_batch_summarises_resumes_and_redoes_on_force(tmp_path, datasets):
    inputs = [datasets / "alpha", datasets / "notaset"]
    first = run_batch(inputs, tmp_path, config=FAST, executor="local", show_progress=False)
    assert [r["status"] for r in first.rows] == ["done", "failed"]
    with open(tmp_path / "summary.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    metrics = json.loads((tmp_path / "alpha" / "metrics.json").read_text())
    assert table[0]["name"] == "alpha" and int(table[0]["count"]) == metrics["count"]
    assert float(table[0]["psnr"]) == pytest.approx(metrics["psnr"], abs=1e-4)
    assert table[1]["status"] == "failed" and "not a data set" in table[1]["error"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["finished"] and summary["counts"]["done"] == 1

    stamp = (tmp_path / "alpha" / "splats.ply").stat().st_mtime_ns
    second = run_batch(inputs, tmp_path, config=FAST, executor="local", show_progress=False)
    assert [r["status"] for r in second.rows] == ["skipped", "failed"]
    assert second.rows[0]["count"] == metrics["count"]  # the figures of the earlier run
    assert (tmp_path / "alpha" / "splats.ply").stat().st_mtime_ns == stamp
    third = run_batch(inputs[:1], tmp_path, config=replace(FAST, force=True), executor="local",
                      show_progress=False)
    assert third.rows[0]["status"] == "done"
    assert (tmp_path / "alpha" / "splats.ply").stat().st_mtime_ns != stamp


def test_progress_bar_counts_and_estimates(capsys):
    import io

    stream = io.StringIO()
    bar = ProgressBar(4, stream=stream, width=8)
    bar.update(done=1)
    bar.update(failed=1)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[##......] 1/4 finished") and "ETA" in lines[0]
    assert lines[1].startswith("[####....] 2/4 finished, 1 failed")


def test_ray_is_imported_only_when_a_batch_runs_on_it():
    code = ("import sys, blender_gs_addon.cli, blender_gs_addon.batch, "
            "blender_gs_addon.batch.tasks; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})


# ---------------------------------------------------------------------- end to end on Ray
def _batch_command(*args):
    return [sys.executable, "-m", "blender_gs_addon", "batch", *map(str, args), "--cpus", "2"]


def _wait_for(condition, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _ray_processes() -> set[int]:
    """Processes of a Ray that a batch started (workers, raylet, GCS) on this machine."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"ray::" in text or b"ray-gs-" in text:
            found.add(int(cmdline.parent.name))
    return found


def _interruptible() -> None:
    """In the child before exec: SIGINT as at a terminal. A test run started in the background
    by a non-interactive shell inherits SIGINT ignored, and Python keeps an ignored SIGINT
    ignored, so the driver would never see the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ray_batch_fails_the_bad_input_alone_resumes_and_stops_on_ctrl_c(tmp_path, datasets):
    pytest.importorskip("ray")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = _ray_processes()
    out = tmp_path / "out"
    good = [datasets / "alpha", datasets / "beta"]
    first = subprocess.run(_batch_command(*good, datasets / "notaset", "--out", out,
                                          "--steps", 4), capture_output=True, text=True,
                           cwd=ROOT, env=env, timeout=240)
    assert first.returncode == 1, first.stderr  # one item failed
    rows = {r["name"]: r for r in json.loads((out / "summary.json").read_text())["items"]}
    assert [rows[n]["status"] for n in ("alpha", "beta", "notaset")] == ["done", "done",
                                                                         "failed"]
    assert "not a data set" in rows["notaset"]["error"]
    assert f"error: notaset: {datasets / 'notaset'}: not a data set" in first.stderr
    for name in ("alpha", "beta"):
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert rows[name]["count"] == metrics["count"] and metrics["device"] == "cpu"
        assert rows[name]["psnr"] == pytest.approx(metrics["psnr"])

    # Second run, one more (slow) input: the finished two are skipped, the bad one fails
    # again, and Ctrl-C while the new one fits leaves it neither done nor half-written.
    stamps = {n: (out / n / "splats.ply").stat().st_mtime_ns for n in ("alpha", "beta")}
    # Output to files, not pipes: Ray's own processes may inherit the driver's descriptors
    # and outlive it by seconds (checked below), which must not count as the driver's time.
    stderr_file = tmp_path / "driver.stderr"
    with open(stderr_file, "w") as stderr_out:
        driver = subprocess.Popen(
            _batch_command(*good, datasets / "notaset", f"gamma={datasets / 'alpha'}",
                           "--out", out, "--steps", 100000), stdout=subprocess.DEVNULL,
            stderr=stderr_out, cwd=ROOT, env=env, preexec_fn=_interruptible)
    try:
        logs = lambda: out.glob(".partial-gamma-*/log.txt")  # noqa: E731
        _wait_for(lambda: any("[fit" in p.read_text() for p in logs()), 180,
                  "gamma's fit to start")
        running = json.loads((out / "summary.json").read_text())
        assert [r["status"] for r in running["items"]] == ["skipped", "skipped", "failed",
                                                           "pending"]
        assert not running["finished"]
        driver.send_signal(signal.SIGINT)
        start = time.monotonic()
        driver.wait(timeout=120)
        print(f"the driver ended {time.monotonic() - start:.1f} s after Ctrl-C")
    finally:
        driver.kill()
        driver.wait()
    stderr = stderr_file.read_text()
    assert driver.returncode == 130 and "interrupted" in stderr, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["items"]] == ["skipped", "skipped", "failed",
                                                       "cancelled"]
    assert not summary["finished"]
    assert sorted(p.name for p in out.iterdir()) == [
        ".batch.lock", "_failed", "alpha", "beta", "summary.csv", "summary.json"]
    assert {n: (out / n / "splats.ply").stat().st_mtime_ns for n in stamps} == stamps
    _wait_for(lambda: not (_ray_processes() - before), 30, "Ray's processes to end")


@pytest.mark.slow
def test_ray_tasks_ask_for_the_gpus_and_use_cuda_when_given_one(datasets, tmp_path):
    """A Ray told it has one GPU (this machine has none): tasks ask for it by default and then
    reconstruct on CUDA, which torch refuses here with a clear error; asking for more GPUs than
    Ray on this machine has is refused before anything runs."""
    pytest.importorskip("ray")
    from blender_gs_addon.batch.ray_runner import RayOptions, ray_session

    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a real GPU would run the fit")
    options = RayOptions(num_cpus=1, num_gpus=1)
    with ray_session(options) as ray:
        assert ray.cluster_resources()["GPU"] == 1.0
        result = run_batch([datasets / "alpha"], tmp_path / "out", config=FAST,
                           ray_options=options, show_progress=False)
        row = result.rows[0]
        assert row["status"] == "failed" and "torch sees no CUDA GPU" in row["error"]
        with pytest.raises(GSError, match=r"asks for 2 GPU\(s\) but Ray on this machine has 1"):
            run_batch([datasets / "beta"], tmp_path / "out2", config=FAST,
                      ray_options=replace(options, gpus_per_task=2), show_progress=False)
    assert not ray.is_initialized()
