"""The fit backend, metrics, evaluation and the reconstruct / eval / render commands, on a small
synthetic data set rendered with our own rasterizer (no Blender needed)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import write_rendered_dataset

torch = pytest.importorskip("torch")

from blender_gs_addon import GSError  # noqa: E402
from blender_gs_addon.capture.rigs import sphere_rig  # noqa: E402
from blender_gs_addon.conventions.frames import splats_file_to_world, splats_world_to_file  # noqa: E402
from blender_gs_addon.datasets.nerf_synthetic import read_transforms  # noqa: E402
from blender_gs_addon.formats import read_splats, write_splats  # noqa: E402
from blender_gs_addon.reconstruction.evaluate import evaluate_splats  # noqa: E402
from blender_gs_addon.reconstruction.fit import (  # noqa: E402
    carve_random_points,
    fit_preset,
    fit_splats,
    views_from_dataset,
)
from blender_gs_addon.reconstruction.image_metrics import psnr, ssim, ssim_reference  # noqa: E402
from blender_gs_addon.reconstruction.pipeline import reconstruct  # noqa: E402
from blender_gs_addon.samples import sample_splats  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RES = 32


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """12 train + 3 test views at 32² of a 400-splat torus, rendered on black (RGBA)."""
    root = tmp_path_factory.mktemp("fitdata")
    truth = splats_file_to_world(sample_splats("torus", count=400, sh_degree=0, seed=3))
    truth.log_scales += np.float32(math.log(3.0))  # visible at 32 px
    views = sphere_rig(count=12, radius=2.5, fov_deg=40, width=RES, height=RES).to_views(
        root / "train", split="train")
    test = sphere_rig(count=3, radius=2.5, fov_deg=40, width=RES, height=RES)
    test.names = [f"t{i}" for i in range(3)]
    test.camera_to_world = test.camera_to_world @ np.diag([1.0, 1.0, 1.0, 1.0])
    views += test.to_views(root / "test", split="test")
    write_rendered_dataset(root, truth, views)
    write_splats(root / "truth.ply", splats_world_to_file(truth))
    return root


def test_ssim_matches_direct_definition_and_psnr_is_exact(rng):
    a = torch.from_numpy(rng.uniform(size=(1, 16, 14, 3)).astype(np.float32))
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    assert float(ssim(a, b)) == pytest.approx(ssim_reference(a, b), abs=1e-5)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    mse = float(((a - b) ** 2).mean())
    assert psnr(a, b) == pytest.approx(-10 * math.log10(mse), rel=1e-6)
    assert psnr(a, a) == math.inf


def test_truth_scores_high_and_file_frames_round_trip(dataset_dir):
    dataset = read_transforms(dataset_dir)
    truth = splats_file_to_world(read_splats(dataset_dir / "truth.ply"))
    metrics = evaluate_splats(truth, dataset, split="test")
    # Only 8-bit quantisation separates the truth from its own renders.
    assert metrics["psnr"] > 45 and metrics["ssim"] > 0.99 and metrics["views"] == 3


def test_carving_keeps_points_inside_silhouettes(dataset_dir):
    dataset = read_transforms(dataset_dir)
    views = views_from_dataset(dataset.split_views("train"))
    gen = torch.Generator().manual_seed(0)
    points, colours, fraction = carve_random_points(views, count=500, extent=0.5, gen=gen)
    assert 0 < fraction < 0.5 and len(points) == 500
    # Every kept point projects onto an opaque pixel in every view that sees it.
    for i in range(views.count):
        cam = points @ views.viewmats[i, :3, :3].T + views.viewmats[i, :3, 3]
        k = views.Ks[i]
        u = (k[0, 0] * cam[:, 0] / cam[:, 2] + k[0, 2]).floor().long()
        v = (k[1, 1] * cam[:, 1] / cam[:, 2] + k[1, 2]).floor().long()
        inside = (u >= 0) & (u < RES) & (v >= 0) & (v < RES)
        alpha = views.images[i, v[inside], u[inside], 3]
        assert bool((alpha >= 0.5).all())
    assert bool(((colours >= 0) & (colours <= 1)).all())


def test_fit_learns_the_scene_reproducibly(dataset_dir):
    dataset = read_transforms(dataset_dir)
    views = views_from_dataset(dataset.split_views("train"))
    config = fit_preset("cpu", steps=120, init_count=800, refine_start=40, refine_stop=100,
                        refine_every=30, sh_interval=60)
    seen = []
    first = fit_splats(views=views, config=config, seed=7, progress=seen.append)
    assert first.steps_run == 120 and first.stopped == ""
    assert np.mean(first.history[-20:]) < 0.5 * np.mean(first.history[:5])
    assert seen and seen[-1].step == 120 and seen[-1].eta == pytest.approx(0.0, abs=1e-6)
    before = evaluate_splats(splats_file_to_world(sample_splats("random", count=10, seed=1)),
                             dataset)["psnr"]
    after = evaluate_splats(first.splats, dataset)["psnr"]
    assert after > 20.0 and after > before + 5
    again = fit_splats(views=views, config=config, seed=7)
    assert np.array_equal(first.splats.positions, again.splats.positions)


def test_fit_cancel_and_nan_keep_a_good_state(dataset_dir, monkeypatch):
    import blender_gs_addon.reconstruction.image_metrics as metrics

    dataset = read_transforms(dataset_dir)
    views = views_from_dataset(dataset.split_views("train"))
    config = fit_preset("cpu", steps=50, init_count=300, snapshot_every=5)
    calls = {"n": 0}

    def stop_after_five():
        calls["n"] += 1
        return calls["n"] > 5

    cancelled = fit_splats(views=views, config=config, should_stop=stop_after_five)
    assert cancelled.stopped == "cancelled" and cancelled.steps_run == 5

    real = metrics.l1_dssim_loss
    step = {"n": 0}

    def poisoned(render, target, **kw):
        step["n"] += 1
        loss = real(render, target, **kw)
        return loss * float("nan") if step["n"] > 12 else loss

    monkeypatch.setattr(metrics, "l1_dssim_loss", poisoned)
    messages = []
    result = fit_splats(views=views, config=config, report=lambda lv, m: messages.append(m))
    assert "loss became nan at step 12" in result.stopped
    assert any("fit stopped" in m for m in messages)
    assert result.splats.finite_mask().all() and result.splats.count > 0


def test_fit_densifies_prunes_and_raises_the_sh_degree_on_schedule(dataset_dir):
    """gsplat's DefaultStrategy refines only at step > refine_start, every refine_every."""
    dataset = read_transforms(dataset_dir)
    views = views_from_dataset(dataset.split_views("train"))
    common = dict(steps=90, init_count=400, refine_start=20, refine_every=20, refine_stop=80,
                  sh_interval=30, sh_degree=2)
    refine_steps = {s for s in range(90) if 20 < s < 80 and s % 20 == 0}  # {40, 60}

    def changes(counts):
        return {s for s in range(1, len(counts)) if counts[s] != counts[s - 1]}

    grown = fit_splats(views=views, config=fit_preset("cpu", grow_grad2d=1e-7, **common))
    assert grown.sh_degrees == [0] * 30 + [1] * 30 + [2] * 30
    assert grown.splat_counts[0] == 400 and grown.splat_counts[-1] > 400
    assert changes(grown.splat_counts) and changes(grown.splat_counts) <= refine_steps
    assert grown.splats.count == grown.splat_counts[-1]

    pruned = fit_splats(views=views, config=fit_preset("cpu", grow_grad2d=1e9,
                                                       prune_opacity=0.1, **common))
    assert pruned.splat_counts[-1] < 400
    assert changes(pruned.splat_counts) and changes(pruned.splat_counts) <= refine_steps
    assert (1 / (1 + np.exp(-pruned.splats.opacity_logits))).min() > 0.0


def test_fit_stops_on_nan_gradients_with_the_previous_steps_state(dataset_dir, monkeypatch):
    import blender_gs_addon.reconstruction.image_metrics as metrics

    dataset = read_transforms(dataset_dir)
    views = views_from_dataset(dataset.split_views("train"))
    config = fit_preset("cpu", steps=40, init_count=300)

    class NanGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("nan")

    real = metrics.l1_dssim_loss
    calls = {"n": 0}

    def poisoned(render, target, **kw):
        calls["n"] += 1
        return real(NanGrad.apply(render) if calls["n"] > 12 else render, target, **kw)

    monkeypatch.setattr(metrics, "l1_dssim_loss", poisoned)
    result = fit_splats(views=views, config=config, seed=3)
    monkeypatch.setattr(metrics, "l1_dssim_loss", real)
    assert "gradients became non-finite at step 12" in result.stopped
    assert result.steps_run == 12 and len(result.history) == 12
    # Exactly the parameters after 12 good steps: a cancelled run at that point agrees.
    polls = {"n": 0}

    def stop_at_twelve():
        polls["n"] += 1
        return polls["n"] > 12

    reference = fit_splats(views=views, config=config, seed=3, should_stop=stop_at_twelve)
    assert reference.steps_run == 12
    np.testing.assert_array_equal(result.splats.positions, reference.splats.positions)
    np.testing.assert_array_equal(result.splats.sh_dc, reference.splats.sh_dc)


def test_gsplat_probe_falls_back_once_when_the_cuda_extension_is_missing(monkeypatch):
    import types

    from blender_gs_addon import devices

    fake = types.ModuleType("gsplat.cuda._backend")
    fake._C = None
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", fake)
    import gsplat.cuda

    monkeypatch.setattr(gsplat.cuda, "_backend", fake, raising=False)
    monkeypatch.setattr(devices, "_GSPLAT_STATE", {})
    messages = []
    assert devices.gsplat_cuda_available(report=lambda lv, m: messages.append((lv, m))) is False
    assert devices.gsplat_cuda_available(report=lambda lv, m: messages.append((lv, m))) is False
    assert len(messages) == 1 and "WARNING" in messages[0][0]
    assert "pure-torch rasterizer" in messages[0][1] and "nvcc" in messages[0][1]


def test_fit_refuses_bad_images(dataset_dir):
    dataset = read_transforms(dataset_dir)
    views = views_from_dataset(dataset.split_views("train"))
    views.images[2, 3, 4, 0] = float("nan")
    with pytest.raises(GSError, match="NaN"):
        fit_splats(views=views, config=fit_preset("cpu", steps=2))


def test_reconstruct_writes_file_frame_splats_and_scores_them(dataset_dir, tmp_path):
    out = tmp_path / "rec.spz"
    events = []
    result = reconstruct(capture=str(dataset_dir), out=str(out), backend="fit", steps=40,
                         device="cpu", progress=lambda *e: events.append(e))
    assert result["splats"] == str(out.resolve()) and out.is_file()
    assert result["count"] == read_splats(out).count and result["test_views"] == 3
    assert result["psnr"] > 10 and {e[0] for e in events} >= {"load", "fit", "eval", "done"}
    # Scoring the written file through the file→world mapping gives the same PSNR.
    metrics = evaluate_splats(splats_file_to_world(read_splats(out)),
                              read_transforms(dataset_dir))
    assert metrics["psnr"] == pytest.approx(result["psnr"], abs=0.5)  # .spz quantisation


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda root: (root / "train" / "view_003.png").unlink(), "view_003"),
        (lambda root: None, "LGM was trained with 49.1"),
    ],
)
def test_reconstruct_bad_input_names_the_problem(dataset_dir, tmp_path, mutate, words):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(dataset_dir, root)
    mutate(root)
    backend = "lgm" if "LGM" in words else "fit"
    with pytest.raises(GSError, match=words):
        reconstruct(capture=str(root), out=str(tmp_path / "x.ply"), backend=backend,
                    steps=2, device="cpu", weights=str(tmp_path / "none.safetensors"))


def test_eval_and_render_commands(dataset_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "blender_gs_addon", "eval", "--splats",
         str(dataset_dir / "truth.ply"), "--capture", str(dataset_dir), "--json"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)  # strict JSON: a perfect match would print null, not inf
    assert metrics["psnr"] > 45 and 0.99 < metrics["ssim"] <= 1.0
    out = tmp_path / "renders"
    proc = subprocess.run(
        [sys.executable, "-m", "blender_gs_addon", "render", "--splats",
         str(dataset_dir / "truth.ply"), "--cameras", str(dataset_dir / "transforms_test.json"),
         "--out", str(out)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    names = sorted(p.name for p in out.iterdir())
    assert names == ["t0.png", "t1.png", "t2.png"]
    mine = np.asarray(Image.open(out / "t1.png"), dtype=np.float32)
    truth = np.asarray(Image.open(dataset_dir / "test" / "t1.png"), dtype=np.float32)
    assert np.abs(mine - truth).max() <= 1.0  # the same renderer, 8-bit rounding apart


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda_with_gsplat_learns_like_the_cpu(dataset_dir):
    from blender_gs_addon.devices import gsplat_cuda_available

    assert gsplat_cuda_available()  # the fit below runs gsplat's kernels, not the fallback
    dataset = read_transforms(dataset_dir)
    views = views_from_dataset(dataset.split_views("train"))
    config = fit_preset("cpu", steps=120, init_count=800, refine_start=40, refine_stop=100,
                        refine_every=30, sh_interval=60)
    gpu = fit_splats(views=views, config=config, seed=7, device="cuda")
    cpu = fit_splats(views=views, config=config, seed=7, device="cpu")
    assert gpu.stopped == "" and gpu.steps_run == 120
    gpu_psnr = evaluate_splats(gpu.splats, dataset, device="cuda")["psnr"]
    cpu_psnr = evaluate_splats(cpu.splats, dataset)["psnr"]
    assert gpu_psnr > 20.0 and abs(gpu_psnr - cpu_psnr) < 2.0
