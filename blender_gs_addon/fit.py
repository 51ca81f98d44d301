"""Per-scene 3DGS optimisation ("fit" backend): splats fitted to posed RGBA views.

The loop is the 3DGS recipe: Adam with per-parameter learning rates (positions decaying
exponentially), loss (1 − λ)·L1 + λ·(1 − SSIM), densification and pruning with gsplat's
``DefaultStrategy`` (which runs on CPU tensors), an SH degree schedule, and backgrounds through
alpha: each step composites the target's RGBA and the render over the same random colour, so
transparent film trains opacity instead of baking a background in.

Cameras come as world→camera matrices in OpenCV axes ([V, 4, 4]) and pinhole intrinsics
([V, 3, 3]) — :func:`views_from_dataset` builds them from a capture data set. The result is a
:class:`~blender_gs_addon.splats.SplatSet` in the cameras' world frame.

Everything runs on the device given (``cpu`` or ``cuda``); the rasterizer dispatches to gsplat on
CUDA and to our pure-torch path on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import GSError, Report, log_report
from .splats import SplatSet

__all__ = ["FitConfig", "FIT_PRESETS", "FitViews", "FitProgress", "FitResult", "fit_splats",
           "views_from_dataset", "fit_preset", "splats_from_points", "neighbour_distances"]


@dataclass(frozen=True)
class FitConfig:
    steps: int = 1500
    init_count: int = 6000  # random splats in the unit cube when no initial splats are given
    init_extent: float = 0.5  # half-size of that cube (captures are normalised to a unit cube)
    init_carve: bool = True  # keep only random points inside every view's silhouette (alpha)
    sh_degree: int = 3
    sh_interval: int = 400  # steps between SH degree increments
    lr_means: float = 1.6e-3  # × scene scale; decays to lr_means_final_ratio of it
    lr_means_final_ratio: float = 0.05
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 5e-3
    lr_shN: float = 5e-3 / 20
    ssim_weight: float = 0.2
    refine_start: int = 200
    refine_stop: int = 1200
    refine_every: int = 100
    reset_every: int = 100_000  # opacity reset; off for short CPU runs
    grow_grad2d: float = 2e-4
    prune_opacity: float = 0.005
    views_per_step: int = 1
    random_background: bool = True
    max_splats: int = 200_000  # growth stops beyond this (memory guard on CPU)
    snapshot_every: int = 50  # steps between "last good state" copies (NaN recovery)


FIT_PRESETS = {
    # Finishes the built-in sample (32 views at 128²) in a few minutes on 2 CPU cores.
    "cpu": FitConfig(),
    # The 3DGS paper's schedule, for a GPU.
    "gpu": FitConfig(steps=30_000, init_count=100_000, sh_interval=1000, lr_means=1.6e-4,
                     lr_means_final_ratio=0.01, lr_sh0=2.5e-3, lr_shN=2.5e-3 / 20,
                     refine_start=500, refine_stop=15_000, reset_every=3000,
                     max_splats=5_000_000),
}


def fit_preset(name: str, **overrides) -> FitConfig:
    """A named preset with some fields replaced (e.g. ``fit_preset("cpu", steps=300)``)."""
    try:
        base = FIT_PRESETS[name]
    except KeyError:
        choices = ", ".join(FIT_PRESETS)
        raise GSError(f"unknown fit preset {name!r}; choose one of {choices}") from None
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class FitViews:
    """Training views as tensors (CPU; moved to the fitting device by fit_splats)."""

    images: object  # torch [V, H, W, 4] float32 RGBA in [0, 1]
    viewmats: object  # torch [V, 4, 4] world → camera, OpenCV axes
    Ks: object  # torch [V, 3, 3]
    names: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.images.shape[0])


@dataclass
class FitProgress:
    step: int
    steps: int
    loss: float
    splats: int
    elapsed: float
    eta: float


@dataclass
class FitResult:
    splats: SplatSet
    steps_run: int
    final_loss: float
    seconds: float
    stopped: str = ""  # "" (finished), "cancelled", or the NaN message
    history: list[float] = field(default_factory=list)  # loss per step
    splat_counts: list[int] = field(default_factory=list)  # after each step's refinement
    sh_degrees: list[int] = field(default_factory=list)  # SH degree rendered at each step


def views_from_dataset(views, *, load_image=None) -> FitViews:
    """Build FitViews from data-set views (:class:`~blender_gs_addon.datasets.CameraView`).

    Args:
        views: camera views sharing one image size.
        load_image: view → float32 [H, W, 4] (default: the data set's image loader, which
            raises GSError naming the frame for a missing or mis-sized image).
    """
    import torch

    from .datasets.camera_views import load_view_image

    load_image = load_image or load_view_image
    if not views:
        raise GSError("the data set has no views to fit to")
    sizes = {(v.width, v.height) for v in views}
    if len(sizes) != 1:
        raise GSError(f"all views must share one image size, found {sorted(sizes)}")
    images = np.stack([load_image(v) for v in views]).astype(np.float32)  # [V, H, W, 4]
    viewmats = np.stack([v.world_to_camera_opencv() for v in views])  # [V, 4, 4]
    ks = np.stack([v.intrinsics_matrix() for v in views])  # [V, 3, 3]
    return FitViews(
        images=torch.from_numpy(images),
        viewmats=torch.as_tensor(viewmats, dtype=torch.float32),
        Ks=torch.as_tensor(ks, dtype=torch.float32),
        names=[v.name for v in views],
    )


def carve_random_points(views: FitViews, *, count: int, extent: float, gen,
                        min_alpha: float = 0.5, oversample: int = 16):
    """Random points in the cube [−extent, extent]³ that project inside every view's silhouette.

    A point outside a view's image is not judged by that view. Returns (points [M, 3], colours
    [M, 3] averaged over the views that see each point, volume fraction kept), M ≤ count; the
    colours ignore occlusion — they only seed the optimisation.
    """
    import torch

    cand = (torch.rand(count * oversample, 3, generator=gen) * 2.0 - 1.0) * extent  # [P, 3]
    keep = torch.ones(len(cand), dtype=torch.bool)
    colour_sum = torch.zeros(len(cand), 3)
    seen = torch.zeros(len(cand))
    _, height, width, _ = views.images.shape
    for i in range(views.count):
        cam = cand @ views.viewmats[i, :3, :3].T + views.viewmats[i, :3, 3]  # [P, 3]
        z = cam[:, 2].clamp_min(1e-6)
        k = views.Ks[i]
        u = (k[0, 0] * cam[:, 0] / z + k[0, 2]).floor().long()
        v = (k[1, 1] * cam[:, 1] / z + k[1, 2]).floor().long()
        inside = (cam[:, 2] > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        pix = views.images[i, v.clamp(0, height - 1), u.clamp(0, width - 1)]  # [P, 4]
        keep &= ~inside | (pix[:, 3] >= min_alpha)
        colour_sum += torch.where(inside[:, None], pix[:, :3], 0.0)
        seen += inside.float()
    fraction = float(keep.float().mean())
    points = cand[keep][:count]
    colours = (colour_sum[keep] / seen[keep].clamp_min(1.0)[:, None])[:count]
    return points, colours, fraction


def neighbour_distances(points, *, neighbours: int = 3, chunk: int = 2048) -> np.ndarray:
    """[N] root mean squared distance of each point to its ``neighbours`` nearest others.

    Exact brute force in row chunks (torch.cdist + topk): O(N²) work but vectorised, a few
    seconds for 100,000 points on 2 cores. Duplicated points give 0 (callers clamp).
    """
    import torch

    pts = torch.as_tensor(np.asarray(points, dtype=np.float32).reshape(-1, 3))
    n = len(pts)
    k = min(neighbours, n - 1)
    if k < 1:
        return np.zeros(n, dtype=np.float64)
    out = torch.empty(n)
    with torch.no_grad():
        for start in range(0, n, chunk):
            d2 = torch.cdist(pts[start:start + chunk], pts).square_()  # [C, N]
            nearest = d2.topk(k + 1, dim=1, largest=False).values[:, 1:]  # drop self
            out[start:start + chunk] = nearest.clamp_min(0.0).mean(1).sqrt()
    return out.numpy().astype(np.float64)


def splats_from_points(points, colours, *, sh_degree: int = 3,
                       opacity: float = 0.1) -> SplatSet:
    """Initial splats from a sparse point cloud, as 3DGS initialises from SfM points.

    Args:
        points: [N, 3] positions; colours: [N, 3] uint8 (or floats in 0‥1).
        sh_degree: SH bands of the result (higher bands zero).
        opacity: every splat's starting opacity.
    Returns:
        isotropic splats: scale = RMS distance to the 3 nearest points (at least 1e-7 of
        the cloud's extent, so duplicates do not vanish), identity rotation, colour as SH DC.
    """
    from .sh import rgb_to_dc

    xyz = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    rgb = np.asarray(colours).reshape(-1, 3)
    if len(xyz) == 0 or len(rgb) != len(xyz):
        raise GSError(f"splats from points need matching non-empty points and colours "
                      f"({len(xyz)} points, {len(rgb)} colours)")
    rgb = rgb / 255.0 if rgb.dtype.kind in "ui" else rgb.astype(np.float64)
    extent = float(np.ptp(xyz, axis=0).max()) if len(xyz) > 1 else 1.0
    spacing = np.maximum(neighbour_distances(xyz), max(extent, 1e-6) * 1e-7)  # [N]
    n = len(xyz)
    rotations = np.zeros((n, 4))
    rotations[:, 0] = 1.0
    return SplatSet.from_arrays(
        positions=xyz, log_scales=np.repeat(np.log(spacing)[:, None], 3, axis=1),
        rotations=rotations, opacity_logits=np.full(n, math.log(opacity / (1.0 - opacity))),
        sh_dc=rgb_to_dc(np.clip(rgb, 0.0, 1.0)),
        sh_rest=np.zeros((n, (sh_degree + 1) ** 2 - 1, 3)), name="splats from points")


def _init_params(init: SplatSet | None, config: FitConfig, gen, device, views=None):
    import torch

    if init is not None:
        s = init.with_sh_degree(config.sh_degree)
        t = {
            "means": torch.from_numpy(s.positions.copy()),
            "scales": torch.from_numpy(s.log_scales.copy()),
            "quats": torch.from_numpy(s.rotations.copy()),
            "opacities": torch.from_numpy(s.opacity_logits.copy()),
            "sh0": torch.from_numpy(s.sh_dc[:, None, :].copy()),
            "shN": torch.from_numpy(s.sh_rest.copy()),
        }
    else:
        n, ext = config.init_count, config.init_extent
        means = (torch.rand(n, 3, generator=gen) * 2.0 - 1.0) * ext
        sh0 = (torch.rand(n, 1, 3, generator=gen) - 0.5) * 0.5
        volume = (2.0 * ext) ** 3
        if config.init_carve and views is not None:
            points, colours, fraction = carve_random_points(views, count=n, extent=ext, gen=gen)
            # Fall back to the whole cube when the silhouettes carve (nearly) everything away.
            if len(points) >= max(16, n // 20):
                means, n, volume = points, len(points), volume * max(fraction, 1e-6)
                sh0 = ((colours - 0.5) / 0.28209479177387814)[:, None, :]
        spacing = (volume / n) ** (1.0 / 3.0)
        t = {
            "means": means,
            "scales": torch.full((n, 3), math.log(0.5 * spacing)),
            "quats": torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=1),
            "opacities": torch.full((n,), math.log(0.1 / 0.9)),
            "sh0": sh0,
            "shN": torch.zeros(n, (config.sh_degree + 1) ** 2 - 1, 3),
        }
    return torch.nn.ParameterDict(
        {k: torch.nn.Parameter(v.to(device=device, dtype=torch.float32)) for k, v in t.items()}
    )


def _to_splats(params) -> SplatSet:
    def arr(key):
        return params[key].detach().cpu().numpy().astype(np.float32)

    return SplatSet.from_arrays(
        positions=arr("means"), log_scales=arr("scales"), rotations=arr("quats"),
        opacity_logits=arr("opacities"), sh_dc=arr("sh0")[:, 0, :], sh_rest=arr("shN"),
        name="fitted splats",
    ).normalized()


def _params_finite(params) -> bool:
    import torch

    return all(bool(torch.isfinite(p).all()) for p in params.values())


def _grads_finite(params) -> bool:
    """One device sync for all gradients (this runs every step)."""
    import torch

    flags = [torch.isfinite(p.grad).all() for p in params.values() if p.grad is not None]
    return bool(torch.stack(flags).all()) if flags else True


def fit_splats(*, views: FitViews, config: FitConfig | None = None, init: SplatSet | None = None,
               device: str = "cpu", seed: int = 0,
               progress: Callable[[FitProgress], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               report: Report = log_report) -> FitResult:
    """Optimise splats to reproduce ``views``.

    Args:
        views: training images [V, H, W, 4] with cameras.
        config: schedule and learning rates (default: the "cpu" preset).
        init: starting splats (e.g. LGM's prediction); random in the unit cube when None.
        device: "cpu" or "cuda".
        seed: makes the run reproducible (initialisation, view order, backgrounds).
        progress: called every few steps with a FitProgress.
        should_stop: polled every step; True cancels and returns the current state.
    Returns:
        FitResult; on NaN the last good state is returned with ``stopped`` saying why.
    """
    import torch
    from gsplat.strategy import DefaultStrategy

    from .image_metrics import l1_dssim_loss
    from .render.rasterize import rasterize

    config = config or FIT_PRESETS["cpu"]
    if device == "cuda" and not torch.cuda.is_available():
        raise GSError("device 'cuda' was asked for but torch sees no CUDA GPU")
    if not torch.isfinite(views.images).all():
        raise GSError("training images contain NaN or infinite values")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    images = views.images.to(dev)
    viewmats, ks = views.viewmats.to(dev), views.Ks.to(dev)
    n_views, height, width = images.shape[0], images.shape[1], images.shape[2]

    # Scene scale as 3DGS defines it: camera spread around their mean (≥ object size here).
    centres = torch.linalg.inv(viewmats)[:, :3, 3]
    scene_scale = float((centres - centres.mean(0)).norm(dim=1).max().clamp_min(1e-3)) * 1.1

    params = _init_params(init, config, gen, dev, views=views)
    lrs = {"means": config.lr_means * scene_scale, "scales": config.lr_scales,
           "quats": config.lr_quats, "opacities": config.lr_opacities, "sh0": config.lr_sh0,
           "shN": config.lr_shN}
    optimizers = {k: torch.optim.Adam([params[k]], lr=lrs[k], eps=1e-15) for k in params}
    decay = config.lr_means_final_ratio ** (1.0 / max(1, config.steps))
    strategy = DefaultStrategy(
        prune_opa=config.prune_opacity, grow_grad2d=config.grow_grad2d,
        refine_start_iter=config.refine_start, refine_stop_iter=config.refine_stop,
        refine_every=config.refine_every, reset_every=config.reset_every, verbose=False,
    )
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=scene_scale)

    last_good = _to_splats(params)
    history: list[float] = []
    splat_counts: list[int] = []
    sh_degrees: list[int] = []
    start = time.perf_counter()
    stopped = ""
    step = 0
    loss_value = float("nan")
    for step in range(config.steps):
        if should_stop is not None and should_stop():
            stopped = "cancelled"
            break
        sh_degree = min(step // max(1, config.sh_interval), config.sh_degree)
        pick = torch.randint(0, n_views, (config.views_per_step,), generator=gen).to(dev)
        target = images[pick]  # [B, H, W, 4]
        if config.random_background:
            bg = torch.rand(len(pick), 3, generator=gen).to(dev)
        else:
            bg = torch.ones(len(pick), 3, device=dev)
        target_rgb = target[..., :3] * target[..., 3:] + bg[:, None, None, :] * (
            1.0 - target[..., 3:])
        out = rasterize(
            means=params["means"], quats=params["quats"], scales=torch.exp(params["scales"]),
            opacities=torch.sigmoid(params["opacities"]),
            colors=torch.cat([params["sh0"], params["shN"]], 1), sh_degree=sh_degree,
            viewmats=viewmats[pick], Ks=ks[pick], width=width, height=height, backgrounds=bg,
        )
        info = out.meta
        strategy.step_pre_backward(params, optimizers, state, step, info)
        loss = l1_dssim_loss(out.colors, target_rgb, ssim_weight=config.ssim_weight)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            stopped = f"loss became {loss_value} at step {step}; kept the state of an earlier step"
            break
        loss.backward()
        if not _grads_finite(params):
            # The parameters are still those of the previous step: keep them, not an older
            # snapshot, and stop before Adam spreads the NaN into its moments.
            stopped = (f"gradients became non-finite at step {step}; "
                       "kept the state of the step before")
            last_good = _to_splats(params)
            break
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        for group in optimizers["means"].param_groups:
            group["lr"] *= decay
        if len(params["means"]) < config.max_splats or step % config.refine_every:
            strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
        else:
            state["grad2d"], state["count"] = None, None  # growth paused at the cap
        history.append(loss_value)
        splat_counts.append(len(params["means"]))
        sh_degrees.append(sh_degree)
        if config.snapshot_every and step % config.snapshot_every == 0:
            if not _params_finite(params):
                stopped = f"parameters became non-finite at step {step}; kept an earlier state"
                break
            last_good = _to_splats(params)
        if progress is not None and (step % 10 == 0 or step == config.steps - 1):
            elapsed = time.perf_counter() - start
            progress(FitProgress(step=step + 1, steps=config.steps, loss=loss_value,
                                 splats=len(params["means"]), elapsed=elapsed,
                                 eta=elapsed / (step + 1) * (config.steps - step - 1)))
    else:
        step = config.steps

    if stopped and stopped != "cancelled":
        report({"WARNING"}, f"fit stopped: {stopped}")
        result_splats = last_good
    elif _params_finite(params):
        result_splats = _to_splats(params)
    else:
        stopped = "parameters became non-finite; kept an earlier state"
        report({"WARNING"}, f"fit stopped: {stopped}")
        result_splats = last_good
    return FitResult(splats=result_splats, steps_run=step, final_loss=loss_value,
                     seconds=time.perf_counter() - start, stopped=stopped, history=history,
                     splat_counts=splat_counts, sh_degrees=sh_degrees)
