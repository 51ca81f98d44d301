"""Pose recovery from photos and videos (blender_gs_addon.poses): inputs, checks, frames, the
upright normalised world, points → splats, and every kind of bad input. The end-to-end test on
120 rendered views is in test_poses_recovery.py."""

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from PIL import Image

from blender_gs_addon.capture.rigs import camera_position, look_at_origin
from blender_gs_addon.conventions.frames import OPENCV_FROM_OPENGL
from blender_gs_addon.datasets import read_transforms
from blender_gs_addon.datasets.point_cloud import read_point_cloud, write_point_cloud
from blender_gs_addon.errors import GSError
from blender_gs_addon.poses import recover as recover_module
from blender_gs_addon.poses.alignment import pose_errors, similarity_alignment
from blender_gs_addon.poses.dataset import (
    camera_up,
    held_out_names,
    transform_cameras,
    world_normalisation,
)
from blender_gs_addon.poses.photos import check_photo_set, inspect_photo, read_photo
from blender_gs_addon.poses.recover import recover_poses
from blender_gs_addon.poses.sfm import SfmResult
from blender_gs_addon.poses.video import sample_video_frames, sharpness
from blender_gs_addon.reconstruction.fit import neighbour_distances, splats_from_points


def _texture(width, height, seed):
    """Smooth multi-scale colour noise (what SIFT finds features in), uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((height, width, 3), np.float32)
    for cells in (4, 8, 16):
        small = Image.fromarray((rng.random((cells, cells, 3)) * 255).astype(np.uint8))
        acc += np.asarray(small.resize((width, height), Image.BICUBIC), np.float32)
    return (acc / 3).astype(np.uint8)


def _photo(path, width=64, height=48, *, seed=0, exif=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(_texture(width, height, seed))
    if exif is None:
        image.save(path)
    else:
        data = Image.Exif()
        for tag, value in exif.items():
            data[tag] = value
        image.save(path, exif=data.tobytes())
    return path


def _assert_nothing_written(out: Path):
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert leftovers == []


# --------------------------------------------------------------------------- bad input
def test_one_photo_refused(tmp_path):
    _photo(tmp_path / "photos" / "only.jpg")
    with pytest.raises(GSError, match=r"only one photo \(only.jpg\)"):
        recover_poses(photos=tmp_path / "photos", out=tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_too_few_photos_named(tmp_path):
    for i in range(2):
        _photo(tmp_path / "photos" / f"p{i}.png", seed=i)
    with pytest.raises(GSError, match=r"too few photos \(2: p0.png, p1.png\)"):
        recover_poses(photos=tmp_path / "photos", out=tmp_path / "out")


def test_empty_folder_and_missing_source(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    with pytest.raises(GSError, match="no photos in this folder"):
        recover_poses(photos=tmp_path / "empty", out=tmp_path / "out")
    with pytest.raises(GSError, match="no such folder or video file"):
        recover_poses(photos=tmp_path / "missing", out=tmp_path / "out")
    (tmp_path / "doc.pdf").write_bytes(b"%PDF")
    with pytest.raises(GSError, match="neither a folder of photos nor a video"):
        recover_poses(photos=tmp_path / "doc.pdf", out=tmp_path / "out")


@pytest.mark.parametrize("damage, message", [
    ("garbage", r"broken.jpg: cannot read this photo \(cannot identify"),
    ("truncated", r"broken.jpg: cannot read this photo; the file is damaged"),  # header fine
])
def test_corrupt_photo_named(tmp_path, damage, message):
    photos = tmp_path / "photos"
    for i in range(3):
        _photo(photos / f"p{i}.jpg", 256, 192, seed=i)
    data = _photo(photos / "broken.jpg", 256, 192, seed=7).read_bytes()
    damaged = b"\xff\xd8\xff garbage, not a JPEG" if damage == "garbage" else data[:len(data) // 3]
    (photos / "broken.jpg").write_bytes(damaged)
    with pytest.raises(GSError, match=message):
        recover_poses(photos=photos, out=tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_mixed_cameras_named(tmp_path):
    photos = tmp_path / "photos"
    for i in range(4):
        _photo(photos / f"a{i}.jpg", seed=i, exif={271: "Canon", 272: "EOS R5"})
    _photo(photos / "phone.jpg", seed=9, exif={271: "Apple", 272: "iPhone 15"})
    with pytest.raises(GSError, match=r"2 cameras \(Canon EOS R5: 4; Apple iPhone 15: 1\).*"
                                      r"Not from Canon EOS R5: phone.jpg"):
        recover_poses(photos=photos, out=tmp_path / "out")


def test_mixed_shapes_named_and_same_shape_scaled(tmp_path):
    photos = tmp_path / "photos"
    for i in range(3):
        _photo(photos / f"p{i}.png", 64, 48, seed=i)
    _photo(photos / "portrait.png", 48, 64, seed=5)
    with pytest.raises(GSError, match=r"most are 64×48, but portrait.png \(48×64\) differ"):
        recover_poses(photos=photos, out=tmp_path / "out")

    # One shape at two resolutions is one camera: everything comes out at the smaller size.
    (photos / "portrait.png").unlink()
    _photo(photos / "big.png", 128, 96, seed=6)
    infos = [inspect_photo(p) for p in sorted(photos.iterdir())]
    check_photo_set(infos, source=photos)
    prepared = recover_module.prepare_images(infos, tmp_path / "images", max_size=0)
    assert {(p.width, p.height) for p in prepared} == {(64, 48)}
    assert Image.open(tmp_path / "images" / "big.png").size == (64, 48)


def test_exif_orientation_applied(tmp_path):
    # Quadrants of flat colour survive JPEG; orientation 6 = "rotate 90° clockwise to view".
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:20, :30] = (250, 0, 0)
    pixels[:20, 30:] = (0, 250, 0)
    pixels[20:, :30] = (0, 0, 250)
    pixels[20:, 30:] = (250, 250, 0)
    exif = Image.Exif()
    exif[274] = 6
    path = tmp_path / "turned.jpg"
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
    info = inspect_photo(path)
    assert (info.width, info.height) == (40, 60)
    upright = read_photo(path).astype(int)
    expected = np.rot90(pixels, k=-1).astype(int)  # clockwise
    assert upright.shape == expected.shape == (60, 40, 3)
    for row in (15, 45):  # quadrant centres, away from the edges JPEG blurs
        for col in (10, 30):
            assert np.abs(upright[row, col] - expected[row, col]).max() < 40


def test_masks_missing_or_mis_sized_named(tmp_path):
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    for i in range(3):
        _photo(photos / f"p{i}.png", seed=i)
    masks.mkdir()
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(masks / "p0.png")
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(masks / "p1.png.png")  # COLMAP's
    with pytest.raises(GSError, match=r"no mask for p2.png"):
        recover_poses(photos=photos, out=tmp_path / "out", masks=masks)
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(masks / "p2.jpg")
    with pytest.raises(GSError, match=r"p2.jpg: the mask is 10×10 but its photo p2.png is 64×48"):
        recover_poses(photos=photos, out=tmp_path / "out", masks=masks)
    _assert_nothing_written(tmp_path / "out")


def test_unreadable_video_named(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing after it" * 3)
    with pytest.raises(GSError, match=r"clip.mp4: the video decoder cannot read this file"):
        recover_poses(photos=video, out=tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_photos_sharing_no_features_named(tmp_path):
    photos = tmp_path / "photos"
    for i in range(3):
        _photo(photos / f"noise{i}.png", 128, 96, seed=100 + i)
    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(photos / "blank.png")
    with pytest.raises(GSError, match=r"share no features.*blank.png: no features found.*"
                                      r"noise0.png: shares no features"):
        recover_poses(photos=photos, out=tmp_path / "out", threads=1)
    _assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("option, value, words", [
    ("frames", 0, "frames must be at least 1"),
    ("max_size", 8, "at least 16 pixels"),
    ("test_every", -1, "test_every must be 0"),
    ("camera_model", "OPENCV_FISHEYE", "SIMPLE_PINHOLE or PINHOLE"),
    ("matcher", "vocab_tree", "auto, exhaustive or sequential"),
    ("threads", 0, "threads must be -1"),
])
def test_bad_options_refused(tmp_path, option, value, words):
    with pytest.raises(GSError, match=words):
        recover_poses(photos=tmp_path, out=tmp_path / "out", **{option: value})
    _assert_nothing_written(tmp_path / "out")


def test_existing_foreign_folder_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(GSError, match="not empty and is not a pose data set"):
        recover_poses(photos=tmp_path, out=out)
    assert (out / "thesis.tex").read_text() == "precious"


def test_cancel_leaves_nothing(tmp_path):
    photos = tmp_path / "photos"
    for i in range(4):
        _photo(photos / f"p{i}.png", seed=i)
    result = recover_poses(photos=photos, out=tmp_path / "out", should_stop=lambda: True)
    assert result == {"cancelled": True}
    _assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("stage", ["extract", "match", "map"])
def test_cancel_during_sfm_leaves_nothing(tmp_path, stage):
    photos = tmp_path / "photos"
    photos.mkdir()
    scene = _texture(200, 96, seed=3)
    for i in range(4):  # overlapping crops: they match, so the run gets as far as mapping
        Image.fromarray(scene[:, 20 * i: 20 * i + 128]).save(photos / f"p{i}.png")
    stages = []
    result = recover_poses(photos=photos, out=tmp_path / "out", threads=1,
                           progress=lambda name, fraction, message: stages.append(name),
                           should_stop=lambda: stage in stages)
    assert result == {"cancelled": True}
    assert stages[-1] == stage
    _assert_nothing_written(tmp_path / "out")


def test_cancel_inside_feature_extraction(tmp_path):
    """should_stop() turning true while pycolmap extracts features stops it there (the
    CancellationToken), long before the extraction of 24 large photos would end."""
    import time

    photos = tmp_path / "photos"
    for i in range(24):
        _photo(photos / f"p{i:02d}.jpg", 800, 600, seed=i)
    stages, started = [], []

    def should_stop():
        if "extract" in stages and not started:
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] > 0.3

    result = recover_poses(photos=photos, out=tmp_path / "out", max_size=0,
                           progress=lambda name, fraction, message: stages.append(name),
                           should_stop=should_stop)
    assert result == {"cancelled": True}
    assert stages[-1] == "extract" and time.monotonic() - started[0] < 5.0
    _assert_nothing_written(tmp_path / "out")


def test_cli_bad_input_is_one_line(tmp_path):
    _photo(tmp_path / "photos" / "only.jpg")
    proc = run_cli("poses", "--photos", tmp_path / "photos", "--out", tmp_path / "out",
                   check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'photos'}: only one photo (only.jpg); poses need at least 3 "
        "overlapping photos of the subject from different positions (20 or more work best)"]
    proc = run_cli("poses", "--photos", tmp_path / "photos", "--out", tmp_path / "out",
                   check=False, prelude="sys.modules['pycolmap'] = None")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: recovering camera poses needs pycolmap (pip install "
                                  "pycolmap==4.2.1) in this Python environment")
    proc = run_cli("reconstruct", "--photos", tmp_path / "photos", "--capture", tmp_path,
                   "--out", tmp_path / "x.ply", check=False)
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


# --------------------------------------------------------------------------- video frames
def _write_video(path, frames, fps=10):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)  # lossless: frames come back exact
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "bgr0"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_sharpest_frame_per_window(tmp_path):
    sharp = [_texture(96, 64, seed) for seed in range(30)]
    blurred = [np.asarray(Image.fromarray(f).resize((24, 16)).resize((96, 64), Image.BILINEAR))
               for f in sharp]
    # 6 windows of 5 frames; in window w only frame 5·w + (w % 5) is sharp.
    keep = [5 * w + (w % 5) for w in range(6)]
    frames = [sharp[i] if i in keep else blurred[i] for i in range(30)]
    assert all(sharpness(sharp[i].mean(-1)) > 2 * sharpness(blurred[i].mean(-1))
               for i in range(30))
    video = tmp_path / "walk.mkv"
    _write_video(video, frames)
    written = sample_video_frames(video, tmp_path / "frames", count=6, max_size=0)
    assert [p.name for p in written] == [f"frame_{i:04d}.png" for i in range(1, 7)]
    for path, index in zip(written, keep):
        assert np.array_equal(np.asarray(Image.open(path)), frames[index])
    smaller = sample_video_frames(video, tmp_path / "small", count=3, max_size=48)
    assert [Image.open(p).size for p in smaller] == [(48, 32)] * 3


def test_video_with_too_few_frames_refused(tmp_path):
    video = tmp_path / "short.mkv"
    _write_video(video, [_texture(32, 24, 0), _texture(32, 24, 1)])
    with pytest.raises(GSError, match=r"sampled frames\): too few photos \(2: frame_0001.png"):
        recover_poses(photos=video, out=tmp_path / "out", frames=10)
    with pytest.raises(GSError, match="masks are for a folder of photos"):
        recover_poses(photos=video, out=tmp_path / "out", masks=tmp_path)
    _assert_nothing_written(tmp_path / "out")


# --------------------------------------------------------------------------- the world
def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _colmap_scene(rng):
    """Orbit cameras (Blender world, OpenGL axes) and unit-cube points, and the same seen
    through an arbitrary similarity S as COLMAP would return them (OpenCV axes)."""
    az = np.arange(0.0, 360.0, 30.0)
    el = np.tile([10.0, 40.0], 6)
    c2w = look_at_origin(camera_position(az, el, 2.5), azimuth_deg=az)  # [12, 4, 4]
    points = rng.uniform(-0.5, 0.5, size=(4000, 3))
    s = np.eye(4)
    s[:3, :3] = 3.7 * _random_rotation(rng)
    s[:3, 3] = rng.normal(size=3) * 5
    colmap_c2w = np.tile(np.eye(4), (len(c2w), 1, 1))
    colmap_c2w[:, :3, :3] = s[:3, :3] / 3.7 @ c2w[:, :3, :3]
    colmap_c2w[:, :3, 3] = c2w[:, :3, 3] @ s[:3, :3].T + s[:3, 3]
    return c2w, points, colmap_c2w @ OPENCV_FROM_OPENGL, points @ s[:3, :3].T + s[:3, 3]


def test_world_normalisation_upright_centred_unit(rng):
    c2w, points, colmap_cams, colmap_points = _colmap_scene(rng)
    n, up = world_normalisation(colmap_cams, colmap_points)
    cams = transform_cameras(n, colmap_cams)
    # Up: the cameras' average up is +Z; the first camera (azimuth 0) looks from −Y.
    ups = cams[:, :3, 1].mean(0)
    np.testing.assert_allclose(ups / np.linalg.norm(ups), [0, 0, 1], atol=1e-12)
    assert abs(cams[0, 0, 3]) < 0.02 and cams[0, 1, 3] < -2.0
    # Centre and scale: the points' 2–98 % box is centred and has largest side 1.
    local = colmap_points @ n[:3, :3].T + n[:3, 3]
    lo, hi = np.percentile(local, 2, axis=0), np.percentile(local, 98, axis=0)
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-9)
    assert abs((hi - lo).max() - 1.0) < 1e-9
    # Nothing but that: the recovered cameras are the originals up to a similarity that
    # keeps +Z (here the box is ≈ the unit cube, so ≈ the identity).
    errors = pose_errors(cams, c2w)
    assert errors.rotation_errors_deg.max() < 1e-6
    np.testing.assert_allclose(errors.alignment[:3, :3], np.eye(3) * errors.alignment[0, 0],
                               atol=1e-9)
    assert abs(errors.alignment[0, 0] - 1.0) < 0.05
    np.testing.assert_allclose(up, camera_up(colmap_cams))


def test_world_normalisation_given_up(rng):
    _, _, colmap_cams, colmap_points = _colmap_scene(rng)
    chosen = np.array([0.3, -0.2, 0.9])
    n, up = world_normalisation(colmap_cams, colmap_points, up=chosen)
    turned = n[:3, :3] @ (chosen / np.linalg.norm(chosen))
    np.testing.assert_allclose(turned / np.linalg.norm(turned), [0, 0, 1], atol=1e-12)
    with pytest.raises(GSError, match="non-zero vector"):
        world_normalisation(colmap_cams, colmap_points, up=[0, 0, 0])


def test_held_out_names():
    names = [f"v{i:02d}" for i in range(20)]
    assert held_out_names(names, 8) == {"v03", "v11", "v19"}
    assert held_out_names(names[:9], 8) == set()  # too few to spare any
    assert held_out_names(names, 0) == set()


def test_similarity_alignment_exact(rng):
    src = rng.normal(size=(20, 3))
    m = np.eye(4)
    m[:3, :3] = 0.37 * _random_rotation(rng)
    m[:3, 3] = [1.0, -2.0, 0.5]
    np.testing.assert_allclose(similarity_alignment(src, src @ m[:3, :3].T + m[:3, 3]), m,
                               atol=1e-12)
    with pytest.raises(GSError, match="on a line"):
        similarity_alignment(np.outer(np.arange(5), [1, 2, 3]), rng.normal(size=(5, 3)))


# --------------------------------------------------------------------------- points
def test_splats_from_points_grid():
    d = 0.05
    grid = np.stack(np.meshgrid(*[np.arange(6) * d] * 3, indexing="ij"), -1).reshape(-1, 3)
    colours = np.tile(np.array([[200, 100, 0]], np.uint8), (len(grid), 1))
    splats = splats_from_points(grid, colours, sh_degree=2)
    # On a cubic grid every point's 3 nearest neighbours are exactly d away (corners too).
    np.testing.assert_allclose(splats.scales(), d, rtol=1e-5)
    np.testing.assert_allclose(splats.opacities(), 0.1, rtol=1e-5)
    np.testing.assert_allclose(splats.base_colors(), colours / 255.0, atol=1e-6)
    np.testing.assert_array_equal(splats.rotations, np.tile([1, 0, 0, 0], (len(grid), 1)))
    assert splats.sh_degree == 2 and not splats.sh_rest.any()


def test_neighbour_distances_match_brute_force(rng):
    points = rng.normal(size=(300, 3))
    d2 = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    expected = np.sqrt(np.sort(d2, axis=1)[:, :3].mean(1))
    np.testing.assert_allclose(neighbour_distances(points, chunk=64), expected, rtol=1e-4)


def test_point_cloud_against_pycolmap(tmp_path, rng):
    pycolmap = pytest.importorskip("pycolmap")
    xyz = rng.normal(size=(50, 3))
    rgb = rng.integers(0, 256, size=(50, 3)).astype(np.uint8)
    model = pycolmap.Reconstruction()
    for p, c in zip(xyz, rgb):
        model.add_point3D(p, pycolmap.Track(), c)
    model.export_PLY(str(tmp_path / "colmap.ply"))  # pycolmap's writer → our reader
    order = np.argsort(xyz[:, 0])
    got_xyz, got_rgb = read_point_cloud(tmp_path / "colmap.ply")
    back = np.argsort(got_xyz[:, 0])
    np.testing.assert_allclose(got_xyz[back], xyz[order], atol=1e-6)
    np.testing.assert_array_equal(got_rgb[back], rgb[order])

    write_point_cloud(tmp_path / "ours.ply", xyz, rgb)  # our writer → pycolmap's reader
    theirs = pycolmap.Reconstruction()
    theirs.import_PLY(str(tmp_path / "ours.ply"))
    points = sorted(theirs.points3D.values(), key=lambda p: p.xyz[0])
    np.testing.assert_allclose([p.xyz for p in points], xyz[order], atol=1e-6)
    np.testing.assert_array_equal([p.color for p in points], rgb[order])
    header = (tmp_path / "ours.ply").read_bytes()[:400]
    assert b"property float nx" in header  # INRIA's fetchPly reads normals unconditionally


# --------------------------------------------------------------------------- partial runs
def test_partial_registration_reported(tmp_path, monkeypatch, rng):
    """Given an SfM result that placed 10 of 12 photos, the data set holds those 10, the
    warning and the report name the 2 left out, and the report has the numbers."""
    photos = tmp_path / "photos"
    for i in range(12):
        _photo(photos / f"p{i:02d}.png", seed=i)
    c2w, points, colmap_cams, colmap_points = _colmap_scene(rng)
    names = [f"p{i:02d}.png" for i in range(12)]
    left = {"p04.png": "shares no features with any other image",
            "p09.png": "could not be placed in the model"}

    def fake_sfm(images_dir, names_in, work_dir, **kwargs):
        assert names_in == names
        sparse = Path(work_dir) / "model"
        sparse.mkdir(parents=True)
        (sparse / "cameras.bin").write_bytes(b"")
        placed = [n for n in names if n not in left]
        keep = [names.index(n) for n in placed]
        return SfmResult(names=names, registered=placed, world_from_camera=colmap_cams[keep],
                         image_size=(64, 48), focal=(60.0, 60.0), principal_point=(32, 24),
                         points=colmap_points, colours=np.full((len(points), 3), 9, np.uint8),
                         reprojection_error=0.5, models=2, settings="looser mapper",
                         sparse_dir=sparse, left_out_reasons=left,
                         seconds={"extract": 1.0, "match": 2.0, "map": 3.0})

    monkeypatch.setattr(recover_module, "run_sfm", fake_sfm)
    messages = []
    result = recover_poses(photos=photos, out=tmp_path / "out", test_every=4,
                           report=lambda levels, msg: messages.append((levels, msg)))
    assert ({"WARNING"}, "placed 10 of 12 images; left out: p04.png (shares no features with "
            "any other image), p09.png (could not be placed in the model)") in messages
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    for report in (result, saved):
        assert report["placed"] == 10 and report["images"] == 12
        assert report["left_out"] == ["p04.png", "p09.png"]
        assert report["focal_length_px"] == [60.0, 60.0]
        assert report["reprojection_error_px"] == 0.5
        assert report["held_out"] == ["p03", "p08"]
    dataset = read_transforms(tmp_path / "out")
    assert sorted(v.name for v in dataset.views) == [n[:-4] for n in names if n not in left]
    assert [v.name for v in dataset.split_views("test")] == ["p03", "p08"]
    np.testing.assert_array_equal(dataset.normalisation, np.eye(4))
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == names
    assert (tmp_path / "out" / "sparse" / "0" / "cameras.bin").is_file()
    assert len(read_point_cloud(tmp_path / "out" / "points3d.ply")[0]) == len(points)


def test_reconstruct_starts_from_the_data_sets_points(tmp_path, rng):
    """With points3d.ply beside the transforms, the fit starts from those points: with 0 steps
    the written splats are exactly the points (3DGS file frame), coloured like them."""
    from blender_gs_addon.conventions.frames import splats_file_to_world
    from blender_gs_addon.datasets import CameraView, ViewDataset, write_transforms
    from blender_gs_addon.formats import read_splats
    from blender_gs_addon.reconstruction.pipeline import reconstruct

    c2w = look_at_origin(camera_position([0.0, 120.0, 240.0], [20.0] * 3, 2.5))
    views = []
    for i, matrix in enumerate(c2w):
        Image.fromarray(_texture(16, 16, i)).save(tmp_path / f"v{i}.png")
        views.append(CameraView(name=f"v{i}", file_path=tmp_path / f"v{i}.png", width=16,
                                height=16, fx=20.0, fy=20.0, cx=8.0, cy=8.0,
                                camera_to_world=matrix))
    write_transforms(ViewDataset(views=views), tmp_path)
    points = rng.uniform(-0.4, 0.4, size=(25, 3))
    colours = rng.integers(0, 256, size=(25, 3)).astype(np.uint8)
    write_point_cloud(tmp_path / "points3d.ply", points, colours)
    result = reconstruct(capture=str(tmp_path), out=str(tmp_path / "s.ply"), steps=0,
                         device="cpu")
    splats = splats_file_to_world(read_splats(tmp_path / "s.ply"))
    assert result["count"] == 25
    np.testing.assert_allclose(splats.positions, points, atol=1e-6)
    np.testing.assert_allclose(splats.base_colors(), colours / 255.0, atol=1e-6)


def test_sfm_escalates_until_enough_images_are_placed(tmp_path, monkeypatch):
    """Too few placed with the default settings: the looser mapper runs on the same matches,
    then denser features are extracted and matched again; the best run is kept."""
    pytest.importorskip("pycolmap")
    from blender_gs_addon.poses import sfm

    class Model:
        def __init__(self, placed):
            self.placed = placed

        def num_reg_images(self):
            return self.placed

        def num_points3D(self):
            return 100 * self.placed

    calls = []
    placed_per_level = iter([3, 5, 8])

    def features(pycolmap, database, images_dir, names, config, *args, **kwargs):
        calls.append(("features", config.peak_threshold, config.max_features))
        return {}

    def mapping(pycolmap, database, images_dir, out_dir, config, count, *args):
        calls.append(("map", config.init_min_inliers, config.abs_pose_min_inliers))
        return {0: Model(next(placed_per_level))}

    monkeypatch.setattr(sfm, "_features_and_matches", features)
    monkeypatch.setattr(sfm, "_map", mapping)
    monkeypatch.setattr(sfm, "_result", lambda pycolmap, model, models, settings, *a:
                        (model.placed, settings))
    messages = []
    names = [f"i{i}.png" for i in range(10)]
    best = sfm.run_sfm(tmp_path, names, tmp_path / "work", size=(64, 48),
                       report=lambda levels, message: messages.append(message))
    assert calls == [("features", 0.002, 8192), ("map", 30, 15), ("map", 15, 8),
                     ("features", 0.001, 16384), ("map", 15, 8)]
    assert best == (8, "denser features")
    assert messages == ["3 of 10 images placed with the default settings; trying looser ones",
                        "5 of 10 images placed with the looser mapper settings; trying looser "
                        "ones"]
    calls.clear()
    placed_per_level = iter([9])  # 90 %: enough, no escalation
    assert sfm.run_sfm(tmp_path, names, tmp_path / "work", size=(64, 48)) == (9, "default")
    assert calls == [("features", 0.002, 8192), ("map", 30, 15)]
