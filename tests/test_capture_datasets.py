"""Data sets for capture and reconstruction: transforms.json, COLMAP, rigs, Blender projection."""

import json
import math
import struct

import numpy as np
import pytest
from PIL import Image

from blender_gs_addon.capture.rigs import lgm_rig, normalisation_transform, orbit_rig, sphere_rig
from blender_gs_addon.conventions.frames import camera_to_world_from_matrix_world
from blender_gs_addon.conventions.intrinsics import (
    blender_camera_from_intrinsics,
    intrinsics_from_blender_camera,
)
from blender_gs_addon.conventions.lgm_rig import LGM_FOVY_DEG
from blender_gs_addon.datasets import (
    CameraView,
    ViewDataset,
    composite_on_background,
    load_view_image,
    read_colmap_model,
    read_transforms,
    write_colmap_model,
    write_transforms,
)
from blender_gs_addon.datasets.colmap import (
    ColmapCamera,
    ColmapImage,
    read_colmap_cameras,
    write_colmap_cameras,
    write_colmap_images,
)
from blender_gs_addon.errors import GSError


def _png(path, width, height, *, mode="RGBA", seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGBA": 4, "RGB": 3}[mode]
    data = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    Image.fromarray(data, mode).save(path)
    return data


def _random_pose(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = rng.normal(size=3) * 3
    return m


def _looks_at_origin(c2w):
    """cosine between each camera's −Z axis and the direction to the origin: [N]."""
    forward = -c2w[:, :3, 2]
    to_origin = -c2w[:, :3, 3] / np.linalg.norm(c2w[:, :3, 3], axis=1, keepdims=True)
    return np.sum(forward * to_origin, axis=1)


# ------------------------------------------------------------------------------ transforms.json
def _sample_dataset(tmp_path, rng):
    views = []
    for split, count in (("train", 3), ("val", 1), ("test", 2)):
        for i in range(count):
            w, h = (12, 8) if split != "test" else (10, 10)
            fx = 11.5 if split != "test" else 9.0 + i  # test views differ per frame
            path = tmp_path / "ds" / split / f"v_{i}.png"
            _png(path, w, h, seed=i)
            views.append(
                CameraView(
                    name=f"{split}_{i}",
                    file_path=path,
                    width=w,
                    height=h,
                    fx=fx,
                    fy=fx * 1.01,
                    cx=w / 2 + 0.25,
                    cy=h / 2 - 0.125,
                    camera_to_world=_random_pose(rng),
                    split=split,
                )
            )
    norm = normalisation_transform([-1, -2, 0], [3, 1, 0.5])
    return ViewDataset(views=views, normalisation=norm, background=(1.0, 1.0, 1.0))


def test_transforms_round_trip_exact(tmp_path, rng):
    ds = _sample_dataset(tmp_path, rng)
    warnings = []
    written = write_transforms(ds, tmp_path / "ds", report=lambda lv, m: warnings.append(m))
    assert sorted(p.name for p in written) == [
        "transforms_test.json",
        "transforms_train.json",
        "transforms_val.json",
    ]
    # test views have per-frame intrinsics and all have off-centre principal points
    assert any("different intrinsics" in w for w in warnings)

    back = read_transforms(tmp_path / "ds")
    assert len(back.views) == len(ds.views)
    assert np.array_equal(back.normalisation, ds.normalisation)
    assert back.background == (1.0, 1.0, 1.0)
    by_name = {v.name: v for v in back.views}
    for v in ds.views:
        b = by_name[v.name]
        assert b.split == v.split
        assert b.file_path.resolve() == v.file_path.resolve()
        assert (b.width, b.height) == (v.width, v.height)
        assert (b.fx, b.fy, b.cx, b.cy) == (v.fx, v.fy, v.cx, v.cy)
        assert np.array_equal(b.camera_to_world, v.camera_to_world)


def test_transforms_written_for_inria_style_readers(tmp_path, rng):
    ds = _sample_dataset(tmp_path, rng)
    write_transforms(ds, tmp_path / "ds")
    meta = json.loads((tmp_path / "ds" / "transforms_train.json").read_text())
    frame = meta["frames"][0]
    # NeRF-synthetic convention: no extension, readers append ".png"
    assert frame["file_path"] == "./train/v_0"
    assert (tmp_path / "ds" / (frame["file_path"] + ".png")).is_file()
    v = ds.split_views("train")[0]
    assert meta["camera_angle_x"] == pytest.approx(2 * math.atan(0.5 * v.width / v.fx))
    assert (meta["fl_x"], meta["w"], meta["h"]) == (v.fx, 12, 8)
    # a data set without a test split still gets an (empty) transforms_test.json
    only_train = ViewDataset(views=ds.split_views("train"))
    write_transforms(only_train, tmp_path / "ds2")
    test_meta = json.loads((tmp_path / "ds2" / "transforms_test.json").read_text())
    assert test_meta["frames"] == []
    assert not (tmp_path / "ds2" / "transforms_val.json").exists()
    with pytest.raises(GSError, match="no views"):
        write_transforms(ViewDataset(views=[]), tmp_path / "ds3")


def test_nerf_synthetic_camera_angle_only(tmp_path):
    # The original data set: camera_angle_x only, no size, file_path without extension.
    _png(tmp_path / "train" / "r_0.png", 16, 12)
    c2w = np.eye(4)
    c2w[:3, 3] = [0, -4, 0]
    meta = {
        "camera_angle_x": 0.6911112070083618,
        "frames": [{"file_path": "./train/r_0", "transform_matrix": c2w.tolist()}],
    }
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    ds = read_transforms(tmp_path)
    (v,) = ds.views
    assert (v.width, v.height) == (16, 12)
    assert v.fx == pytest.approx(8.0 / math.tan(0.5 * 0.6911112070083618))
    assert v.fy == v.fx and (v.cx, v.cy) == (8.0, 6.0)
    assert v.name == "train/r_0" and v.split == "train"
    assert np.array_equal(ds.normalisation, np.eye(4))


def test_nerfstudio_transforms_json(tmp_path):
    for i in range(3):
        _png(tmp_path / "images" / f"frame_{i:05d}.png", 20, 10, seed=i)
    frames = []
    for i in range(3):
        c2w = np.eye(4)
        c2w[:3, 3] = [i, 0, 5]
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": c2w.tolist()})
    frames[2].update({"fl_x": 30.0, "fl_y": 31.0, "cx": 9.0, "cy": 4.5})  # per-frame wins
    meta = {
        "camera_model": "OPENCV",
        "fl_x": 25.0,
        "fl_y": 26.0,
        "cx": 10.5,
        "cy": 5.25,
        "w": 20,
        "h": 10,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "applied_transform": [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]],
        "frames": frames,
    }
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    ds = read_transforms(tmp_path)
    assert [v.name for v in ds.views] == [f"images/frame_{i:05d}" for i in range(3)]
    assert all(v.split == "train" for v in ds.views)
    assert (ds.views[0].fx, ds.views[0].fy, ds.views[0].cx, ds.views[0].cy) == (25, 26, 10.5, 5.25)
    assert (ds.views[2].fx, ds.views[2].fy, ds.views[2].cx, ds.views[2].cy) == (30, 31, 9, 4.5)
    assert np.array_equal(ds.views[1].position, [1, 0, 5])
    assert ds.views[1].file_path == tmp_path / "images" / "frame_00001.png"
    applied = ds.metadata["applied_transform"]
    assert applied.shape == (4, 4) and np.array_equal(applied[3], [0, 0, 0, 1])
    # the same file read directly, SIMPLE_PINHOLE/PINHOLE model names accepted too
    for model in ("PINHOLE", "SIMPLE_PINHOLE"):
        meta["camera_model"] = model
        (tmp_path / "transforms.json").write_text(json.dumps(meta))
        assert len(read_transforms(tmp_path / "transforms.json").views) == 3


def _nerfstudio_file(tmp_path, **frame_changes):
    _png(tmp_path / "a.png", 4, 4)
    _png(tmp_path / "b.png", 4, 4)
    frames = [
        {"file_path": "a.png", "transform_matrix": np.eye(4).tolist()},
        {"file_path": "b.png", "transform_matrix": np.eye(4).tolist()},
    ]
    frames[1].update(frame_changes)
    meta = {"fl_x": 5.0, "fl_y": 5.0, "w": 4, "h": 4, "frames": frames}
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps(meta))  # Python writes NaN as a bare NaN, which it also reads
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"k1": 0.1}, "distortion k1"),
        ({"camera_model": "OPENCV", "p2": -0.01}, "distortion p2"),
        ({"camera_model": "OPENCV_FISHEYE"}, "camera model 'OPENCV_FISHEYE'"),
        ({"camera_model": "EQUIRECTANGULAR"}, "not supported"),
        ({"transform_matrix": [[1, 0, 0, float("nan")]] + np.eye(4)[1:].tolist()}, "non-finite"),
        ({"transform_matrix": (np.eye(4) * 2).tolist()}, "last row"),
        ({"transform_matrix": np.diag([2.0, 1, 1, 1]).tolist()}, "scaled, sheared"),
        ({"file_path": "missing.png"}, "missing"),
        ({"fl_x": -1.0}, "focal lengths"),
    ],
)
def test_transforms_bad_frame_named(tmp_path, change, message):
    path = _nerfstudio_file(tmp_path, **change)
    with pytest.raises(GSError, match=message) as err:
        read_transforms(path)
    assert "frame 1" in str(err.value) and "transforms.json" in str(err.value)


def test_transforms_not_a_data_set(tmp_path):
    with pytest.raises(GSError, match="no transforms"):
        read_transforms(tmp_path)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(GSError, match="cannot read JSON"):
        read_transforms(tmp_path)
    (tmp_path / "transforms.json").write_text('{"camera_angle_x": 1}')
    with pytest.raises(GSError, match="no 'frames'"):
        read_transforms(tmp_path)


def test_missing_image_allowed_when_not_checked(tmp_path):
    path = _nerfstudio_file(tmp_path, file_path="later.png")
    ds = read_transforms(path, check_images=False)
    assert ds.views[1].file_path == tmp_path / "later.png"
    with pytest.raises(GSError, match=r"view 'later'.*missing"):
        load_view_image(ds.views[1])


# -------------------------------------------------------------------------------------- COLMAP
# Two cameras looking at the origin with world +Z up, poses computed by hand:
#  A at (0, −4, 0): OpenCV axes right (1,0,0), down (0,0,−1), forward (0,1,0) → R = Rx(+90°),
#    q = (√½, √½, 0, 0), t = −R·C = (0, 0, 4).
#  B at (3, 0, 0): right (0,1,0), down (0,0,−1), forward (−1,0,0) → R rows are those axes,
#    trace 0 → q = (½, ½, ½, −½), t = −R·C = (0, 0, 3).
_H = math.sqrt(0.5)
_HAND_POSES = {
    "a.png": ((_H, _H, 0.0, 0.0), (0.0, 0.0, 4.0), (0.0, -4.0, 0.0)),
    "b.png": ((0.5, 0.5, 0.5, -0.5), (0.0, 0.0, 3.0), (3.0, 0.0, 0.0)),
}
_CAMERAS_TXT = """# Camera list with one line of data per camera:
#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]
1 SIMPLE_PINHOLE 20 10 15.5 10 5
2 PINHOLE 20 10 15.5 16.5 9.5 5.5
3 OPENCV 20 10 14 15 10 5 0 0 0 0
"""


def _hand_model(root, *, camera_ids=(1, 2)):
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    for name in _HAND_POSES:
        _png(root / "images" / name, 20, 10)
    (sparse / "cameras.txt").write_text(_CAMERAS_TXT)
    lines = ["# Image list with two lines of data per image:"]
    for image_id, (name, (q, t, _)) in enumerate(_HAND_POSES.items(), start=1):
        pose = " ".join(str(v) for v in (*q, *t))
        lines.append(f"{image_id} {pose} {camera_ids[image_id - 1]} {name}")
        lines.append("" if image_id == 1 else "1.5 2.5 -1 3.5 4.5 7")
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    return sparse


def _check_hand_poses(ds):
    assert [v.name for v in ds.views] == list(_HAND_POSES)
    for v in ds.views:
        centre = np.array(_HAND_POSES[v.name][2])
        assert np.allclose(v.position, centre, atol=1e-12)
        assert np.allclose(-v.camera_to_world[:3, 2], -centre / np.linalg.norm(centre), atol=1e-12)
        assert np.allclose(v.camera_to_world[:3, 1], [0, 0, 1], atol=1e-12)  # OpenGL +Y is up
        assert v.project([[0.0, 0.0, 0.0]]) == pytest.approx(np.array([[v.cx, v.cy]]))


def test_colmap_text_hand_computed(tmp_path):
    sparse = _hand_model(tmp_path)
    ds = read_colmap_model(sparse)
    _check_hand_poses(ds)
    a, b = ds.views
    assert a.file_path == tmp_path / "images" / "a.png"
    assert (a.fx, a.fy, a.cx, a.cy) == (15.5, 15.5, 10, 5)  # SIMPLE_PINHOLE
    assert (b.fx, b.fy, b.cx, b.cy) == (15.5, 16.5, 9.5, 5.5)  # PINHOLE
    # a world point above the origin appears above the image centre (rows go down)
    assert a.project([[0, 0, 1.0]])[0, 1] < a.cy


def test_colmap_binary_hand_packed(tmp_path):
    # Packed here from COLMAP's documented layout, independently of the writer.
    sparse = tmp_path / "sparse" / "0"
    sparse.mkdir(parents=True)
    for name in _HAND_POSES:
        _png(tmp_path / "images" / name, 20, 10)
    cams = struct.pack("<Q", 2)
    cams += struct.pack("<iiQQ", 1, 1, 20, 10) + struct.pack("<4d", 15.5, 16.5, 9.5, 5.5)
    cams += struct.pack("<iiQQ", 3, 4, 20, 10) + struct.pack("<8d", 14, 15, 10, 5, 0, 0, 0, 0)
    (sparse / "cameras.bin").write_bytes(cams)
    imgs = struct.pack("<Q", 2)
    for image_id, (name, (q, t, _)) in enumerate(_HAND_POSES.items(), start=1):
        imgs += struct.pack("<i4d3di", image_id, *q, *t, (1, 3)[image_id - 1])
        imgs += (
            name.encode() + b"\0" + struct.pack("<Q", 2) + struct.pack("<ddqddq", 1, 2, -1, 3, 4, 5)
        )
    (sparse / "images.bin").write_bytes(imgs)
    ds = read_colmap_model(sparse)
    _check_hand_poses(ds)
    a, b = ds.views
    assert (a.fx, a.fy, a.cx, a.cy) == (15.5, 16.5, 9.5, 5.5)
    assert (b.fx, b.fy, b.cx, b.cy) == (14, 15, 10, 5)  # OPENCV with zero distortion


@pytest.mark.parametrize("binary", [False, True])
def test_colmap_round_trip(tmp_path, binary):
    rig = orbit_rig(
        azimuth_count=5, elevations_deg=[-20, 35], radius=2.5, fov_deg=40, width=32, height=24
    )
    views = rig.to_views(tmp_path / "images")
    views[3] = CameraView(
        name="odd",
        file_path=tmp_path / "images" / "sub" / "odd.png",
        width=30,
        height=20,
        fx=17.0,
        fy=18.0,
        cx=14.0,
        cy=11.0,
        camera_to_world=views[3].camera_to_world,
    )
    for v in views:
        _png(v.file_path, v.width, v.height)
    ds = ViewDataset(views=views)
    paths = write_colmap_model(
        ds, tmp_path / "sparse", binary=binary, images_dir=tmp_path / "images"
    )
    assert [p.suffix for p in paths] == [".bin" if binary else ".txt"] * 3
    assert len(read_colmap_cameras(paths[0])) == 2  # one camera per distinct intrinsics
    back = read_colmap_model(tmp_path / "sparse")
    assert [v.name for v in back.views] == [
        "sub/odd.png" if v.name == "odd" else f"{v.name}.png" for v in views
    ]
    for v, b in zip(views, back.views):
        assert b.file_path == v.file_path
        assert (b.width, b.height, b.fx, b.fy, b.cx, b.cy) == (
            v.width,
            v.height,
            v.fx,
            v.fy,
            v.cx,
            v.cy,
        )
        assert np.allclose(b.camera_to_world, v.camera_to_world, atol=1e-12)


def _write_model(root, cameras, images, *, binary):
    sparse = root / "sparse"
    sparse.mkdir(parents=True, exist_ok=True)
    ext = ".bin" if binary else ".txt"
    write_colmap_cameras(sparse / f"cameras{ext}", cameras)
    write_colmap_images(sparse / f"images{ext}", images)
    return sparse


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize(
    "model, params, message",
    [
        ("OPENCV", (10, 10, 5, 5, 0.01, 0, 0, 0), "non-zero distortion"),
        ("SIMPLE_RADIAL", (10, 5, 5, -0.2), "non-zero distortion"),
        ("OPENCV_FISHEYE", (10, 10, 5, 5, 0, 0, 0, 0), "'OPENCV_FISHEYE' is not supported"),
    ],
)
def test_colmap_refused_cameras_name_the_image(tmp_path, binary, model, params, message):
    _png(tmp_path / "images" / "x.png", 10, 10)
    cameras = [
        ColmapCamera(1, "PINHOLE", 10, 10, (10, 10, 5, 5)),
        ColmapCamera(7, model, 10, 10, params),
    ]
    images = [
        ColmapImage(1, np.array([1.0, 0, 0, 0]), np.zeros(3), 1, "x.png"),
        ColmapImage(2, np.array([1.0, 0, 0, 0]), np.zeros(3), 7, "x.png"),
    ]
    sparse = _write_model(tmp_path, cameras, images, binary=binary)
    with pytest.raises(GSError, match=message) as err:
        read_colmap_model(sparse, images_dir=tmp_path / "images")
    assert "image 2 ('x.png')" in str(err.value) and "camera 7" in str(err.value)


def test_colmap_unknown_model_names_the_image(tmp_path):
    _png(tmp_path / "images" / "x.png", 10, 10)
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    (sparse / "cameras.txt").write_text("4 MYSTERY 10 10 1 2 3\n")
    (sparse / "images.txt").write_text("9 1 0 0 0 0 0 0 4 x.png\n\n")
    with pytest.raises(GSError, match=r"image 9 \('x.png'\).*camera 4.*'MYSTERY'"):
        read_colmap_model(sparse, images_dir=tmp_path / "images")
    # binary: an unknown model id cannot even be skipped; the error still names its users
    (sparse / "cameras.txt").unlink()
    (sparse / "images.txt").unlink()
    (sparse / "cameras.bin").write_bytes(
        struct.pack("<Q", 1) + struct.pack("<iiQQ", 4, 99, 10, 10) + struct.pack("<3d", 1, 2, 3)
    )
    write_colmap_images(
        sparse / "images.bin", [ColmapImage(9, np.array([1.0, 0, 0, 0]), np.zeros(3), 4, "x.png")]
    )
    with pytest.raises(
        GSError, match=r"camera 4 \(used by 'x.png'\) has unknown camera model id 99"
    ):
        read_colmap_model(sparse, images_dir=tmp_path / "images")


@pytest.mark.parametrize("binary", [False, True])
def test_colmap_bad_images(tmp_path, binary):
    _png(tmp_path / "images" / "x.png", 10, 10)
    cams = [ColmapCamera(1, "PINHOLE", 10, 10, (10, 10, 5, 5))]
    nan_pose = ColmapImage(3, np.array([1.0, 0, 0, 0]), np.array([0, float("nan"), 0]), 1, "x.png")
    sparse = _write_model(tmp_path, cams, [nan_pose], binary=binary)
    with pytest.raises(GSError, match=r"image 3 \('x.png'\): pose has non-finite"):
        read_colmap_model(sparse, images_dir=tmp_path / "images")
    zero_q = ColmapImage(3, np.zeros(4), np.zeros(3), 1, "x.png")
    sparse = _write_model(tmp_path, cams, [zero_q], binary=binary)
    with pytest.raises(GSError, match=r"image 3 \('x.png'\): rotation quaternion is zero"):
        read_colmap_model(sparse, images_dir=tmp_path / "images")
    missing = ColmapImage(5, np.array([1.0, 0, 0, 0]), np.zeros(3), 1, "gone.png")
    sparse = _write_model(tmp_path, cams, [missing], binary=binary)
    with pytest.raises(GSError, match=r"image 5 \('gone.png'\): image file .* is missing"):
        read_colmap_model(sparse, images_dir=tmp_path / "images")
    no_cam = ColmapImage(6, np.array([1.0, 0, 0, 0]), np.zeros(3), 2, "x.png")
    sparse = _write_model(tmp_path, cams, [no_cam], binary=binary)
    with pytest.raises(GSError, match=r"image 6 .*camera 2, which the cameras file lacks"):
        read_colmap_model(sparse, images_dir=tmp_path / "images")


def test_colmap_binary_lying_or_cut_short(tmp_path):
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    write_colmap_cameras(sparse / "cameras.bin", [ColmapCamera(1, "PINHOLE", 10, 10, (1, 1, 5, 5))])
    (sparse / "images.bin").write_bytes(struct.pack("<Q", 10**15))
    with pytest.raises(GSError, match="header says 1000000000000000 images"):
        read_colmap_model(sparse)
    one = struct.pack("<Q", 1) + struct.pack("<i4d3di", 1, 1, 0, 0, 0, 0, 0, 0, 1) + b"x.png\0"
    (sparse / "images.bin").write_bytes(one + struct.pack("<Q", 10**12))
    with pytest.raises(GSError, match="claims 1000000000000 2D points"):
        read_colmap_model(sparse)
    (sparse / "images.bin").write_bytes(one[:-3])
    with pytest.raises(GSError, match="header says 1 images but the file is too short"):
        read_colmap_model(sparse)
    (sparse / "images.bin").write_bytes(one[:-1] + b"abcdefghijkl")
    with pytest.raises(GSError, match="image 1 has no terminated name"):
        read_colmap_model(sparse)
    (sparse / "cameras.bin").write_bytes(struct.pack("<Q", 1) + struct.pack("<iiQQ", 1, 1, 10, 10))
    with pytest.raises(GSError, match="too short|cut short"):
        read_colmap_cameras(sparse / "cameras.bin")


# ---------------------------------------------------------------------------------------- rigs
def _check_rig_geometry(rig, radius):
    c2w = rig.camera_to_world
    assert np.isfinite(c2w).all()
    rot = c2w[:, :3, :3]
    assert np.allclose(rot.transpose(0, 2, 1) @ rot, np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rot), 1.0)
    assert np.allclose(_looks_at_origin(c2w), 1.0, atol=1e-12)
    assert np.allclose(np.linalg.norm(rig.positions, axis=1), radius)
    assert np.allclose(c2w[:, 2, 0], 0.0, atol=1e-12)  # right vector horizontal (no roll)
    assert (c2w[:, 2, 1] >= -1e-12).all()  # camera up never points down


def test_orbit_rig():
    rig = orbit_rig(
        azimuth_count=8,
        elevations_deg=[-30, 0, 45, 90],
        radius=2.0,
        fov_deg=50,
        width=64,
        height=48,
    )
    assert len(rig) == 32 and len(set(rig.names)) == 32
    _check_rig_geometry(rig, 2.0)
    assert np.array_equal(rig.elevation_deg, np.repeat([-30.0, 0, 45, 90], 8))
    assert np.allclose(rig.azimuth_deg[:8], np.arange(8) * 45.0)
    el = np.degrees(np.arcsin(rig.positions[:, 2] / 2.0))
    assert np.allclose(el, rig.elevation_deg)
    # azimuth 90 is on +X, 180 on +Y (ring at elevation 0 starts at index 8)
    assert np.allclose(rig.positions[8 + 2], [2, 0, 0]) and np.allclose(
        rig.positions[8 + 4], [0, 2, 0]
    )
    # the larger side (width) spans fov_deg
    assert 2 * math.degrees(math.atan(0.5 * 64 / rig.fx)) == pytest.approx(50)
    assert (rig.cx, rig.cy, rig.fx) == (32.0, 24.0, rig.fy)
    # the pole camera keeps its ring's azimuth for its right vector
    assert np.allclose(rig.camera_to_world[24 + 2, :3, 0], [0, 1, 0])
    with pytest.raises(GSError, match="elevations"):
        orbit_rig(azimuth_count=4, elevations_deg=[95], radius=1, fov_deg=40)
    with pytest.raises(GSError, match="radius"):
        orbit_rig(azimuth_count=4, radius=0, fov_deg=40)


def test_sphere_rig_spread():
    n = 60
    rig = sphere_rig(count=n, radius=3.0, fov_deg=40)
    assert len(rig) == n
    _check_rig_geometry(rig, 3.0)
    d = rig.positions / 3.0
    cos = np.clip(d @ d.T, -1, 1)
    np.fill_diagonal(cos, -1)
    min_angle = np.degrees(np.arccos(cos.max()))
    mean_spacing = np.degrees(math.sqrt(4 * math.pi / n))  # side of an equal-area square cell
    assert min_angle > 0.6 * mean_spacing, (min_angle, mean_spacing)
    assert abs(d.mean(axis=0)).max() < 0.05  # balanced over the whole sphere
    cap = sphere_rig(count=30, radius=1.0, fov_deg=40, min_elevation_deg=0.0)
    assert (cap.positions[:, 2] > 0).all()
    _check_rig_geometry(cap, 1.0)


def _kiui_style_c2w_blender(azimuth_deg, radius):
    """LGM's camera as its training code builds it (OpenGL y-up world), moved to Blender's world."""
    a, e = math.radians(azimuth_deg), 0.0
    campos = np.array(
        [
            radius * math.cos(e) * math.sin(a),
            -radius * math.sin(e),
            radius * math.cos(e) * math.cos(a),
        ]
    )
    z = campos / np.linalg.norm(campos)  # OpenGL: camera +Z points away from the target
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    gl = np.eye(4)
    gl[:3, 0], gl[:3, 1], gl[:3, 2], gl[:3, 3] = x, y, z, campos
    blender_from_gl = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]])
    return blender_from_gl @ gl


def test_lgm_rig_exact():
    rig = lgm_rig(resolution=256)
    assert len(rig) == 4
    expected = np.array([[0, -1.5, 0], [1.5, 0, 0], [0, 1.5, 0], [-1.5, 0, 0]])
    assert np.array_equal(rig.positions, expected)  # exact, in LGM's order
    _check_rig_geometry(rig, 1.5)
    assert rig.width == rig.height == 256 and rig.fx == rig.fy and (rig.cx, rig.cy) == (128, 128)
    assert 2 * math.degrees(math.atan(128 / rig.fy)) == pytest.approx(LGM_FOVY_DEG, abs=1e-12)
    assert rig.background == (1.0, 1.0, 1.0)
    for i, az in enumerate((0, 90, 180, 270)):
        assert np.allclose(rig.camera_to_world[i], _kiui_style_c2w_blender(az, 1.5), atol=1e-12)
    # front view: camera on −Y, right is +X, up is +Z
    assert np.array_equal(rig.camera_to_world[0, :3, :3], [[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    views = rig.to_views("/tmp/x", split="train")
    assert [v.file_path.name for v in views] == [f"view_{i:03d}.png" for i in range(4)]


# ------------------------------------------------------------------------------------ framing
def test_normalisation_transform():
    lo, hi = np.array([1.0, -2.0, 10.0]), np.array([3.0, 6.0, 11.0])
    m = normalisation_transform(lo, hi)
    corners = np.array(
        [[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    out = corners @ m.T
    assert np.allclose(out[:, :3].max(axis=0), [0.125, 0.5, 0.0625])
    assert np.allclose(out[:, :3].min(axis=0), [-0.125, -0.5, -0.0625])
    assert np.allclose(np.linalg.inv(m) @ out.T, corners.T)
    assert np.allclose(normalisation_transform(lo, hi, target_size=2.0)[:3, :3], np.eye(3) * 0.25)
    with pytest.raises(GSError, match="zero size"):
        normalisation_transform([1, 1, 1], [1, 1, 1])
    with pytest.raises(GSError, match="non-finite"):
        normalisation_transform([0, 0, float("nan")], [1, 1, 1])
    with pytest.raises(GSError, match="below its min"):
        normalisation_transform([0, 0, 2], [1, 1, 1])


def test_blender_camera_from_intrinsics_inverts():
    for fx, fy, cx, cy, w, h in [
        (500, 500, 320, 240, 640, 480),
        (300, 450, 100.5, 300, 400, 640),
        (800, 600, 260, 190, 512, 384),
    ]:
        cam = blender_camera_from_intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=w, height=h)
        assert cam["pixel_aspect_x"] >= 1 and cam["pixel_aspect_y"] >= 1
        got = intrinsics_from_blender_camera(
            lens_mm=cam["lens_mm"],
            sensor_width=cam["sensor_width"],
            sensor_height=cam["sensor_height"],
            sensor_fit=cam["sensor_fit"],
            shift_x=cam["shift_x"],
            shift_y=cam["shift_y"],
            res_x=w,
            res_y=h,
            pixel_aspect=cam["pixel_aspect_x"] / cam["pixel_aspect_y"],
        )
        assert got == pytest.approx((fx, fy, cx, cy), rel=1e-12)


def test_intrinsics_known_values():
    # 50 mm on a 36 mm sensor, 1920×1080 horizontal: fx = 50·1920/36; shift 0.1 → 192 px left.
    fx, fy, cx, cy = intrinsics_from_blender_camera(
        lens_mm=50,
        sensor_width=36,
        sensor_height=24,
        sensor_fit="AUTO",
        shift_x=0.1,
        shift_y=0.05,
        res_x=1920,
        res_y=1080,
    )
    assert (fx, fy) == pytest.approx((50 * 1920 / 36,) * 2)
    assert (cx, cy) == pytest.approx((960 - 192, 540 + 96))
    # portrait + AUTO: the height is fitted but the sensor WIDTH still sets the size
    fx, fy, cx, cy = intrinsics_from_blender_camera(
        lens_mm=50,
        sensor_width=36,
        sensor_height=24,
        sensor_fit="AUTO",
        shift_x=0.1,
        shift_y=0,
        res_x=1080,
        res_y=1920,
    )
    assert fx == pytest.approx(50 * 1920 / 36) and cx == pytest.approx(540 - 192)
    with pytest.raises(GSError, match="sensor fit"):
        intrinsics_from_blender_camera(
            lens_mm=50,
            sensor_width=36,
            sensor_height=24,
            sensor_fit="DIAGONAL",
            shift_x=0,
            shift_y=0,
            res_x=8,
            res_y=8,
        )


@pytest.mark.bpy
def test_intrinsics_match_blender_projection(rng):
    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    bpy.ops.wm.read_homefile(app_template="")
    try:
        scene = bpy.context.scene
        cam_data = bpy.data.cameras.new("probe")
        ob = bpy.data.objects.new("probe", cam_data)
        scene.collection.objects.link(ob)
        scene.camera = ob
        ob.location = (0.7, -3.0, 1.2)
        ob.rotation_euler = (1.2, 0.15, 0.3)
        ob.scale = (1.0, 2.0, 0.5)  # object scale must not change the view
        scene.render.resolution_percentage = 100
        worst_view, worst_matrix, cases = 0.0, 0.0, 0
        for fit in ("AUTO", "HORIZONTAL", "VERTICAL"):
            for res in ((320, 240), (200, 300), (256, 256)):
                for shift in ((0.0, 0.0), (0.13, -0.21)):
                    for aspect in ((1.0, 1.0), (2.0, 1.0), (1.0, 1.5)):
                        cam_data.lens, cam_data.sensor_width, cam_data.sensor_height = 35, 36, 20
                        cam_data.sensor_fit = fit
                        cam_data.shift_x, cam_data.shift_y = shift
                        scene.render.resolution_x, scene.render.resolution_y = res
                        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = aspect
                        bpy.context.view_layer.update()
                        fx, fy, cx, cy = intrinsics_from_blender_camera(
                            lens_mm=35,
                            sensor_width=36,
                            sensor_height=20,
                            sensor_fit=fit,
                            shift_x=shift[0],
                            shift_y=shift[1],
                            res_x=res[0],
                            res_y=res[1],
                            pixel_aspect=aspect[0] / aspect[1],
                        )
                        view = CameraView(
                            name="probe",
                            file_path=None,
                            width=res[0],
                            height=res[1],
                            fx=fx,
                            fy=fy,
                            cx=cx,
                            cy=cy,
                            camera_to_world=camera_to_world_from_matrix_world(ob.matrix_world),
                        )
                        # points in front of the camera, spread over and beyond the frame
                        local = np.column_stack(
                            [rng.uniform(-1, 1, (16, 2)) * 1.5, -rng.uniform(1, 6, 16)]
                        )
                        pts = local @ view.camera_to_world[:3, :3].T + view.camera_to_world[:3, 3]
                        ours = view.project(pts)
                        ndc = []
                        for p in pts:
                            v = world_to_camera_view(scene, ob, Vector(p))
                            ndc.append((v.x * res[0], (1.0 - v.y) * res[1]))
                        worst_view = max(worst_view, np.abs(ours - np.array(ndc)).max())
                        # and against the projection matrix Blender renders with
                        proj = np.array(
                            ob.calc_matrix_camera(
                                bpy.context.evaluated_depsgraph_get(),
                                x=res[0],
                                y=res[1],
                                scale_x=aspect[0],
                                scale_y=aspect[1],
                            )
                        )
                        w2c = np.linalg.inv(view.camera_to_world)
                        clip = np.c_[pts, np.ones(len(pts))] @ (proj @ w2c).T
                        px = np.column_stack(
                            [
                                (clip[:, 0] / clip[:, 3] + 1) * 0.5 * res[0],
                                (1 - clip[:, 1] / clip[:, 3]) * 0.5 * res[1],
                            ]
                        )
                        worst_matrix = max(worst_matrix, np.abs(ours - px).max())
                        cases += 1
        assert cases == 54
        assert worst_view < 1e-3, worst_view
        assert worst_matrix < 1e-3, worst_matrix
    finally:
        bpy.ops.wm.read_homefile(app_template="")


@pytest.mark.bpy
def test_blender_camera_settings_reproduce_intrinsics(rng):
    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix, Vector

    bpy.ops.wm.read_homefile(app_template="")
    try:
        scene = bpy.context.scene
        cam_data = bpy.data.cameras.new("probe")
        ob = bpy.data.objects.new("probe", cam_data)
        scene.collection.objects.link(ob)
        rig = orbit_rig(azimuth_count=3, elevations_deg=[20], radius=2.0, fov_deg=45)
        ob.matrix_world = Matrix(rig.camera_to_world[1].tolist())
        scene.render.resolution_percentage = 100
        worst = 0.0
        for fx, fy, cx, cy, w, h in [(300, 320, 150, 110, 320, 240), (400, 380, 90, 160, 180, 300)]:
            s = blender_camera_from_intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=w, height=h)
            cam_data.lens, cam_data.sensor_width = s["lens_mm"], s["sensor_width"]
            cam_data.sensor_height, cam_data.sensor_fit = s["sensor_height"], s["sensor_fit"]
            cam_data.shift_x, cam_data.shift_y = s["shift_x"], s["shift_y"]
            scene.render.resolution_x, scene.render.resolution_y = w, h
            scene.render.pixel_aspect_x = s["pixel_aspect_x"]
            scene.render.pixel_aspect_y = s["pixel_aspect_y"]
            bpy.context.view_layer.update()
            view = CameraView(
                name="v",
                file_path=None,
                width=w,
                height=h,
                fx=fx,
                fy=fy,
                cx=cx,
                cy=cy,
                camera_to_world=rig.camera_to_world[1],
            )
            pts = rng.uniform(-0.5, 0.5, (20, 3))
            ours = view.project(pts)
            for p, o in zip(pts, ours):
                v = world_to_camera_view(scene, ob, Vector(p))
                worst = max(worst, abs(v.x * w - o[0]), abs((1 - v.y) * h - o[1]))
        assert worst < 1e-3, worst
    finally:
        bpy.ops.wm.read_homefile(app_template="")


# ------------------------------------------------------------------------------------- images
def test_load_view_image(tmp_path):
    data = _png(tmp_path / "a.png", 6, 4)
    view = CameraView(
        name="a",
        file_path=tmp_path / "a.png",
        width=6,
        height=4,
        fx=5,
        fy=5,
        cx=3,
        cy=2,
        camera_to_world=np.eye(4),
    )
    img = load_view_image(view)
    assert img.dtype == np.float32 and img.shape == (4, 6, 4)
    assert np.array_equal(img, data.astype(np.float32) / 255)
    rgb = _png(tmp_path / "b.png", 6, 4, mode="RGB")
    view.file_path = tmp_path / "b.png"
    img = load_view_image(view)
    assert np.array_equal(img[..., :3], rgb / np.float32(255)) and (img[..., 3] == 1).all()
    gray16 = (np.arange(24, dtype=np.uint16).reshape(4, 6) * 2000).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "c.png")
    view.file_path = tmp_path / "c.png"
    img = load_view_image(view)
    assert np.allclose(img[..., 1], gray16 / 65535.0) and (img[..., 3] == 1).all()
    comp = composite_on_background(
        load_view_image(
            CameraView(
                name="a",
                file_path=tmp_path / "a.png",
                width=6,
                height=4,
                fx=5,
                fy=5,
                cx=3,
                cy=2,
                camera_to_world=np.eye(4),
            )
        ),
        (1.0, 1.0, 1.0),
    )
    alpha = data[..., 3:4] / 255
    assert np.allclose(comp, data[..., :3] / 255 * alpha + (1 - alpha), atol=1e-6)

    view.file_path = tmp_path / "a.png"
    view.width = 5
    with pytest.raises(GSError, match=r"view 'a'.*6×4 but the camera expects 5×4"):
        load_view_image(view)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    view.file_path = tmp_path / "bad.png"
    with pytest.raises(GSError, match=r"view 'a'.*cannot read image"):
        load_view_image(view)
    view.file_path = tmp_path / "nope.png"
    with pytest.raises(GSError, match=r"view 'a'.*missing"):
        load_view_image(view)


def test_camera_view_validation():
    with pytest.raises(GSError, match="view 'v'.*non-finite"):
        CameraView(
            name="v",
            file_path=None,
            width=4,
            height=4,
            fx=1,
            fy=1,
            cx=2,
            cy=2,
            camera_to_world=np.full((4, 4), np.nan),
        )
    with pytest.raises(GSError, match="view 'v'.*image size"):
        CameraView(
            name="v",
            file_path=None,
            width=0,
            height=4,
            fx=1,
            fy=1,
            cx=2,
            cy=2,
            camera_to_world=np.eye(4),
        )
    view = CameraView(
        name="v",
        file_path=None,
        width=4,
        height=4,
        fx=2,
        fy=3,
        cx=2,
        cy=2,
        camera_to_world=_random_pose(np.random.default_rng(3)),
    )
    w2c = view.world_to_camera_opencv()
    c2w_cv = view.camera_to_world @ np.diag([1.0, -1, -1, 1])
    assert np.allclose(w2c @ c2w_cv, np.eye(4), atol=1e-12)
    assert np.array_equal(view.intrinsics_matrix(), [[2, 0, 2], [0, 3, 2], [0, 0, 1]])
