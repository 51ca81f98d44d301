"""Interop with an independent implementation: PlayCanvas's splat-transform (npm, pinned 3.7.0,
installed into ./.node by scripts/node_tools.sh, which scripts/test.sh runs; offline after).

* It converts our .sog, .spz, .compressed.ply, .splat and .ply files to .ply: its decoding
  must agree with ours, and both with the original splats within each format's bounds.
* We read its .sog and .glb: our decoding must agree with its own, and with the original.
* The .spz frame difference (Niantic's RUB storage vs splat-transform's unconverted data) and
  the .glb frame difference (Blender's glTF convention vs splat-transform's half turn about Z:
  180° about the up axis between the two) are checked as documented in
  blender_gs_addon/formats/__init__.py.

Splats are identified across tools by integer grid positions (tools may reorder them; every
format here keeps a centre well within 0.5 of where it was). Skips with the reason when node
or the package is missing.
"""

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from blender_gs_addon.conventions.frames import GLTF_FROM_RDF, RUB_FROM_RDF
from blender_gs_addon.formats import read_splats, write_splats
from blender_gs_addon.formats.splat import ROTATION_ERROR_BOUND
from blender_gs_addon.quaternions import normalize_quat, quat_to_matrix
from blender_gs_addon.sh import SH_C0, coeffs_for_degree
from blender_gs_addon.splats import SplatSet

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / ".node" / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
N = 800


def splat_transform(*args, timeout=240):
    """Run the pinned splat-transform CLI (CPU only); skip when it is not installed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the splat-transform interop tests need it")
    if not CLI.is_file():
        pytest.skip("splat-transform is not installed: run scripts/node_tools.sh "
                    "(scripts/test.sh does)")
    proc = subprocess.run([node, str(CLI), "-q", "-w", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"splat-transform {args}: {proc.stderr[-2000:]}"


def read_their_ply(path):
    """splat-transform's .ply output, parsed here (binary little-endian float properties) so
    that its ±inf opacity logits (fully opaque/transparent) come through as the values they
    are."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode().splitlines()
    assert "format binary_little_endian 1.0" in lines
    count = int(next(ln for ln in lines if ln.startswith("element vertex")).split()[2])
    names = [ln.split()[2] for ln in lines if ln.startswith("property float")]
    table = np.frombuffer(data, "<f4", count * len(names), end).reshape(count, len(names))
    col = {n: table[:, i] for i, n in enumerate(names)}
    k = sum(n.startswith("f_rest_") for n in names) // 3
    stack = lambda *keys: np.stack([col[c] for c in keys], 1) if keys else np.zeros((count, 0))  # noqa: E731
    return SplatSet(
        positions=stack("x", "y", "z"), log_scales=stack("scale_0", "scale_1", "scale_2"),
        rotations=stack("rot_0", "rot_1", "rot_2", "rot_3"), opacity_logits=col["opacity"].copy(),
        sh_dc=stack("f_dc_0", "f_dc_1", "f_dc_2"),
        sh_rest=np.ascontiguousarray(stack(*[f"f_rest_{i}" for i in range(3 * k)])
                                     .reshape(count, 3, k).transpose(0, 2, 1)))


def rub_to_rdf(s):
    """A set stored right-up-back, converted to the 3DGS frame as our .spz reader does."""
    out = s.transformed(np.diag([*np.diag(RUB_FROM_RDF), 1.0]))
    out.rotations = s.rotations * np.array([1, 1, -1, -1], np.float32)
    return out


def covariance(s):
    m = quat_to_matrix(s.rotations.astype(np.float64)) * np.exp(s.log_scales)[:, None, :]
    return m @ m.transpose(0, 2, 1)


def grid_splats(seed, degree=3):
    """N splats on distinct integer grid points (their identity across tools)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(10)] * 3, indexing="ij"), -1).reshape(-1, 3) - 4
    return SplatSet.from_arrays(
        positions=grid[rng.permutation(len(grid))[:N]], log_scales=rng.normal(-3, 0.8, (N, 3)),
        rotations=rng.normal(size=(N, 4)), opacity_logits=rng.normal(0, 2.5, N),
        sh_dc=rng.normal(0, 0.8, (N, 3)),
        sh_rest=rng.normal(0, 0.15, (N, coeffs_for_degree(degree), 3)))


def matched(s, ref, frame=None):
    """``s`` reordered to ``ref``'s order by rounded position (``frame`` maps ref → s)."""
    frame = np.eye(3) if frame is None else frame
    key = {tuple(p): i for i, p in enumerate(np.rint(s.positions).astype(int).tolist())}
    index = [key[tuple(p)] for p in np.rint(ref.positions @ frame.T).astype(int).tolist()]
    assert len(set(index)) == ref.count
    return s.subset(np.array(index))


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def quat_error(a, b):
    """‖a − b‖ of unit quaternions, sign-aligned (q and −q are one rotation)."""
    a, b = normalize_quat(a.astype(np.float64)), normalize_quat(b.astype(np.float64))
    return np.minimum(np.linalg.norm(a - b, axis=1), np.linalg.norm(a + b, axis=1))


def assert_same_decoding(ours, theirs, *, rotation_tol=2e-6, opacity_tol=1e-6):
    """Two tools' decodings of one file: equal up to float32 rounding (opacity: in sigmoid
    space, since the tools clamp fully opaque/transparent bytes to different logits)."""
    scale = 1 + np.abs(ours.positions)
    assert (np.abs(ours.positions - theirs.positions) <= 2e-6 * scale).all()
    assert quat_error(ours.rotations, theirs.rotations).max() <= rotation_tol
    np.testing.assert_allclose(theirs.log_scales, ours.log_scales, atol=2e-6, rtol=1e-6)
    np.testing.assert_allclose(theirs.sh_dc, ours.sh_dc, atol=2e-6)
    np.testing.assert_allclose(theirs.sh_rest, ours.sh_rest, atol=2e-6)
    error = np.abs(sigmoid(ours.opacity_logits) - sigmoid(theirs.opacity_logits))
    assert error.max() <= opacity_tol


def assert_within(out, src, *, pos, rot, log_scale, dc, opacity, sh_rms=None, sh_max=None):
    assert (np.abs(out.positions - src.positions) <= pos).all()
    assert quat_error(out.rotations, src.rotations).max() <= rot
    assert np.abs(out.log_scales - src.log_scales).max() <= log_scale
    assert np.abs(out.sh_dc - src.sh_dc).max() <= dc
    assert np.abs(sigmoid(out.opacity_logits) - sigmoid(src.opacity_logits)).max() <= opacity
    if sh_max is not None:
        assert np.abs(out.sh_rest - src.sh_rest).max() <= sh_max
    if sh_rms is not None:
        err = np.sqrt(np.mean((out.sh_rest.astype(np.float64) - src.sh_rest) ** 2))
        assert err <= sh_rms * np.sqrt(np.mean(src.sh_rest.astype(np.float64) ** 2))


def sog_position_bound(src, divisor):
    lp = np.sign(src.positions) * np.log1p(np.abs(src.positions.astype(np.float64)))
    return (1 + np.abs(src.positions)) * np.expm1((lp.max(0) - lp.min(0)) / divisor) + 1e-6


OPACITY_EDGE = {"sog": 0.25 / 255, "compressed.ply": 0.25 / 255, "spz": 0.25 / 255,
                "splat": 0.5 / 255}
DC_LIMIT = {"splat": 0.5 / SH_C0, "spz": 127.5 / (0.15 * 255)}
DELTA = 1 / (255 * math.sqrt(2))  # a stored SOG quaternion component, rounded
BOUNDS = {  # the documented bounds of each of our writers (see each module's docstring)
    "ply": dict(pos=0, rot=2e-7, log_scale=0, dc=0, opacity=1e-7, sh_max=0),
    "compressed.ply": dict(pos=9 / 2046 + 1e-5, rot=2.5e-3, log_scale=0.05, dc=0.05,
                           opacity=1 / 510 + 1e-9, sh_max=1 / 32 + 1e-6),
    "splat": dict(pos=0, rot=2 * math.sin(ROTATION_ERROR_BOUND / 4) + 1e-6, log_scale=1e-6,
                  dc=0.5 / 255 / SH_C0 + 1e-6, opacity=0.5 / 255 + 1e-6),
    "spz": dict(pos=2.0**-13 + 1e-6, rot=2.5e-3, log_scale=1 / 32 + 1e-6,
                dc=1 / (2 * 0.15 * 255) + 1e-6, opacity=1 / 510 + 1e-9, sh_max=8.5 / 128),
    "sog": dict(rot=2 * math.sqrt(3) * DELTA + 1e-6, log_scale=0.05, dc=0.05,
                opacity=1 / 510 + 1e-9, sh_rms=0.7),
}


@pytest.mark.parametrize("ext", ["sog", "spz", "compressed.ply", "splat", "ply"])
def test_splat_transform_decodes_our_files_as_we_do(tmp_path, ext):
    src = grid_splats(1, degree=0 if ext == "splat" else 3)
    ours = tmp_path / f"ours.{ext}"
    write_splats(ours, src, report=lambda *a: None)
    splat_transform(ours, tmp_path / "theirs.ply")
    mine = read_splats(ours)
    frame = RUB_FROM_RDF if ext == "spz" else np.eye(3)  # splat-transform: .spz not converted
    theirs = matched(read_their_ply(tmp_path / "theirs.ply"), mine, frame)
    if ext == "spz":
        theirs = rub_to_rdf(theirs)
    # splat-transform decodes .splat rotations as b/127.5 − 1, antimatter15's reference (and
    # we) as (b − 128)/128: the two differ by up to 1/127.5 per component. Opacity bytes 0 and
    # 255 decode to different clamps in each tool (ours: OPACITY_EDGE of the format's bound).
    assert_same_decoding(mine, theirs, rotation_tol=2 / 127.5 if ext == "splat" else 2e-6,
                         opacity_tol=OPACITY_EDGE.get(ext, 0) + 1e-6)
    bounds = dict(BOUNDS[ext])
    if ext == "splat":  # their decoding convention adds its offset to our writer's bound
        bounds["rot"] += 2 * 2 / 127.5
    ref = matched(src, theirs)
    if ext == "sog":
        bounds["pos"] = sog_position_bound(ref, 131070)
    if ext in DC_LIMIT:  # colours beyond what the format stores come back clipped
        ref.sh_dc = np.clip(ref.sh_dc, -DC_LIMIT[ext], DC_LIMIT[ext])
    assert_within(theirs, ref, **bounds)


def test_we_read_splat_transform_sog_as_it_does(tmp_path):
    src = grid_splats(2)
    write_splats(tmp_path / "in.ply", src)
    splat_transform("-g", "cpu", tmp_path / "in.ply", tmp_path / "theirs.sog")
    splat_transform(tmp_path / "theirs.sog", tmp_path / "decoded.ply")
    mine = read_splats(tmp_path / "theirs.sog")
    theirs = matched(read_their_ply(tmp_path / "decoded.ply"), mine)
    assert_same_decoding(mine, theirs, opacity_tol=1 / 255)
    # splat-transform truncates where we round: twice our bounds for positions, rotations and
    # opacity; its codebooks and palette are its own. Its WebP encoder drops the colour of
    # texels whose alpha (opacity byte) is 0, so splats with opacity < 1/255 lose their colour
    # (they are invisible anyway); ours keeps it (tests/test_format_sog.py).
    ref = matched(src, mine)
    visible = sigmoid(ref.opacity_logits) >= 1 / 255
    lost = mine.sh_dc[~visible]
    assert len(lost) and (lost == mine.sh_dc[~visible][:1, :1]).all()  # codebook entry 0
    assert_within(mine.subset(visible), ref.subset(visible),
                  pos=sog_position_bound(ref, 65535)[visible], rot=4 * math.sqrt(3) * DELTA,
                  log_scale=0.1, dc=0.1, opacity=1 / 255 + 1e-6, sh_rms=0.7)


# splat-transform stores .glb as glTF = diag(−1, −1, 1)·file (a half turn about Z); we store
# and read glTF = diag(1, −1, −1)·file (Blender's convention, GLTF_FROM_RDF). So its .glb of a
# .ply reads here as that .ply turned 180° about the 3DGS frame's up axis, Y (documented in
# blender_gs_addon/formats/gltf.py and formats/__init__.py "Frames").
SPLAT_TRANSFORM_GLB_TURN = np.diag([-1.0, 1.0, -1.0])


def test_we_read_splat_transform_glb_turned_about_the_up_axis_as_documented(tmp_path):
    src = grid_splats(3)
    write_splats(tmp_path / "in.ply", src)
    splat_transform(tmp_path / "in.ply", tmp_path / "theirs.glb")
    mine = read_splats(tmp_path / "theirs.glb")
    np.testing.assert_array_equal(SPLAT_TRANSFORM_GLB_TURN,
                                  GLTF_FROM_RDF @ np.diag([-1.0, -1.0, 1.0]))
    turned = src.transformed(np.diag([*SPLAT_TRANSFORM_GLB_TURN.diagonal(), 1.0]))
    ref = matched(turned, mine)
    # The two frame changes turn a quaternion differently (conjugation, left multiplication):
    # the same Gaussian (a half turn about one of its own axes), so compare covariances.
    np.testing.assert_allclose(covariance(mine), covariance(ref), rtol=1e-5, atol=1e-12)
    ref.rotations = mine.rotations
    assert_within(mine, ref, pos=1e-5, rot=0, log_scale=1e-5, dc=0, opacity=1e-7, sh_max=1e-5)
    # and our own .glb of the .ply reads back as the .ply itself (no turn)
    write_splats(tmp_path / "ours.glb", src)
    ours = read_splats(tmp_path / "ours.glb")
    np.testing.assert_array_equal(ours.positions, src.positions)
    np.testing.assert_array_equal(ours.sh_rest, src.sh_rest)


def test_spz_frames_differ_by_a_half_turn_about_x_as_documented(tmp_path):
    src = grid_splats(4, degree=1)
    write_splats(tmp_path / "in.ply", src)
    splat_transform(tmp_path / "in.ply", tmp_path / "theirs.spz")
    # Reading their .spz as Niantic's RUB storage turns the data 180° about X.
    turned = read_splats(tmp_path / "theirs.spz")
    back = rub_to_rdf(turned)  # undo the turn our reader made
    ref = matched(src, back)
    assert np.abs(back.positions - ref.positions).max() <= 2.0**-12
    error = np.linalg.norm(covariance(back) - covariance(ref), axis=(1, 2))
    assert (error <= 0.15 * np.linalg.norm(covariance(ref), axis=(1, 2))).all()
    np.testing.assert_allclose(back.sh_rest, ref.sh_rest, atol=8.5 / 128)
