"""Command line: ``python -m blender_gs_addon <command> …``.

File commands (``info``, ``convert``) need only numpy. Commands that touch a .blend
(``import``, ``export``, ``demo``) need the ``bpy`` module and load the Blender side of the
extension through :func:`blender_gs_addon.extension.load_extension`.

A user error (:class:`GSError`: a bad file, a missing object, …) exits with status 2 and one
line on stderr, ``error: <message>``, and no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from . import __version__
from .axes import UP_AXES
from .errors import GSError

__all__ = ["main", "build_parser"]


def _stderr_report(levels: set, message: str) -> None:
    if "ERROR" in levels or "WARNING" in levels:
        print(f"{'error' if 'ERROR' in levels else 'warning'}: {message}", file=sys.stderr)


def _stdout_report(levels: set, message: str) -> None:
    if "ERROR" in levels or "WARNING" in levels:
        _stderr_report(levels, message)
    else:
        print(message)


# ---------------------------------------------------------------------------- file commands
def cmd_info(args) -> int:
    from .formats import detect_format, read_splats

    fmt = detect_format(args.file)
    splats = read_splats(args.file, format=fmt, report=_stderr_report)
    lo, hi = splats.bbox()
    info = {
        "file": os.path.abspath(args.file),
        "format": fmt,
        "count": splats.count,
        "sh_degree": splats.sh_degree,
        "bbox_min": [float(v) for v in lo],
        "bbox_max": [float(v) for v in hi],
        "extra_properties": sorted(splats.extra),
        "file_size": os.path.getsize(args.file),
    }
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_convert(args) -> int:
    from .formats import detect_format, read_splats, write_splats

    start = time.perf_counter()
    splats = read_splats(args.input, report=_stderr_report)
    if args.sh_degree is not None:
        splats = splats.with_sh_degree(args.sh_degree)
    out_fmt = detect_format(args.output, for_writing=True)
    write_splats(args.output, splats, format=out_fmt, report=_stderr_report)
    print(f"Converted {splats.count:,} splats (SH {splats.sh_degree}) to {out_fmt} "
          f"{args.output} in {time.perf_counter() - start:.2f} s")
    return 0


# ---------------------------------------------------------------------------- Blender commands
def _blender(module: str):
    """bpy and a module of the extension's Blender side; a clear error when bpy is missing."""
    try:
        import bpy
    except ImportError as err:
        raise GSError(f"this command needs the bpy module (pip install bpy==5.0.1, or run inside "
                      f"Blender): {err}") from None
    from .extension import extension_module

    return bpy, extension_module(module)


def _fresh_scene(bpy) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _blend_files():
    return _blender("scene.blend_files")[1]


def cmd_import(args) -> int:
    bpy, splat_object = _blender("scene.splat_object")
    _fresh_scene(bpy)
    obj = splat_object.import_splats(
        args.file, up_axis=args.up_axis, name=args.name, report=_stdout_report
    )
    _blend_files().save_blend(args.blend)
    print(f"Saved {args.blend} with object {obj.name!r}")
    return 0


def cmd_export(args) -> int:
    bpy, splat_object = _blender("scene.splat_object")
    blend_files = _blend_files()
    blend_files.open_blend(args.blend)
    obj = blend_files.object_named(args.blend, args.object)
    splat_object.export_splats(
        obj, args.output, apply_transform=not args.no_transform, up_axis=args.up_axis,
        report=_stdout_report,
    )
    return 0


def cmd_capture(args) -> int:
    bpy, capture = _blender("scene.capture")
    folder = capture.capture_main(args, report=_stdout_report)
    print(f"Wrote data set {folder}")
    return 0


# ---------------------------------------------------------------------------- reconstruction
def _progress_printer():
    last = {"t": 0.0, "stage": None}

    def progress(stage, fraction, message=""):
        now = time.monotonic()
        if stage != last["stage"] or now - last["t"] > 2.0 or fraction >= 1.0:
            print(f"[{stage} {fraction * 100:5.1f}%] {message}", flush=True)
            last.update(t=now, stage=stage)

    return progress


def _pose_options(args) -> dict:
    """recover_poses() keyword arguments from the shared pose options."""
    up = None
    if args.up:
        try:
            up = [float(v) for v in args.up.split(",")]
        except ValueError:
            raise GSError(f"--up must be x,y,z in COLMAP's world, got {args.up!r}") from None
    return {"masks": args.masks, "frames": args.frames, "max_size": args.max_size,
            "test_every": args.test_every, "up": up, "camera_model": args.camera_model,
            "matcher": args.matcher, "threads": args.threads, "seed": args.seed}


def _print_pose_report(report: dict) -> None:
    left = report["left_out"]
    focal = report["focal_length_px"]
    print(f"Placed {report['placed']}/{report['images']} images"
          + (f" (left out: {', '.join(left)})" if left else "")
          + f"; reprojection error {report['reprojection_error_px']:.2f} px; focal length "
          f"{focal[0]:.1f} px at {report['image_size'][0]}×{report['image_size'][1]} "
          f"({report['field_of_view_deg']:.1f}°); {report['points']:,} points; "
          f"{len(report['held_out'])} held-out views; settings: {report['settings']}")
    seconds = report.get("seconds", {})
    print("Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


def cmd_poses(args) -> int:
    from .poses.recover import recover_poses

    result = recover_poses(photos=args.photos, out=args.out, **_pose_options(args),
                           progress=_progress_printer(), report=_stdout_report)
    if args.json:
        print(json.dumps(result))
    else:
        _print_pose_report(result)
        print(f"Wrote data set {result['dataset']}")
    return 0


def cmd_reconstruct(args) -> int:
    from .reconstruct import reconstruct

    result = reconstruct(
        capture=args.capture, out=args.out, backend=args.backend, steps=args.steps,
        weights=args.weights, device=args.device, seed=args.seed, preset=args.preset,
        offline=True if args.offline else None, dtype=args.dtype, photos=args.photos,
        dataset=args.dataset, pose_options=_pose_options(args) if args.photos else None,
        progress=_progress_printer(), report=_stdout_report,
    )
    summary = {k: v for k, v in result.items() if k != "normalisation"}
    if args.json:
        print(json.dumps(summary))
    else:
        if "poses" in result:
            _print_pose_report(result["poses"])
        extra = f", held-out PSNR {result['psnr']:.2f} dB" if "psnr" in result else ""
        print(f"Reconstructed {result['count']:,} splats with {args.backend} on "
              f"{result['device']} in {result['seconds']:.1f} s{extra}: {result['splats']}")
    return 0


def cmd_eval(args) -> int:
    from .datasets.nerf_synthetic import read_transforms
    from .evaluate import evaluate_splats, splats_file_to_world
    from .formats import read_splats
    from .reconstruct import resolve_device

    splats = splats_file_to_world(read_splats(args.splats, report=_stderr_report))
    dataset = read_transforms(args.capture, report=_stderr_report)
    metrics = evaluate_splats(splats, dataset, split=args.split,
                              device=resolve_device(args.device))
    if args.json:
        # A perfect match has PSNR = inf, which JSON cannot hold: null says "unbounded".
        print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                          for k, v in metrics.items()}))
    else:
        print(f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} on "
              f"{metrics['views']} {metrics['split']} views")
    return 0


def cmd_render(args) -> int:
    from .evaluate import render_dataset_frames

    if args.engine in ("eevee", "cycles"):
        _blender("scene.render_engine")  # one clear line when bpy is missing
    written = render_dataset_frames(
        splats_path=args.splats, cameras=args.cameras, out_dir=args.out, engine=args.engine,
        resolution=args.resolution, device=args.device, report=_stdout_report)
    print(f"Rendered {len(written)} frames to {args.out}")
    return 0


def cmd_rig(args) -> int:
    _, rigging = _blender("scene.rigging")
    return rigging.rig_main(args)


def cmd_bake(args) -> int:
    _, rigging = _blender("scene.rigging")
    return rigging.bake_main(args)


def _lgm_weights_available() -> bool:
    from .models.weights import resolve_lgm_weights

    try:
        resolve_lgm_weights(None, offline=True, report=lambda *a: None)
    except GSError:
        return False
    return True


def cmd_demo(args) -> int:
    """The end-to-end demo: built-in scene → capture → reconstruct → import → files.

    Writes ``out/demo.blend`` (the scene with the reconstruction placed on the source
    objects), ``out/splats.ply``, ``out/capture/`` (the data set), ``out/preview.png``
    (held-out view: ground truth | reconstruction) and ``out/metrics.json`` (PSNR, SSIM,
    timings). Splat-file round trips through every format go to ``out/formats/``.
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

    bpy, job = _blender("scene.reconstruct_job")
    from .extension import extension_module

    sample_scenes = extension_module("scene.sample_scenes")
    _fresh_scene(bpy)
    subjects = sample_scenes.build_sample_scene("toy")
    for obj in bpy.context.scene.objects:
        obj.select_set(obj in subjects)
    bpy.context.view_layer.objects.active = subjects[0]
    capture = {"rig": "sphere", "views": args.views, "test_views": args.test_views,
               "resolution": args.resolution, "engine": args.engine, "transparent": True}
    session = job.ReconstructSession(
        bpy.context, objects=subjects, capture=capture, backend=backend, steps=args.steps,
        seed=args.seed, name="Toy Splats", keep_files=True, report=_stdout_report)
    obj = session.run(progress=_progress_printer())
    result = session.result
    job_dir = Path(session.job_dir)
    try:
        for name in ("capture", "splats.ply"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(str(job_dir / name), str(target))
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)

    metrics = _demo_preview(out / "splats.ply", out / "capture", out / "preview.png")
    for source in subjects:
        source.hide_set(True)  # the splats sit exactly on the toy; show them in the file
    bpy.context.view_layer.objects.active = obj
    _blend_files().save_blend(out / "demo.blend")
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


def _demo_preview(splats_path: Path, capture: Path, png: Path) -> dict:
    """Score the file on the capture's test views and write ground truth | render."""
    import numpy as np
    from PIL import Image

    from .datasets.camera_views import composite_on_background, load_view_image
    from .datasets.nerf_synthetic import read_transforms
    from .evaluate import evaluate_splats, render_views, splats_file_to_world
    from .formats import read_splats

    splats = splats_file_to_world(read_splats(splats_path, report=_stderr_report))
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
    from .formats import read_splats, write_splats

    folder.mkdir(parents=True, exist_ok=True)
    splats = read_splats(splats_path)
    for name in ("splats.compressed.ply", "splats.spz", "splats.splat"):
        write_splats(folder / name, splats, report=lambda *a: None)
        back = read_splats(folder / name)
        size = os.path.getsize(folder / name)
        print(f"  {name:<22} {size:>10,} bytes ({size / back.count:.1f} B/splat), "
              f"{back.count:,} splats, SH {back.sh_degree}")


# ---------------------------------------------------------------------------- parser
class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error:`` line (the contract for every user error); --help still
    prints the full usage."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _add_pose_arguments(p) -> None:
    from .poses.dataset import DEFAULT_TEST_EVERY
    from .poses.recover import DEFAULT_FRAMES, DEFAULT_MAX_SIZE

    p.add_argument("--masks", help="folder of masks, one per photo (white: keep)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"frames sampled from a video (default {DEFAULT_FRAMES})")
    p.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                   help=f"longer image side in pixels (default {DEFAULT_MAX_SIZE}; 0: full)")
    p.add_argument("--test-every", type=int, default=DEFAULT_TEST_EVERY,
                   help=f"hold out every n-th image for evaluation (default "
                        f"{DEFAULT_TEST_EVERY}; 0: none)")
    p.add_argument("--up", help="up direction x,y,z in COLMAP's world (default: the cameras' "
                                "average up)")
    p.add_argument("--camera-model", default="SIMPLE_PINHOLE",
                   choices=["SIMPLE_PINHOLE", "PINHOLE"])
    p.add_argument("--matcher", default="auto", choices=["auto", "exhaustive", "sequential"])
    p.add_argument("--threads", type=int, default=-1, help="CPU threads for SfM (-1: all)")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m blender_gs_addon",
        description="Gaussian splats for Blender: file conversion, Blender import/export.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="summarise a splat file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert between .ply, .compressed.ply, .splat, .spz")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--sh-degree", type=int, choices=range(4), help="truncate SH bands")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("import", help="import a splat file into a fresh scene and save a .blend")
    p.add_argument("file")
    p.add_argument("--blend", required=True, help="the .blend to write")
    p.add_argument("--name", help="object name (default: the file's stem)")
    p.add_argument("--up-axis", default="-Y", choices=list(UP_AXES))
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export a splat object of a .blend to a file")
    p.add_argument("--blend", required=True)
    p.add_argument("--object", required=True)
    p.add_argument("output")
    p.add_argument("--up-axis", default="-Y", choices=list(UP_AXES))
    p.add_argument("--no-transform", action="store_true",
                   help="write the mesh values without baking the object's world transform")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("capture", help="render training views of objects into a data set")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--blend", help="a .blend to capture from")
    src.add_argument("--builtin", help="a built-in sample scene (e.g. toy)")
    p.add_argument("--objects", help="comma-separated object names (default: selection)")
    p.add_argument("--rig", default="orbit", choices=["orbit", "sphere", "lgm", "cameras"])
    p.add_argument("--views", type=int, default=16,
                   help="training views (orbit: per ring; one ring at 20° by default)")
    p.add_argument("--test-views", type=int, default=0, help="held-out test views")
    p.add_argument("--resolution", default=None, help="N or WxH (default 512)")
    p.add_argument("--engine", default="EEVEE", choices=["CYCLES", "EEVEE", "WORKBENCH"])
    p.add_argument("--samples", type=int, help="render samples per pixel")
    p.add_argument("--elevations", help="orbit ring elevations in degrees, e.g. 0,30 "
                                        "(default 20)")
    p.add_argument("--radius", type=float, help="camera distance (normalised units)")
    p.add_argument("--fov", type=float, help="field of view in degrees (larger side)")
    p.add_argument("--background", help="r,g,b in 0..1, or 'transparent'")
    p.add_argument("--camera-collection",
                   help="collection of cameras for --rig cameras (default: all the scene's)")
    p.add_argument("--out", required=True, help="data set folder to write")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("poses", help="recover camera poses of photos or a video (pycolmap) "
                                     "into a data set")
    p.add_argument("--photos", required=True, help="a folder of photos or a video file")
    p.add_argument("--out", required=True, help="data set folder to write")
    _add_pose_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_poses)

    p = sub.add_parser("reconstruct", help="reconstruct splats from a capture data set, or "
                                           "from photos (poses first)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--capture", help="capture folder (transforms_*.json)")
    source.add_argument("--photos", help="a folder of photos or a video file: recover the "
                                         "poses first")
    p.add_argument("--dataset", help="with --photos: data set folder for the recovered poses "
                                     "(default: <out name>_poses beside --out)")
    _add_pose_arguments(p)
    p.add_argument("--backend", default="fit", choices=["fit", "lgm", "lgm+fit"])
    p.add_argument("--steps", type=int, help="optimisation steps (fit backends)")
    p.add_argument("--preset", choices=["cpu", "gpu"], help="fit schedule (default by device)")
    p.add_argument("--weights", help="LGM .safetensors file or folder (default: hub cache)")
    p.add_argument("--offline", action="store_true", help="never download weights")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", choices=["fp16", "bf16", "fp32"],
                   help="LGM precision (default: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="splat file to write (.ply, .spz, ...)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("eval", help="PSNR/SSIM of splats on a capture's test views")
    p.add_argument("--splats", required=True)
    p.add_argument("--capture", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("render", help="render splats from every frame of a transforms file")
    p.add_argument("--splats", required=True)
    p.add_argument("--cameras", required=True, help="transforms_*.json (NeRF-synthetic)")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--engine", default="exact", choices=["exact", "eevee", "cycles"])
    p.add_argument("--resolution", type=int, help="override the longer image side")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("rig", help="bind a splat object to an armature or a humanoid template")
    p.add_argument("--blend", required=True)
    p.add_argument("--object", required=True, help="the splat object")
    rig_src = p.add_mutually_exclusive_group(required=True)
    rig_src.add_argument("--armature", help="an armature object in the .blend")
    rig_src.add_argument("--template", choices=["humanoid"], help="fit a human metarig")
    p.add_argument("--out", required=True, help="the .blend to write")
    p.set_defaults(func=cmd_rig)

    p = sub.add_parser("bake", help="write the posed splats of a frame range as .ply files")
    p.add_argument("--blend", required=True)
    p.add_argument("--object", required=True)
    p.add_argument("--frames", required=True, help="A:B, inclusive")
    p.add_argument("--out", required=True, help="folder for <name>_<frame>.ply")
    p.set_defaults(func=cmd_bake)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        # Unwritable output folders, full disks: the user's problem, said in one line.
        print(f"error: {err}", file=sys.stderr)
        return 2
