"""Photos to a worker and the posed data set back (the ``photos`` job, no Blender): its
parameters, the bundle of photos, PhotoJob's checks, keeping the data set, and a real worker
recovering poses of a few overlapping photos with the data set coming back as a folder."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_poses import _texture

from blender_gs_addon.datasets import read_transforms
from blender_gs_addon.errors import GSError
from blender_gs_addon.poses.photo_job import PhotoJob
from blender_gs_addon.poses.recover import install_dataset, restore_folder
from blender_gs_addon.worker.job_params import InvalidParameters, check_job
from blender_gs_addon.worker.transfer import photos_bundle

texture = _texture  # smooth multi-scale colour noise (what SIFT finds features in)


def overlapping_photos(folder: Path, count: int, *, width: int = 128, seed: int = 3) -> Path:
    """``count`` crops of one texture, each 12 px further along: with one SfM thread (the same
    result every run) pycolmap places all 10 of them in about a second."""
    folder.mkdir(parents=True, exist_ok=True)
    scene = texture(width + 12 * count, 96, seed)
    for i in range(count):
        Image.fromarray(scene[:, 12 * i: 12 * i + width]).save(folder / f"p{i:02d}.png")
    return folder


def _files(paths):
    return [{"path": p, "size": 1} for p in paths]


# --------------------------------------------------------------------------- parameters
def test_photos_job_parameters_defaults_and_refusals():
    params = check_job("photos", {}, _files(["photos/a.png"]))
    assert params["source"] == "photos" and params["masks"] is False and params["up"] is None
    assert (params["frames"], params["max_size"], params["test_every"]) == (100, 1600, 8)
    video = check_job("photos", {"source": "photos/clip.mp4", "up": [0, 0, 2], "threads": -1},
                      _files(["photos/clip.mp4"]))
    assert video["up"] == [0.0, 0.0, 2.0]
    bad = [
        ({"source": "photos/../etc"}, ["photos/x"], "'source' must be photos or photos/<video"),
        ({"source": "photos/a/b.mp4"}, ["photos/a/b.mp4"], "'source' must be photos"),
        ({"source": "photos/clip.mp4"}, ["photos/other.mp4"], "must hold photos/clip.mp4"),
        ({"masks": True}, ["photos/a.png"], "must hold the masks under masks/"),
        ({"up": [0, 0, 0]}, ["photos/a.png"], "'up' must be a non-zero [x, y, z]"),
        ({"max_size": 8}, ["photos/a.png"], "'max_size' must be a whole number from 16"),
        ({"threads": 0}, ["photos/a.png"], "'threads' must be a whole number from 1"),
        ({"backend": "lgm"}, ["photos/a.png"], "unknown parameter 'backend'"),
        ({}, ["capture/transforms.json"], "must hold photos or a video under photos/"),
    ]
    for values, paths, words in bad:
        with pytest.raises(InvalidParameters, match=re.escape(words)):
            check_job("photos", values, _files(paths))


# ------------------------------------------------------------------------------ bundle
def test_photos_bundle_of_a_folder_a_video_and_bad_sources(tmp_path):
    photos = overlapping_photos(tmp_path / "shoot", 3)
    (photos / "notes.txt").write_text("not a photo")
    (photos / ".hidden.png").write_bytes(b"x")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((96, 128), 255, np.uint8)).save(masks / "p00.png")
    (masks / "readme.md").write_text("x")
    bundle, source = photos_bundle(photos, masks=masks)
    assert source == "photos"
    assert [f.path for f in bundle.files] == ["photos/p00.png", "photos/p01.png",
                                              "photos/p02.png", "masks/p00.png"]
    assert bundle.size == sum(os.path.getsize(f.source) for f in bundle.files)

    video = tmp_path / "clip.MP4"
    video.write_bytes(b"\x00" * 100)
    bundle, source = photos_bundle(video)
    assert source == "photos/clip.MP4" and [f.path for f in bundle.files] == [source]

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    for bad, words in [(tmp_path / "missing", "no such folder or video file"),
                       (tmp_path / "docs", "no photos in this folder"),
                       (tmp_path / "docs" / "a.txt", "neither a folder of photos nor a video")]:
        with pytest.raises(GSError, match=words):
            photos_bundle(bad)
    with pytest.raises(GSError, match="masks are for a folder of photos"):
        photos_bundle(video, masks=masks)


# ----------------------------------------------------------------------------- PhotoJob
def test_photo_job_names_its_data_set_folder_and_checks_before_work(tmp_path):
    photos = overlapping_photos(tmp_path / "shoot", 3)
    job = PhotoJob(photos=str(photos))
    assert job.name == "shoot" and job.dataset_folder == tmp_path / "shoot_poses"
    video = tmp_path / "walk.mov"
    video.write_bytes(b"x")
    assert PhotoJob(photos=str(video)).dataset_folder == tmp_path / "walk_poses"
    job.check()  # fine: nothing there yet

    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(GSError, match="not empty and is not a pose data set"):
        PhotoJob(photos=str(photos), dataset=str(foreign)).check()
    with pytest.raises(GSError, match="cannot be written into the photos' own folder"):
        PhotoJob(photos=str(photos), dataset=str(photos)).check()
    with pytest.raises(GSError, match="no such masks folder"):
        PhotoJob(photos=str(photos), masks=str(tmp_path / "nomasks")).check()
    with pytest.raises(GSError, match="choose a folder of photos"):
        PhotoJob(photos="").check()
    blocked = tmp_path / "file"
    blocked.write_text("x")  # a file where a folder would have to be made
    with pytest.raises(GSError, match="cannot write the data set there"):
        PhotoJob(photos=str(photos), dataset=str(blocked / "poses")).check()


def _pose_dataset(folder: Path, marker: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps({"placed": 3, "marker": marker}))
    (folder / "images").mkdir()
    (folder / "images" / "a.png").write_bytes(marker.encode())
    return folder


def test_install_dataset_replaces_an_earlier_one_keeping_it_until_told(tmp_path):
    target = _pose_dataset(tmp_path / "poses", "old")
    new = _pose_dataset(tmp_path / "download" / "dataset", "new")
    old = install_dataset(new, target)
    assert json.loads((target / "report.json").read_text())["marker"] == "new"
    assert old is not None and json.loads((old / "report.json").read_text())["marker"] == "old"
    restore_folder(target, old)  # the caller's import failed: the earlier one comes back
    assert json.loads((target / "report.json").read_text())["marker"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["download", "poses"]

    (target / "report.json").write_text("{}")  # not ours any more: never replaced
    with pytest.raises(GSError, match="not empty and is not a pose data set"):
        install_dataset(new, target)
    assert (target / "images" / "a.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["download", "poses"]


def test_install_moves_the_splats_in_and_names_this_machines_paths(tmp_path):
    result = tmp_path / "result"
    _pose_dataset(result / "dataset", "x")
    (result / "splats.ply").write_bytes(b"ply")
    job = PhotoJob(photos=str(overlapping_photos(tmp_path / "shoot", 3)))
    report, old = job.install(result)
    assert old is None
    target = tmp_path / "shoot_poses"
    assert (target / "splats.ply").read_bytes() == b"ply"
    saved = json.loads((target / "report.json").read_text())
    assert saved == report and saved["marker"] == "x"
    assert (saved["source"], saved["dataset"], saved["splats"]) == (
        str(tmp_path / "shoot"), str(target), str(target / "splats.ply"))
    with pytest.raises(GSError, match="returned no data set or no splats"):
        job.install(tmp_path / "empty")


# ------------------------------------------------------------------------ a real worker
@pytest.fixture(scope="module")
def worker():
    pytest.importorskip("pycolmap")
    pytest.importorskip("torch")
    from blender_gs_addon.worker.client import WorkerClient

    client = WorkerClient()
    yield client
    client.close()


def test_worker_recovers_poses_and_sends_the_data_set_back(worker, tmp_path):
    photos = overlapping_photos(tmp_path / "shoot", 10)
    job = PhotoJob(photos=str(photos), threads=1)
    params, bundle = job.worker_job()
    assert worker.info["pycolmap"] and params["threads"] == 1
    events = []
    out = worker.run("photos", {**params, "steps": 2, "device": "cpu"}, upload=bundle,
                     download_dir=tmp_path / "result", on_event=events.append, timeout=120)
    assert out["dataset"] == str(tmp_path / "result" / "dataset")
    assert out["splats"] == str(tmp_path / "result" / "splats.ply")
    dataset = read_transforms(out["dataset"])  # whole: transforms, images
    assert len(dataset.views) == 10 and len(dataset.split_views("test")) == 1
    for name in ("points3d.ply", "report.json", "sparse/0/cameras.bin", "images/p00.png"):
        assert (Path(out["dataset"]) / name).is_file(), name
    report = out["poses"]
    assert report["placed"] == report["images"] == 10 and report["left_out"] == []
    assert report["source"] == str(photos)  # the sender's name, not the worker's folder
    assert out["test_views"] == 1 and out["psnr"] is not None and out["count"] > 0
    stages = [e.stage for e in events if e.kind == "progress"]
    for stage in ("upload", "photos", "extract", "match", "map", "dataset", "fit", "download"):
        assert stage in stages, stage


def test_worker_errors_name_the_senders_paths(worker, tmp_path):
    one = tmp_path / "single"
    one.mkdir()
    Image.fromarray(texture(64, 48, 0)).save(one / "only.png")
    params, bundle = PhotoJob(photos=str(one)).worker_job()
    with pytest.raises(GSError) as err:
        worker.run("photos", params, upload=bundle, download_dir=tmp_path / "r1", timeout=60)
    assert str(err.value).startswith(f"{one}: only one photo (only.png)")
    assert "gs_reconstruct_" not in str(err.value)

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing after it" * 3)
    params, bundle = PhotoJob(photos=str(video)).worker_job()
    with pytest.raises(GSError, match=re.escape(f"{video}: the video decoder cannot read")):
        worker.run("photos", params, upload=bundle, download_dir=tmp_path / "r2", timeout=60)
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
    assert worker.run("wait", {"seconds": 0.05}, timeout=20) == {"waited": 0.05}
