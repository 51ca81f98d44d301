"""LGM: network layout against the published checkpoint, weights loading, rig, rays, mapping."""

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from blender_gs_addon import GSError  # noqa: E402
from blender_gs_addon.conventions import frames, lgm_rig  # noqa: E402
from blender_gs_addon.models import lgm_io  # noqa: E402
from blender_gs_addon.models.lgm import (  # noqa: E402
    GAUSSIAN_CHANNELS,
    MultiViewAttention,
    TokenAttention,
    activate_gaussians,
    build_lgm,
    lgm_config,
)
from blender_gs_addon.models.weights import LGM_HUB_REVISION, load_lgm, resolve_lgm_weights  # noqa: E402
from blender_gs_addon.quaternions import quat_to_matrix  # noqa: E402
from blender_gs_addon.sh import SH_C0  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = Path(__file__).parent / "data" / "lgm_big_state_dict_keys.txt"
INSTRUCTION = "huggingface-cli download ashawkey/LGM model_fp16_fixrot.safetensors"


def read_manifest() -> dict[str, tuple[int, ...]]:
    out = {}
    for line in MANIFEST.read_text().splitlines():
        name, shape = line.split(" ", 1)
        out[name] = tuple(json.loads(shape))
    return out


# ---------------------------------------------------------------------------------- network
def test_big_network_has_exactly_the_published_tensors():
    model = build_lgm("big", device=torch.device("meta"))
    assert all(p.is_meta for p in model.parameters())
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    ref = read_manifest()
    assert len(ref) == 376
    assert sorted(set(ours) - set(ref)) == []
    assert sorted(set(ref) - set(ours)) == []
    assert {n: (s, ref[n]) for n, s in ours.items() if s != ref[n]} == {}
    assert sum(math.prod(s) for s in ref.values()) == 415_042_848
    assert sum(p.numel() for p in model.parameters()) == 415_042_848
    # strict loading of a state dict shaped like the manifest succeeds
    model.load_state_dict({n: torch.empty(s, device="meta") for n, s in ref.items()},
                          strict=True, assign=True)


def test_core_and_view_modules_import_without_torch():
    code = ("import sys, blender_gs_addon, blender_gs_addon.models, "
            "blender_gs_addon.models.lgm_io as v, blender_gs_addon.models.weights; "
            "assert v.lgm_rig_cameras().shape == (4, 4, 4); "
            "print(sorted(m for m in ('torch', 'safetensors', 'huggingface_hub') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_lgm("tiny")


def test_tiny_forward_shape_and_activations(tiny):
    torch.manual_seed(1)
    x = torch.randn(2, 4, 9, 32, 32)
    with torch.no_grad():
        raw = tiny.forward_raw(x)
        g = tiny(x)
    assert g.shape == (2, 4 * 16 * 16, 14) and g.dtype == torch.float32
    ch = GAUSSIAN_CHANNELS
    assert g[..., ch.position].abs().max() <= 1
    assert 0 < g[..., ch.opacity].min() and g[..., ch.opacity].max() < 1
    assert g[..., ch.scale].min() > 0
    torch.testing.assert_close(g[..., ch.rotation].norm(dim=-1), torch.ones(2, 1024))
    assert 0 <= g[..., ch.rgb].min() and g[..., ch.rgb].max() <= 1
    torch.testing.assert_close(g[..., ch.opacity], torch.sigmoid(raw[..., 3:4]))
    torch.testing.assert_close(g[..., ch.scale], 0.1 * F.softplus(raw[..., 4:7]))


def test_activations_on_known_values():
    raw = torch.tensor([[2.0, -3.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 4.0,
                         0.0, 100.0, -100.0]])
    g = activate_gaussians(raw)[0]
    ln2 = math.log(2.0)
    expect = [1.0, -1.0, 0.5, 0.5, 0.1 * ln2, 0.1 * ln2, 0.1 * ln2, 0.0, 0.6, 0.0, 0.8,
              0.5, 1.0, 0.0]
    torch.testing.assert_close(g, torch.tensor(expect))


def test_output_order_is_view_major_then_row_major(tiny):
    b, v, h, w = 2, 4, 16, 16
    grid = torch.arange(b * v * 14 * h * w, dtype=torch.float32).reshape(b * v, 14, h, w)

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return grid

    model = build_lgm("tiny")
    model.unet = Fixed()
    with torch.no_grad():
        model.conv.weight.copy_(torch.eye(14).reshape(14, 14, 1, 1))
        model.conv.bias.zero_()
        out = model.forward_raw(torch.zeros(b, v, 9, 32, 32))
    for bi, vi, r, c, k in [(0, 0, 0, 0, 0), (1, 2, 3, 5, 7), (1, 3, 15, 15, 13), (0, 1, 0, 9, 4)]:
        assert out[bi, vi * h * w + r * w + c, k] == grid[bi * v + vi, k, r, c]


def test_views_are_fused_across_views_but_not_across_samples(tiny):
    torch.manual_seed(2)
    x = torch.randn(2, 4, 9, 32, 32)
    y = x.clone()
    y[0, 3] += 1.0  # change only view 3 of sample 0
    with torch.no_grad():
        gx, gy = tiny(x), tiny(y)
    view0 = slice(0, 256)
    assert (gx[0, view0] - gy[0, view0]).abs().max() > 1e-4  # attention carried view 3 over
    torch.testing.assert_close(gx[1], gy[1], rtol=0, atol=1e-6)  # sample 1 untouched


def explicit_attention(module: TokenAttention, tokens: torch.Tensor) -> torch.Tensor:
    b, n, c = tokens.shape
    heads, d = module.heads, c // module.heads
    qkv = (tokens @ module.qkv.weight.T).reshape(b, n, 3, heads, d)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # [B, heads, N, d]
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n, c)
    return out @ module.proj.weight.T + module.proj.bias


def test_sdpa_attention_matches_explicit_softmax_forward_and_backward():
    torch.manual_seed(3)
    module = TokenAttention(32, 4).double()
    tokens = torch.randn(2, 50, 32, dtype=torch.float64, requires_grad=True)
    ours = module(tokens)
    ref = explicit_attention(module, tokens)
    torch.testing.assert_close(ours, ref)
    upstream = torch.randn_like(ours)
    params = [tokens, module.qkv.weight, module.proj.weight, module.proj.bias]
    g_ours = torch.autograd.grad(ours, params, upstream)
    g_ref = torch.autograd.grad(ref, params, upstream)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)


def test_multiview_attention_attends_over_all_views_tokens():
    torch.manual_seed(4)
    cfg = lgm_config("tiny")
    module = MultiViewAttention(32, cfg).double()
    x = torch.randn(2 * 4, 32, 3, 5, dtype=torch.float64)  # [B·V, C, H, W]
    normed = module.norm(x)
    # tokens of sample b: every pixel of every view, one row each
    tokens = torch.stack([
        torch.cat([normed[b * 4 + v].reshape(32, -1).T for v in range(4)]) for b in range(2)])
    attended = explicit_attention(module.attn, tokens)  # [B, 4·15, C]
    back = torch.cat([attended[b, v * 15:(v + 1) * 15].T.reshape(1, 32, 3, 5)
                      for b in range(2) for v in range(4)])
    torch.testing.assert_close(module(x), (back + x) * cfg.skip_scale)


# ---------------------------------------------------------------------------------- weights
@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def tiny_state(tiny):
    return {name: t.detach().clone() for name, t in tiny.state_dict().items()}


def assert_same_weights(model, state):
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        torch.testing.assert_close(loaded[name], tensor.to(loaded[name].dtype), rtol=0, atol=0)


def test_load_from_file_offline(tmp_path, tiny, tiny_state, no_network):
    path = tmp_path / "tiny.safetensors"
    save_file(tiny_state, str(path))
    model = load_lgm(path, variant="tiny", device="cpu")
    assert_same_weights(model, tiny_state)
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training
    x = torch.randn(1, 4, 9, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tiny(x))


def test_fp16_checkpoint_is_upcast_on_cpu(tmp_path, tiny_state, no_network):
    half = {n: t.half() for n, t in tiny_state.items()}
    save_file(half, str(tmp_path / "model_fp16_fixrot.safetensors"))
    model = load_lgm(tmp_path, variant="tiny", device="cpu")  # the folder
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert_same_weights(model, {n: t.float() for n, t in half.items()})


def test_folder_with_fp32_fixrot_file_and_folder_with_old_weights(tmp_path, tiny_state,
                                                                   no_network):
    good, old = tmp_path / "good", tmp_path / "old"
    good.mkdir()
    old.mkdir()
    save_file(tiny_state, str(good / "model_fixrot.safetensors"))
    assert resolve_lgm_weights(good) == good / "model_fixrot.safetensors"
    assert_same_weights(load_lgm(good, variant="tiny", device="cpu"), tiny_state)
    save_file(tiny_state, str(old / "model_fp16.safetensors"))
    with pytest.raises(GSError, match="rotation normalisation bug") as err:
        load_lgm(old, variant="tiny", device="cpu")
    assert INSTRUCTION in str(err.value)


def hub_snapshot(cache: Path, revision: str = LGM_HUB_REVISION) -> Path:
    folder = cache / "models--ashawkey--LGM" / "snapshots" / revision
    folder.mkdir(parents=True)
    return folder


def test_hub_cache_is_used_offline(tmp_path, tiny_state, no_network):
    cache = tmp_path / "hub"
    save_file(tiny_state, str(hub_snapshot(cache) / "model_fp16_fixrot.safetensors"))
    model = load_lgm(None, variant="tiny", device="cpu", cache_dir=cache)  # HF_HUB_OFFLINE=1
    assert_same_weights(model, tiny_state)
    # a branch name resolves through refs/ in the cache, still without network
    refs = cache / "models--ashawkey--LGM" / "refs"
    refs.mkdir()
    (refs / "main").write_text(LGM_HUB_REVISION)
    path = resolve_lgm_weights(None, cache_dir=cache, revision="main", offline=True)
    assert path.name == "model_fp16_fixrot.safetensors" and path.is_file()


def test_hub_download_is_called_when_not_cached(tmp_path, tiny_state, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    stored = tmp_path / "downloaded.safetensors"
    save_file(tiny_state, str(stored))
    calls = []

    def fake_download(repo_id, filename, *, revision, cache_dir=None, local_files_only=False,
                      etag_timeout=10.0, **kwargs):
        calls.append((repo_id, filename, revision, local_files_only, etag_timeout))
        if local_files_only:
            raise FileNotFoundError("not cached")
        return str(stored)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    messages = []
    model = load_lgm(None, variant="tiny", device="cpu",
                     report=lambda levels, msg: messages.append(msg))
    assert_same_weights(model, tiny_state)
    online = [c for c in calls if not c[3]]
    assert online == [("ashawkey/LGM", "model_fp16_fixrot.safetensors", LGM_HUB_REVISION,
                       False, online[0][4])]
    assert online[0][4] <= 10  # short metadata timeout: a dead network fails fast
    assert any("downloading" in m for m in messages)


def test_missing_weights_offline_explains_how_to_get_them(tmp_path, no_network):
    with pytest.raises(GSError) as err:
        load_lgm(None, variant="tiny", device="cpu", cache_dir=tmp_path / "empty")
    message = str(err.value)
    assert INSTRUCTION in message and "--local-dir" in message
    assert "offline" in message and "weights=" in message
    assert f"https://huggingface.co/ashawkey/LGM/resolve/{LGM_HUB_REVISION}/" in message


def test_network_failure_gives_instructions(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def failing(repo_id, filename, *, local_files_only=False, **kwargs):
        if local_files_only:
            raise FileNotFoundError("not cached")
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing)
    with pytest.raises(GSError, match="could not be downloaded") as err:
        resolve_lgm_weights(None, cache_dir=tmp_path)
    assert "ConnectionError" in str(err.value) and INSTRUCTION in str(err.value)


def test_pickle_checkpoints_are_refused_without_unpickling(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", forbidden)
    for suffix in (".pt", ".pth", ".bin", ".ckpt"):
        path = tmp_path / f"model{suffix}"
        path.write_bytes(b"\x80\x04K\x01.")  # a valid pickle of the int 1
        with pytest.raises(GSError, match="pickle") as err:
            load_lgm(path, variant="tiny", device="cpu")
        assert str(path) in str(err.value)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "model_fp16_fixrot.safetensors"
    path.write_bytes(b"PK\x03\x04 this is a zip, not safetensors" * 10)
    with pytest.raises(GSError, match="not a readable safetensors file"):
        load_lgm(path, variant="tiny", device="cpu")


def test_wrong_tensors_are_refused_with_names(tmp_path, tiny_state):
    def check(state, *needles):
        path = tmp_path / "w.safetensors"
        save_file(state, str(path))
        with pytest.raises(GSError) as err:
            load_lgm(path, variant="tiny", device="cpu")
        for needle in needles:
            assert needle in str(err.value)

    missing = dict(tiny_state)
    del missing["conv.bias"], missing["unet.conv_in.weight"]
    check(missing, "2 missing", "conv.bias", "unet.conv_in.weight")
    check({**tiny_state, "lpips_loss.net.weight": torch.zeros(3)}, "unexpected",
          "lpips_loss.net.weight")
    check({**tiny_state, "conv.weight": torch.zeros(14, 14, 3, 3)}, "wrong shape", "conv.weight")
    check({**tiny_state, "conv.bias": torch.zeros(14, dtype=torch.int32)}, "not floating",
          "conv.bias")
    bad = dict(tiny_state)
    bad["unet.norm_out.weight"] = bad["unet.norm_out.weight"].clone()
    bad["unet.norm_out.weight"][3] = float("nan")
    check(bad, "NaN", "unet.norm_out.weight")
    with pytest.raises(GSError, match="not found"):
        load_lgm(tmp_path / "nope.safetensors", variant="tiny", device="cpu")
    save_file(tiny_state, str(tmp_path / "tiny.safetensors"))
    with pytest.raises(GSError, match="missing"):  # tiny weights for the big network
        load_lgm(tmp_path / "tiny.safetensors", variant="big", device="cpu")
    with pytest.raises(GSError, match="unknown LGM variant"):
        load_lgm(tmp_path / "tiny.safetensors", variant="huge", device="cpu")


# ---------------------------------------------------------------------------------- rig, rays
def test_rig_cameras_in_blender_and_gl_worlds():
    bl = lgm_rig.lgm_rig_cameras()
    expected_centres = np.array([[0, -1.5, 0], [1.5, 0, 0], [0, 1.5, 0], [-1.5, 0, 0]])
    np.testing.assert_allclose(bl[:, :3, 3], expected_centres, atol=1e-12)
    for cam in bl:
        view_dir = -cam[:3, 2]  # OpenGL cameras look down −z
        np.testing.assert_allclose(view_dir, -cam[:3, 3] / 1.5, atol=1e-12)  # at the origin
        np.testing.assert_allclose(cam[:3, 1], [0, 0, 1], atol=1e-12)  # upright in Blender
        np.testing.assert_allclose(cam[:3, :3].T @ cam[:3, :3], np.eye(3), atol=1e-12)
        assert np.linalg.det(cam[:3, :3]) == pytest.approx(1.0)
    gl = lgm_rig.lgm_rig_cameras_gl()
    np.testing.assert_allclose(gl[0], np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.5],
                                                [0, 0, 0, 1]]), atol=1e-12)
    np.testing.assert_allclose(gl[1, :3, 3], [1.5, 0, 0], atol=1e-12)  # azimuth 90° on +x


def test_plucker_rays_are_valid_lines():
    rays = lgm_io.lgm_input_rays()
    assert rays.shape == (4, 6, 256, 256) and rays.dtype == np.float32
    moment, d = rays[:, :3].astype(np.float64), rays[:, 3:].astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose((moment * d).sum(axis=1), 0.0, atol=1e-6)
    # every ray of a camera passes through that camera's centre: moment = o × d
    centres = lgm_rig.lgm_rig_cameras_gl()[:, :3, 3]
    np.testing.assert_allclose(moment, np.cross(centres[:, :, None, None], d, axis=1),
                               atol=1e-6)


def test_centre_and_corner_rays():
    odd = lgm_io.plucker_rays(lgm_rig.lgm_rig_cameras_gl(), size=255)
    np.testing.assert_allclose(odd[0, :, 127, 127], [0, 0, 0, 0, 0, -1], atol=1e-6)  # at origin
    np.testing.assert_allclose(odd[1, :, 127, 127], [0, 0, 0, -1, 0, 0], atol=1e-6)
    even = lgm_io.lgm_input_rays()
    centre = even[0, 3:, 127:129, 127:129].reshape(3, 4).mean(axis=1)
    np.testing.assert_allclose(centre / np.linalg.norm(centre), [0, 0, -1], atol=1e-7)
    focal = 128 / math.tan(math.radians(49.1 / 2))
    corner = np.array([-127.5 / focal, 127.5 / focal, -1.0])  # top-left: left and up
    np.testing.assert_allclose(even[0, 3:, 0, 0], corner / np.linalg.norm(corner), atol=1e-6)


def rotation_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    return out


def test_rebasing_makes_rays_independent_of_a_global_rotation():
    turned = rotation_z(30.0) @ lgm_rig.lgm_rig_cameras()
    np.testing.assert_allclose(lgm_io.lgm_input_rays(turned), lgm_io.lgm_input_rays(),
                               atol=1e-5)


def test_rig_check_accepts_the_rig_and_names_the_bad_frame():
    names = [f"./r_{i}.png" for i in range(4)]
    rig = lgm_rig.lgm_rig_cameras()
    lgm_io.check_lgm_rig(rig, names=names, fovy_deg=49.1)
    # as stored in a transforms.json: float32 after a JSON round trip
    lgm_io.check_lgm_rig(np.array(json.loads(json.dumps(rig.tolist())), np.float32))
    moved = rig.copy()
    moved[2, 0, 3] += 0.1
    with pytest.raises(GSError, match=r"r_2\.png") as err:
        lgm_io.check_lgm_rig(moved, names=names, source="transforms.json")
    assert "r_1" not in str(err.value) and "transforms.json" in str(err.value)
    swapped = rig[[0, 3, 2, 1]]
    with pytest.raises(GSError) as err:
        lgm_io.check_lgm_rig(swapped, names=names)
    assert "r_1" in str(err.value) and "r_3" in str(err.value) and "r_0" not in str(err.value)
    tilted = rig.copy()
    tilted[0] = tilted[0] @ rotation_z(5.0)  # rolled about its own view axis
    with pytest.raises(GSError, match="rotated 5.00°"):
        lgm_io.check_lgm_rig(tilted)
    with pytest.raises(GSError, match="exactly 4 views"):
        lgm_io.check_lgm_rig(rig[:3])
    with pytest.raises(GSError, match="field of view"):
        lgm_io.check_lgm_rig(rig, fovy_deg=60.0)


# ---------------------------------------------------------------------------------- mapping
def gaussian(pos, opacity=0.9, scale=(0.01, 0.02, 0.03), rot=(1, 0, 0, 0), rgb=(0.5, 0.5, 0.5)):
    return [*pos, opacity, *scale, *rot, *rgb]


def test_output_mapping_of_known_gaussians():
    h = math.sqrt(0.5)
    g = np.array([
        gaussian((0, 1, 0)),
        gaussian((0.25, 0.5, 0.75), opacity=0.5, rot=(h, 0, h, 0), rgb=(1, 0.5, 0)),
        gaussian((0, 0, 0), opacity=0.004),  # below the reference export's threshold
    ], np.float32)
    messages = []
    splats = lgm_io.gaussians_to_splats(torch.from_numpy(g)[None],
                                           report=lambda lv, m: messages.append(m))
    assert splats.count == 2 and any("kept 2 of 3" in m for m in messages)
    np.testing.assert_allclose(splats.positions, [[0, 0, 1], [0.25, -0.75, 0.5]], atol=1e-7)
    np.testing.assert_allclose(splats.log_scales, np.log([[0.01, 0.02, 0.03]] * 2), rtol=1e-6)
    np.testing.assert_allclose(splats.opacity_logits, [math.log(9.0), 0.0], atol=1e-5)
    np.testing.assert_allclose(splats.sh_dc[1], [0.5 / SH_C0, 0, -0.5 / SH_C0], rtol=1e-6)
    np.testing.assert_allclose(splats.rotations[0], [h, h, 0, 0], atol=1e-7)  # +90° about X
    # rotations: R_blender = R_x(90°) · R_gl, so covariances map like the positions
    rx = frames.BLENDER_FROM_Y_UP
    np.testing.assert_allclose(quat_to_matrix(splats.rotations[1]),
                               rx @ quat_to_matrix(np.array([h, 0, h, 0])), atol=1e-6)
    assert splats.sh_rest.shape == (2, 0, 3)


def test_output_mapping_undoes_rebasing_of_turned_cameras():
    g = np.array([gaussian((0.1, 0.2, 0.3)), gaussian((-0.4, 0.0, 0.2))], np.float32)
    plain = lgm_io.gaussians_to_splats(g)
    turned = lgm_io.gaussians_to_splats(g, cameras=rotation_z(30.0)
                                           @ lgm_rig.lgm_rig_cameras())
    np.testing.assert_allclose(turned.positions, plain.positions @ rotation_z(30.0)[:3, :3].T,
                               atol=1e-6)


def test_output_mapping_refuses_bad_input():
    with pytest.raises(GSError, match="none of the 1"):
        lgm_io.gaussians_to_splats(np.array([gaussian((0, 0, 0), opacity=0.001)]))
    with pytest.raises(GSError, match="expected Gaussians"):
        lgm_io.gaussians_to_splats(np.zeros((2, 5, 14)))


def test_tiny_output_maps_to_valid_splats(tiny):
    with torch.no_grad():
        g = tiny(torch.randn(1, 4, 9, 32, 32))
    splats = lgm_io.gaussians_to_splats(g, min_opacity=0.0)
    splats.validate(require_finite=True)
    assert splats.count == 1024
    np.testing.assert_allclose(np.linalg.norm(splats.rotations, axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------------- input
def rgba(size, color=(0, 0, 0), alpha=255):
    img = np.zeros((size, size, 4), np.uint8)
    img[..., :3] = color
    img[..., 3] = alpha
    return img


def test_input_composites_on_white_and_normalises():
    mean = np.array(lgm_io.IMAGENET_MEAN)[:, None, None]
    std = np.array(lgm_io.IMAGENET_STD)[:, None, None]
    half_black = np.zeros((256, 256, 4), np.float32)
    half_black[..., 3] = 0.5
    images = [rgba(256, alpha=0), rgba(256, (255, 0, 0)), half_black,
              rgba(256, (0, 255, 0))[..., :3]]  # the last one RGB only
    x = lgm_io.build_lgm_input(images, lgm_rig.lgm_rig_cameras())
    assert x.shape == (1, 4, 9, 256, 256) and x.dtype == torch.float32
    rgb = x[0, :, :3].numpy() * std[None] + mean[None]  # [4, 3, 256, 256]
    expected = [(1, 1, 1), (1, 0, 0), (0.5, 0.5, 0.5), (0, 1, 0)]  # transparent → white
    for view, colour in zip(rgb, expected):
        np.testing.assert_allclose(view, np.broadcast_to(np.array(colour)[:, None, None],
                                                         view.shape), atol=1e-6)
    np.testing.assert_allclose(x[0, :, 3:].numpy(), lgm_io.lgm_input_rays(), atol=0)


def test_input_resize_is_bilinear_without_corner_alignment():
    stripes = np.zeros((512, 512, 3), np.float32)
    stripes[:, 1::2] = 1.0  # alternating columns: a 2× bilinear (half-pixel) shrink averages
    x = lgm_io.build_lgm_input([stripes] * 4)
    rgb = x[0, 0, :3].numpy() * np.array(lgm_io.IMAGENET_STD)[:, None, None] \
        + np.array(lgm_io.IMAGENET_MEAN)[:, None, None]
    np.testing.assert_allclose(rgb, 0.5, atol=1e-6)


def test_input_refuses_bad_views():
    four = [rgba(64)] * 4
    with pytest.raises(GSError, match="exactly 4 views"):
        lgm_io.build_lgm_input(four[:3])
    with pytest.raises(GSError, match="square"):
        lgm_io.build_lgm_input([np.zeros((64, 32, 4), np.uint8)] * 4)
    with pytest.raises(GSError, match="differ in size"):
        lgm_io.build_lgm_input(four[:3] + [rgba(32)])
    moved = lgm_rig.lgm_rig_cameras()
    moved[1, 2, 3] = 0.5
    with pytest.raises(GSError, match="r_1"):
        lgm_io.build_lgm_input(four, moved, names=[f"r_{i}" for i in range(4)])


def test_predict_splats_end_to_end_with_tiny_model(tiny):
    images = [rgba(512, (200, 30, 30), alpha=0) for _ in range(4)]
    for img in images:
        img[192:320, 192:320, 3] = 255  # an opaque square in the middle of every view
    messages = []
    splats = lgm_io.predict_splats(tiny, images, lgm_rig.lgm_rig_cameras(),
                                      min_opacity=0.0, report=lambda lv, m: messages.append(m))
    assert splats.count == 4 * 128 * 128
    splats.validate(require_finite=True)
    assert np.abs(splats.positions).max() <= 1.0 + 1e-6
