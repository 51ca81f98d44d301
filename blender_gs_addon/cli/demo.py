"""``demo``: the end-to-end main job on the built-in sample scene (capture → reconstruct →
import → preview, metrics and every file format)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import GSError
from .blender import blender_module, fresh_scene
from .output import progress_printer, stderr_report, stdout_report

__all__ = ["add_commands"]


def add_commands(sub) -> None:
    p = sub.add_parser("demo", help="capture, reconstruct and import the built-in sample scene")
    p.add_argument("--out", default="out")
    p.add_argument("--backend", default="auto", choices=["auto", "fit", "lgm", "lgm+fit"],
                   help="auto: lgm+fit when LGM weights are available offline, else fit")
    p.add_argument("--steps", type=int, help="fit steps (default: the device's preset)")
    p.add_argument("--views", type=int, default=32, help="training views")
    p.add_argument("--test-views", type=int, default=8, help="held-out views")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--engine", default="WORKBENCH", choices=["CYCLES", "EEVEE", "WORKBENCH"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)


def _lgm_weights_available() -> bool:
    from ..models.weights import resolve_lgm_weights

    try:
        resolve_lgm_weights(None, offline=True, report=lambda *a: None)
    except GSError:
        return False
    return True


def cmd_demo(args) -> int:
    """The end-to-end demo: built-in scene → capture → reconstruct → import → files.

    Writes ``out/demo.blend`` (the scene with the reconstruction placed on the source
    objects — native splats on Blender 5.3+, the splat display before — and the held-out
    views as cameras, the first one active), ``out/splats.ply``, ``out/capture/`` (the data
    set), ``out/preview.png`` (held-out view: ground truth | reconstruction) and
    ``out/metrics.json`` (PSNR, SSIM, timings). Splat-file round trips through every format
    go to ``out/formats/``.
    """
    import shutil

    start = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    backend = args.backend
    if backend == "auto":
        backend = "lgm+fit" if _lgm_weights_available() else "fit"
    print(f"Backend: {backend}"
          + (" (no LGM weights found offline)" if backend == "fit" and args.backend == "auto"
             else ""))

    bpy, job = blender_module("scene.reconstruct_job")
    sample_scenes = blender_module("scene.sample_scenes")[1]
    fresh_scene(bpy)
    subjects = sample_scenes.build_sample_scene("toy")
    for obj in bpy.context.scene.objects:
        obj.select_set(obj in subjects)
    bpy.context.view_layer.objects.active = subjects[0]
    capture = {"rig": "sphere", "views": args.views, "test_views": args.test_views,
               "resolution": args.resolution, "engine": args.engine, "transparent": True}
    session = job.ReconstructSession(
        bpy.context, objects=subjects, capture=capture, backend=backend, steps=args.steps,
        seed=args.seed, name="Toy Splats", keep_files=True, report=stdout_report)
    obj = session.run(progress=progress_printer())
    result = session.result
    job_dir = Path(session.job_dir)
    try:
        # The splats are where the session wrote them (in the job folder, or where a worker's
        # result arrived); the capture is the job folder's.
        for source, name in ((job_dir / "capture", "capture"), (Path(result["splats"]),
                                                                 "splats.ply")):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(str(source), str(target))
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)

    metrics = _demo_preview(out / "splats.ply", out / "capture", out / "preview.png")
    for source in subjects:
        source.hide_set(True)  # the splats sit exactly on the toy; show them in the file
    _demo_camera(bpy, out / "capture")
    bpy.context.view_layer.objects.active = obj
    blender_module("scene.blend_files")[1].save_blend(out / "demo.blend")
    _demo_formats(out / "splats.ply", out / "formats")
    summary = {"backend": backend, "count": result["count"], "psnr": metrics["psnr"],
               "ssim": metrics["ssim"], "test_views": metrics["views"],
               "fit_steps": result.get("steps"), "reconstruct_seconds": result.get("seconds"),
               "total_seconds": time.perf_counter() - start}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(f"Held-out PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} on "
          f"{metrics['views']} test views; {result['count']:,} splats; "
          f"{summary['total_seconds']:.0f} s in all")
    print(f"Wrote {out / 'demo.blend'}, {out / 'splats.ply'}, {out / 'preview.png'}")
    return 0


def _demo_camera(bpy, capture: Path) -> None:
    """The held-out views as cameras (their ground truth as background), the first one the
    scene camera: the .blend opens on a view F12 can render, and the splat display of Blender
    4.5-5.2 (which projects through the scene camera) shows Gaussians, not points."""
    cameras = blender_module("scene.camera_import")[1]
    collection = cameras.import_camera_views(capture / "transforms_test.json", split="test",
                                             report=lambda *a: None)
    scene = bpy.context.scene
    scene.camera = sorted(collection.objects, key=lambda o: o.name)[0]


def _demo_preview(splats_path: Path, capture: Path, png: Path) -> dict:
    """Score the file on the capture's test views and write ground truth | render."""
    import numpy as np
    from PIL import Image

    from ..conventions.frames import splats_file_to_world
    from ..datasets.camera_views import composite_on_background, load_view_image
    from ..datasets.nerf_synthetic import read_transforms
    from ..formats import read_splats
    from ..reconstruction.evaluate import evaluate_splats, render_views

    splats = splats_file_to_world(read_splats(splats_path, report=stderr_report))
    dataset = read_transforms(capture)
    metrics = evaluate_splats(splats, dataset, split="test")
    views = dataset.split_views("test")[:3]
    rendered, _ = render_views(splats, views, background=(1.0, 1.0, 1.0))
    rows = []
    for view, image in zip(views, rendered):
        truth = composite_on_background(load_view_image(view), (1.0, 1.0, 1.0))
        rows.append(np.concatenate([truth, image], axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray((np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)).save(png)
    return metrics


def _demo_formats(splats_path: Path, folder: Path) -> None:
    """Convert the reconstruction through every format and report sizes and counts."""
    from ..formats import read_splats, write_splats

    folder.mkdir(parents=True, exist_ok=True)
    splats = read_splats(splats_path)
    names = ("splats.compressed.ply", "splats.spz", "splats.splat", "splats.glb", "splats.sog")
    for name in names:
        write_splats(folder / name, splats, report=lambda *a: None)
        back = read_splats(folder / name)
        size = os.path.getsize(folder / name)
        print(f"  {name:<22} {size:>10,} bytes ({size / back.count:.1f} B/splat), "
              f"{back.count:,} splats, SH {back.sh_degree}")


