"""Data sets come from the internet: their image paths must stay inside the data set's folder
(no ``..`` escape, no absolute path, no symlink out) unless the user explicitly allows it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from cli_runner import run_cli
from PIL import Image

from blender_gs_addon.datasets import read_colmap_model, read_transforms
from blender_gs_addon.datasets.camera_views import load_view_image
from blender_gs_addon.errors import GSError

_POSE = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]


def _png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)


def _transforms(folder, *file_paths):
    folder.mkdir(parents=True, exist_ok=True)
    frames = [{"file_path": p, "transform_matrix": _POSE} for p in file_paths]
    meta = {"camera_angle_x": 0.7, "w": 4, "h": 4, "frames": frames}
    (folder / "transforms_train.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture
def layout(tmp_path):
    """tmp/ds (the data set, with train/a.png) and tmp/outside/secret.png next to it."""
    _png(tmp_path / "ds" / "train" / "a.png", 10)
    _png(tmp_path / "outside" / "secret.png", 200)
    return tmp_path


def test_paths_inside_the_folder_read(layout):
    ds = layout / "ds"
    os.symlink(ds / "train" / "a.png", ds / "train" / "alias.png")  # a symlink that stays in
    _transforms(ds, "./train/a", "train/../train/a.png", "train/alias")
    views = read_transforms(ds).views
    assert [v.file_path.name for v in views] == ["a.png", "a.png", "alias.png"]
    assert load_view_image(views[2])[0, 0, 0] == pytest.approx(10 / 255)


@pytest.mark.parametrize("file_path, shown", [
    ("../outside/secret", "../outside/secret"),
    ("./train/../../outside/secret.png", "outside/secret.png"),
    ("train/link", "train/link"),
])
def test_escaping_paths_are_refused_and_named(layout, file_path, shown):
    ds = layout / "ds"
    os.symlink(layout / "outside" / "secret.png", ds / "train" / "link.png")
    _transforms(ds, "./train/a", file_path)
    with pytest.raises(GSError) as info:
        read_transforms(ds)
    message = str(info.value)
    assert "frame 1" in message and shown in message
    assert f"outside the data set folder {ds.resolve()}" in message
    assert f"resolves to {(layout / 'outside' / 'secret').resolve()}" in message
    assert "allow_outside_paths" in message and "--allow-outside-paths" in message
    # explicitly allowed: the frame reads the outside image
    views = read_transforms(ds, allow_outside_paths=True).views
    assert load_view_image(views[1])[0, 0, 0] == pytest.approx(200 / 255)


def test_absolute_paths_are_refused(layout):
    ds = _transforms(layout / "ds", str(layout / "outside" / "secret.png"))
    with pytest.raises(GSError, match=r"frame 0 .*: the image path is absolute; images must "
                                      r"lie inside the data set folder"):
        read_transforms(ds)
    assert read_transforms(ds, allow_outside_paths=True).views[0].file_path.name == "secret.png"


def test_cameras_only_readers_keep_the_camera_without_the_outside_image(layout):
    ds = _transforms(layout / "ds", "./train/a", "../outside/secret")
    messages = []
    views = read_transforms(ds, check_images=False,
                            report=lambda levels, m: messages.append((levels, m))).views
    assert views[0].file_path.name == "a.png" and views[1].file_path is None
    assert np.allclose(views[1].camera_to_world, np.array(_POSE, float))
    (warning,) = [m for lv, m in messages if "WARNING" in lv]
    assert "1 view(s) name an image outside the data set folder" in warning
    with pytest.raises(GSError, match="has no image file"):
        load_view_image(views[1])
    # without w/h the size would have to come from the image: refused, not read
    meta = json.loads((ds / "transforms_train.json").read_text())
    del meta["w"], meta["h"]
    (ds / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(GSError, match="lies outside .* no 'w'/'h'"):
        read_transforms(ds, check_images=False)


def test_reconstruct_on_the_command_line_refuses_before_reading_images(layout):
    ds = _transforms(layout / "ds", "../outside/secret")
    proc = run_cli("reconstruct", "--capture", ds, "--out", layout / "x.ply", "--steps", "1",
                   check=False)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "'../outside/secret'" in proc.stderr and "--allow-outside-paths" in proc.stderr
    assert not (layout / "x.ply").exists()


# ------------------------------------------------------------------------------ COLMAP
def _colmap(root, *names):
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text("1 PINHOLE 4 4 5 5 2 2\n")
    lines = []
    for image_id, name in enumerate(names, start=1):
        lines += [f"{image_id} 1 0 0 0 0 0 4 1 {name}", ""]
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    return sparse


def test_colmap_image_names_stay_in_the_images_folder(tmp_path):
    _png(tmp_path / "scene" / "images" / "a.png")
    _png(tmp_path / "secret.png", 200)
    os.symlink(tmp_path / "secret.png", tmp_path / "scene" / "images" / "link.png")
    for name, pattern in [("../../secret.png", "lies outside"), ("link.png", "lies outside"),
                          (str(tmp_path / "secret.png"), "image name is an absolute path")]:
        root = tmp_path / f"case{len(name)}"
        root.mkdir()
        (root / "images").symlink_to(tmp_path / "scene" / "images")
        sparse = _colmap(root, "a.png", name)
        with pytest.raises(GSError, match=pattern) as info:
            read_colmap_model(sparse)
        assert "image 2" in str(info.value)
        views = read_colmap_model(sparse, allow_outside_paths=True).views
        assert load_view_image(views[1])[0, 0, 0] == pytest.approx(200 / 255)
        views = read_colmap_model(sparse, check_images=False, report=lambda *a: None).views
        assert views[0].file_path is not None and views[1].file_path is None
    # an images folder that is itself a symlink is the folder: its files are inside it
    assert [v.name for v in read_colmap_model(
        _colmap(tmp_path / "ok", "a.png"), images_dir=tmp_path / "case8" / "images").views] \
        == ["a.png"]
