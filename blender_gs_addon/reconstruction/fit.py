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

from ..errors import GSError, Report, log_report
from ..sh import SH_C0
from ..splats import SplatSet

__all__ = ["FitConfig", "FIT_PRESETS", "FitViews", "FitProgress", "FitResult", "fit_splats",
           "views_from_dataset", "fit_preset", "splats_from_points", "neighbour_distances"]


@dataclass(frozen=True)
class FitConfig:
    """Schedule, learning rates and limits of one fit (see :data:`FIT_PRESETS`)."""

    steps: int = 1500
    """Optimisation steps."""
    init_count: int = 6000
    """Random splats in the cube when no initial splats are given."""
    init_extent: float = 0.5
    """Half-size of that cube (captures are normalised to a unit cube)."""
    init_carve: bool = True
    """Keep only random points inside every view's silhouette (alpha ≥ 0.5)."""
    sh_degree: int = 3
    """Highest SH degree fitted."""
    sh_interval: int = 400
    """Steps between SH degree increments (degree 0 first, as 3DGS)."""
    lr_means: float = 1.6e-3
    """Position learning rate × scene scale; decays exponentially to the final ratio."""
    lr_means_final_ratio: float = 0.05
    """Position learning rate at the last step, as a fraction of the first."""
    lr_scales: float = 5e-3
    """Log-scale learning rate."""
    lr_quats: float = 1e-3
    """Rotation (quaternion) learning rate."""
    lr_opacities: float = 5e-2
    """Opacity-logit learning rate."""
    lr_sh0: float = 5e-3
    """DC colour learning rate."""
    lr_shN: float = 5e-3 / 20
    """Higher SH bands' learning rate (3DGS: a twentieth of the DC's)."""
    ssim_weight: float = 0.2
    """λ in the loss (1 − λ)·L1 + λ·(1 − SSIM)."""
    refine_start: int = 200
    """First step of densification and pruning."""
    refine_stop: int = 1200
    """Last step of densification."""
    refine_every: int = 100
    """Steps between refinements."""
    reset_every: int = 100_000
    """Steps between opacity resets (off for short CPU runs)."""
    grow_grad2d: float = 2e-4
    """Screen-space gradient above which a splat is split or cloned."""
    prune_opacity: float = 0.005
    """Splats below this opacity are pruned."""
    views_per_step: int = 1
    """Training views rendered per step."""
    random_background: bool = True
    """Composite target and render over a random colour each step, so transparent film trains
    opacity instead of baking a background in; False uses white."""
    max_splats: int = 200_000
    """Growth stops beyond this count (a memory guard on CPU)."""
    snapshot_every: int = 50
    """Steps between "last good state" copies (what a NaN falls back on)."""


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

    from ..datasets.camera_views import load_view_image

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
    from ..sh import rgb_to_dc

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
                sh0 = ((colours - 0.5) / SH_C0)[:, None, :]
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
    run = _FitRun(views, config or FIT_PRESETS["cpu"], init=init, device=device, seed=seed)
    stopped = ""
    while not stopped and run.step < run.config.steps:
        if should_stop is not None and should_stop():
            stopped = "cancelled"
            break
        stopped = run.train_step()
        if not stopped and progress is not None and (
                run.step % 10 == 1 or run.step == run.config.steps):
            progress(run.progress())
    return run.finish(stopped, report=report)


class _FitRun:
    """One optimisation, cut into named steps: set-up (:meth:`__init__`), one training step
    (:meth:`train_step`: pick a view, render, loss, backward, Adam, refine, record) and the
    result (:meth:`finish`)."""

    def __init__(self, views: FitViews, config: FitConfig, *, init, device: str, seed: int):
        import torch
        from gsplat.strategy import DefaultStrategy

        if device == "cuda" and not torch.cuda.is_available():
            raise GSError("device 'cuda' was asked for but torch sees no CUDA GPU")
        if not torch.isfinite(views.images).all():
            raise GSError("training images contain NaN or infinite values")
        torch.manual_seed(seed)
        self.config, self.gen, self.dev = config, torch.Generator().manual_seed(seed), device
        self.images = views.images.to(device)  # [V, H, W, 4]
        self.viewmats, self.ks = views.viewmats.to(device), views.Ks.to(device)
        # Scene scale as 3DGS defines it: camera spread around their mean (≥ object size here).
        centres = torch.linalg.inv(self.viewmats)[:, :3, 3]
        scene_scale = float((centres - centres.mean(0)).norm(dim=1).max().clamp_min(1e-3)) * 1.1
        self.params = _init_params(init, config, self.gen, device, views=views)
        lrs = {"means": config.lr_means * scene_scale, "scales": config.lr_scales,
               "quats": config.lr_quats, "opacities": config.lr_opacities,
               "sh0": config.lr_sh0, "shN": config.lr_shN}
        self.optimizers = {k: torch.optim.Adam([self.params[k]], lr=lrs[k], eps=1e-15)
                           for k in self.params}
        self.decay = config.lr_means_final_ratio ** (1.0 / max(1, config.steps))
        self.strategy = DefaultStrategy(
            prune_opa=config.prune_opacity, grow_grad2d=config.grow_grad2d,
            refine_start_iter=config.refine_start, refine_stop_iter=config.refine_stop,
            refine_every=config.refine_every, reset_every=config.reset_every, verbose=False)
        self.strategy.check_sanity(self.params, self.optimizers)
        self.state = self.strategy.initialize_state(scene_scale=scene_scale)
        self.last_good = _to_splats(self.params)
        self.history: list[float] = []
        self.splat_counts: list[int] = []
        self.sh_degrees: list[int] = []
        self.step = 0  # steps completed
        self.loss_value = float("nan")
        self.start = time.perf_counter()

    def _batch(self):
        """A random training view (``views_per_step`` of them) composited on a background."""
        import torch

        pick = torch.randint(0, len(self.images), (self.config.views_per_step,),
                             generator=self.gen).to(self.dev)
        target = self.images[pick]  # [B, H, W, 4]
        if self.config.random_background:
            bg = torch.rand(len(pick), 3, generator=self.gen).to(self.dev)
        else:
            bg = torch.ones(len(pick), 3, device=self.dev)
        alpha = target[..., 3:]
        return pick, target[..., :3] * alpha + bg[:, None, None, :] * (1.0 - alpha), bg

    def _render(self, pick, bg, sh_degree: int):
        import torch

        from ..render.rasterize import rasterize

        p = self.params
        _, height, width, _ = self.images.shape
        return rasterize(
            means=p["means"], quats=p["quats"], scales=torch.exp(p["scales"]),
            opacities=torch.sigmoid(p["opacities"]),
            colors=torch.cat([p["sh0"], p["shN"]], 1), sh_degree=sh_degree,
            viewmats=self.viewmats[pick], Ks=self.ks[pick], width=width, height=height,
            backgrounds=bg)

    def train_step(self) -> str:
        """One step; returns "" or why the fit must stop (the last good state is kept)."""
        from .image_metrics import l1_dssim_loss

        step, config = self.step, self.config
        sh_degree = min(step // max(1, config.sh_interval), config.sh_degree)
        pick, target_rgb, bg = self._batch()
        out = self._render(pick, bg, sh_degree)
        self.strategy.step_pre_backward(self.params, self.optimizers, self.state, step, out.meta)
        loss = l1_dssim_loss(out.colors, target_rgb, ssim_weight=config.ssim_weight)
        self.loss_value = float(loss.detach())
        if not math.isfinite(self.loss_value):
            return (f"loss became {self.loss_value} at step {step}; "
                    "kept the state of an earlier step")
        loss.backward()
        if not _grads_finite(self.params):
            # The parameters are still those of the previous step: keep them, not an older
            # snapshot, and stop before Adam spreads the NaN into its moments.
            self.last_good = _to_splats(self.params)
            return (f"gradients became non-finite at step {step}; "
                    "kept the state of the step before")
        self._optimise()
        self._refine(step, out.meta)
        self.history.append(self.loss_value)
        self.splat_counts.append(len(self.params["means"]))
        self.sh_degrees.append(sh_degree)
        stop = self._snapshot(step)
        if not stop:
            self.step = step + 1
        return stop

    def _optimise(self) -> None:
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        for group in self.optimizers["means"].param_groups:
            group["lr"] *= self.decay

    def _refine(self, step: int, meta) -> None:
        """Densify and prune (gsplat's DefaultStrategy); growth pauses at ``max_splats``."""
        config = self.config
        if len(self.params["means"]) < config.max_splats or step % config.refine_every:
            self.strategy.step_post_backward(self.params, self.optimizers, self.state, step,
                                             meta, packed=False)
        else:
            self.state["grad2d"], self.state["count"] = None, None

    def _snapshot(self, step: int) -> str:
        """Every ``snapshot_every`` steps: check the parameters and keep a copy to fall back on."""
        every = self.config.snapshot_every
        if every and step % every == 0:
            if not _params_finite(self.params):
                return f"parameters became non-finite at step {step}; kept an earlier state"
            self.last_good = _to_splats(self.params)
        return ""

    def progress(self) -> FitProgress:
        elapsed = time.perf_counter() - self.start
        steps = self.config.steps
        return FitProgress(step=self.step, steps=steps, loss=self.loss_value,
                           splats=len(self.params["means"]), elapsed=elapsed,
                           eta=elapsed / max(1, self.step) * (steps - self.step))

    def finish(self, stopped: str, *, report: Report) -> FitResult:
        if stopped and stopped != "cancelled":
            report({"WARNING"}, f"fit stopped: {stopped}")
            result_splats = self.last_good
        elif _params_finite(self.params):
            result_splats = _to_splats(self.params)
        else:
            stopped = "parameters became non-finite; kept an earlier state"
            report({"WARNING"}, f"fit stopped: {stopped}")
            result_splats = self.last_good
        return FitResult(splats=result_splats, steps_run=self.step, final_loss=self.loss_value,
                         seconds=time.perf_counter() - self.start, stopped=stopped,
                         history=self.history, splat_counts=self.splat_counts,
                         sh_degrees=self.sh_degrees)
