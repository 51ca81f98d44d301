"""The LGM backends end to end: reconstruct(backend="lgm" / "lgm+fit") on a 4-view LGM-rig
capture with random weights of the tiny LGM variant, loaded from safetensors by the real
loader; the model cache of a warm worker; cancel between stages; the reconstruct command.

The capture is rendered with our own rasterizer (no Blender): LGM's rig at 64², plus one
held-out view so the evaluation stage runs too.
"""

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
pytest.importorskip("safetensors")

from safetensors.torch import save_file  # noqa: E402

from blender_gs_addon.capture.rigs import lgm_rig, sphere_rig  # noqa: E402
from blender_gs_addon.conventions.frames import splats_file_to_world  # noqa: E402
from blender_gs_addon.datasets.nerf_synthetic import read_transforms  # noqa: E402
from blender_gs_addon.formats import read_splats  # noqa: E402
from blender_gs_addon.models.lgm import build_lgm, lgm_config  # noqa: E402
from blender_gs_addon.models.lgm_io import LGM_INPUT_SIZE  # noqa: E402
from blender_gs_addon.reconstruction import pipeline as reconstruct_module  # noqa: E402
from blender_gs_addon.reconstruction.pipeline import reconstruct  # noqa: E402
from blender_gs_addon.samples import sample_splats  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RES = 64
# Every pixel of the 4 views at the network's input size, one Gaussian per output pixel.
LGM_COUNT = 4 * (LGM_INPUT_SIZE // lgm_config("tiny").output_stride) ** 2


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """LGM's four views (azimuth 0/90/180/270°, fov 49.1°, radius 1.5) at 64² and one test
    view of a 400-splat torus, RGBA with straight alpha like a Blender capture."""
    root = tmp_path_factory.mktemp("lgmcapture")
    truth = splats_file_to_world(sample_splats("torus", count=400, sh_degree=0, seed=3))
    truth.log_scales += np.float32(math.log(3.0))  # visible at 64 px
    views = lgm_rig(resolution=RES).to_views(root / "train", split="train")
    test = sphere_rig(count=1, radius=1.5, fov_deg=49.1, width=RES, height=RES)
    test.names = ["t0"]
    views += test.to_views(root / "test", split="test")
    alpha = write_rendered_dataset(root, truth, views)
    assert all(a.mean() > 0.05 for a in alpha)  # the object is in every view
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random tiny-LGM weights as safetensors. Output biases push opacity up (sigmoid(4) ≈
    0.98, so no Gaussian falls under the export's 0.005 cut and the count is exact) and
    scales down (small footprints keep the CPU rasterizer quick)."""
    torch.manual_seed(0)
    model = build_lgm("tiny")
    with torch.no_grad():
        model.conv.bias[3] = 4.0
        model.conv.bias[4:7] = -3.0
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
              str(path))
    return path


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    reconstruct_module._MODEL_CACHE.clear()
    yield
    reconstruct_module._MODEL_CACHE.clear()


def _run(capture, weights, out, **kwargs):
    events, logs = [], []
    result = reconstruct(capture=str(capture), out=str(out), device="cpu", seed=1,
                         weights=str(weights), variant="tiny",
                         progress=lambda *e: events.append(e),
                         report=lambda levels, message: logs.append(message), **kwargs)
    return result, events, logs


def _expected_splats(capture, weights):
    """What the pipeline should write: the loaded network run on the capture's four views."""
    from blender_gs_addon.datasets.camera_views import load_view_image
    from blender_gs_addon.models.lgm_io import predict_splats
    from blender_gs_addon.models.weights import load_lgm

    views = read_transforms(capture).split_views("train")[:4]
    model = load_lgm(weights, variant="tiny", device="cpu", report=lambda *a: None)
    return predict_splats(model, [load_view_image(v) for v in views],
                          np.stack([v.camera_to_world for v in views]),
                          report=lambda *a: None)


def test_lgm_backend_writes_the_networks_splats(capture, weights, tmp_path):
    out = tmp_path / "lgm.ply"
    result, events, logs = _run(capture, weights, out, backend="lgm")
    assert LGM_COUNT == 65536
    assert result["count"] == LGM_COUNT and result["steps"] == 0 and not result["cancelled"]
    assert result["splats"] == str(out.resolve()) and out.is_file()
    assert result["test_views"] == 1 and 0.0 < result["psnr"] < 60.0
    assert [e[0] for e in events][-1] == "done" and {"lgm", "eval"} <= {e[0] for e in events}
    assert sum("loaded LGM tiny weights" in m for m in logs) == 1

    written = read_splats(out)
    assert written.count == LGM_COUNT
    arrays = [written.positions, written.log_scales, written.rotations,
              written.opacity_logits, written.sh_dc]
    assert all(np.isfinite(a).all() for a in arrays)
    # The file holds the network's output, mapped into the file frame and back losslessly.
    expected = _expected_splats(capture, weights)
    world = splats_file_to_world(written)
    np.testing.assert_allclose(world.positions, expected.positions, atol=1e-5)
    np.testing.assert_allclose(world.sh_dc, expected.sh_dc, atol=1e-5)
    np.testing.assert_allclose(world.opacity_logits, expected.opacity_logits, atol=1e-4)
    assert np.abs(world.positions).max() <= 1.0 + 1e-6  # LGM clamps to its [-1, 1]³ box


def test_lgm_plus_fit_refines_the_prediction(capture, weights, tmp_path):
    out = tmp_path / "refined.ply"
    result, events, _ = _run(capture, weights, out, backend="lgm+fit", steps=3)
    assert result["steps"] == 3 and result["stopped"] == "" and not result["cancelled"]
    fit_steps = [e[2] for e in events if e[0] == "fit"]  # throttled: first and last at least
    assert fit_steps[0].startswith("step 1/3,") and fit_steps[-1].startswith("step 3/3,")
    assert events.index(("lgm", 1.0, f"LGM predicted {LGM_COUNT:,} splats")) < \
        [e[0] for e in events].index("fit")
    written = read_splats(out)
    # Three steps are too few for densification or pruning: the LGM splats, refined.
    assert written.count == result["count"] == LGM_COUNT
    assert np.isfinite(written.positions).all() and np.isfinite(written.sh_dc).all()
    lgm = _expected_splats(capture, weights)
    moved = np.abs(splats_file_to_world(written).positions - lgm.positions)
    assert 0.0 < moved.max() < 0.05 and moved.mean() > 1e-5, (moved.max(), moved.mean())


def test_model_cache_keys_on_dtype_and_file(capture, weights, tmp_path):
    logs_all = []
    for dtype in (None, "fp32", "bf16", "bf16"):
        _, _, logs = _run(capture, weights, tmp_path / "c.ply", backend="lgm", dtype=dtype)
        logs_all.append(sum("loaded LGM tiny weights" in m for m in logs))
    # fp32 is the CPU default (same model); bf16 is another model, loaded once.
    assert logs_all == [1, 0, 1, 0]
    (key, model), = reconstruct_module._MODEL_CACHE.items()
    assert "torch.bfloat16" in key and next(model.parameters()).dtype == torch.bfloat16
    # A replaced weights file (new size / time) is read again, not served from the cache.
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(weights.read_bytes())
    _, _, logs = _run(capture, copy, tmp_path / "c.ply", backend="lgm", dtype="bf16")
    assert sum("loaded LGM tiny weights" in m for m in logs) == 1
    with pytest.raises(Exception, match="dtype must be one of fp16, bf16, fp32"):
        _run(capture, weights, tmp_path / "c.ply", backend="lgm", dtype="fp8")


@pytest.mark.parametrize("stop_at", ["lgm", "eval"])
def test_cancel_between_stages_writes_nothing(capture, weights, tmp_path, stop_at):
    # should_stop turns true when the stage starts: after LGM (before the fit), or during
    # the evaluation (before writing).
    seen = []
    out = tmp_path / "never.ply"
    result = reconstruct(capture=str(capture), out=str(out), backend="lgm+fit", steps=2,
                         device="cpu", weights=str(weights), variant="tiny",
                         progress=lambda s, f, m: seen.append(s),
                         should_stop=lambda: stop_at in seen, report=lambda *a: None)
    assert result["cancelled"] is True and not out.exists()
    assert result["steps"] == 0 if stop_at == "lgm" else result["steps"] == 2
    assert "done" not in seen and ("fit" in seen) == (stop_at == "eval")


def test_warm_worker_loads_the_model_once(capture, weights, tmp_path):
    from blender_gs_addon.worker.client import WorkerClient
    from blender_gs_addon.worker.transfer import dataset_bundle

    with WorkerClient(env={"OMP_NUM_THREADS": "2"}) as client:
        loads, files = [], []
        for i in range(2):
            events = []
            # The data set travels in-band; the splats come back into download_dir.
            client.run("reconstruct", {
                "backend": "lgm", "device": "cpu", "weights": str(weights), "variant": "tiny",
                "dtype": "fp32", "output": "splats.ply",
            }, timeout=120, on_event=events.append, upload=dataset_bundle(capture),
                download_dir=tmp_path / f"w{i}")
            loads.append(sum("loaded LGM tiny weights" in e.message for e in events
                             if e.kind == "log"))
            files.append(tmp_path / f"w{i}" / "splats.ply")
        assert loads == [1, 0]
        assert [read_splats(f).count for f in files] == [LGM_COUNT, LGM_COUNT]
        assert files[0].read_bytes() == files[1].read_bytes()


def test_reconstruct_command_fit(capture, tmp_path):
    out = tmp_path / "x.ply"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "blender_gs_addon", "reconstruct", "--capture", str(capture),
         "--backend", "fit", "--steps", "5", "--device", "cpu", "--seed", "1", "--dtype", "fp32",
         "--out", str(out), "--json"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 5 and summary["backend"] == "fit" and summary["device"] == "cpu"
    assert out.is_file() and read_splats(out).count == summary["count"] > 0
