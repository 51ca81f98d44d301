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
from .conventions.frames import UP_AXES
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
def _limits(args):
    """ReadLimits from ``--max-splats`` (None: the defaults)."""
    from .formats import ReadLimits

    return None if args.max_splats is None else ReadLimits(max_splats=args.max_splats)


def _spz_version(args, output) -> int:
    """``--spz-version`` (default 3), refused for an output that is not .spz."""
    if args.spz_version is None:
        return 3
    if not os.fspath(output).lower().endswith(".spz"):
        raise GSError(f"{output}: --spz-version applies only to .spz output")
    return args.spz_version


def cmd_info(args) -> int:
    from .formats import detect_format, read_splats

    fmt = detect_format(args.file)
    splats = read_splats(args.file, format=fmt, limits=_limits(args), report=_stderr_report)
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
    spz_version = _spz_version(args, args.output)
    splats = read_splats(args.input, limits=_limits(args), report=_stderr_report)
    if args.sh_degree is not None:
        splats = splats.with_sh_degree(args.sh_degree)
    out_fmt = detect_format(args.output, for_writing=True)
    write_splats(args.output, splats, format=out_fmt, spz_version=spz_version,
                 report=_stderr_report)
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
        args.file, up_axis=args.up_axis, name=args.name, limits=_limits(args),
        report=_stdout_report
    )
    _blend_files().save_blend(args.blend)
    print(f"Saved {args.blend} with object {obj.name!r}")
    return 0


def cmd_export(args) -> int:
    spz_version = _spz_version(args, args.output)
    bpy, splat_object = _blender("scene.splat_object")
    blend_files = _blend_files()
    blend_files.open_blend(args.blend)
    obj = blend_files.object_named(args.blend, args.object)
    splat_object.export_splats(
        obj, args.output, apply_transform=not args.no_transform, up_axis=args.up_axis,
        spz_version=spz_version, report=_stdout_report,
    )
    return 0


def cmd_capture(args) -> int:
    bpy, commands = _blender("scene.commands")
    folder = commands.capture_main(args, report=_stdout_report)
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


def cmd_reconstruct(args) -> int:
    from .reconstruction.pipeline import held_out_summary, reconstruct
    from .worker.protocol import json_safe

    options = {"backend": args.backend, "steps": args.steps, "weights": args.weights,
               "device": args.device, "seed": args.seed, "preset": args.preset,
               "offline": True if args.offline else None, "dtype": args.dtype}
    if args.worker_command:
        from .worker.offload import reconstruct_in_worker

        result = reconstruct_in_worker(
            capture=args.capture, out=args.out, params=options, command=args.worker_command,
            progress=_progress_printer(), report=_stdout_report)
    else:
        result = reconstruct(capture=args.capture, out=args.out, **options,
                             allow_outside_paths=args.allow_outside_paths,
                             progress=_progress_printer(), report=_stdout_report)
    summary = {k: v for k, v in result.items() if k != "normalisation"}
    if args.json:
        print(json.dumps(json_safe(summary)))
    else:
        extra = held_out_summary(result)
        print(f"Reconstructed {result['count']:,} splats with {args.backend} on "
              f"{result['device']} in {result['seconds']:.1f} s{', ' + extra if extra else ''}"
              f": {result['splats']}")
    return 0


def cmd_check_worker(args) -> int:
    from .worker.client import WorkerClient
    from .worker.offload import STARTUP_TIMEOUT, describe_environment

    with WorkerClient(command=args.worker_command, startup_timeout=STARTUP_TIMEOUT) as client:
        info = client.run("check", timeout=STARTUP_TIMEOUT)
    print(f"Worker {client.label} (version {client.info.get('version')}, pid "
          f"{client.info.get('pid')}): {describe_environment(info)}")
    if not info.get("torch"):
        raise GSError(f"the worker cannot import torch ({info.get('torch_error', 'missing')})")
    return 0


def cmd_batch(args) -> int:
    """Many inputs, each a Ray task (or here with --local); exit 1 when an item failed, 130
    when interrupted."""
    from .batch import BatchConfig, run_batch
    from .batch.ray_runner import RayOptions

    config = BatchConfig(
        backend=args.backend, steps=args.steps, seed=args.seed, weights=args.weights,
        device=args.device, splats_format=args.format, rig=args.rig, views=args.views,
        test_views=args.test_views, resolution=args.resolution, engine=args.engine,
        colmap_holdout=args.colmap_holdout, force=args.force)
    options = RayOptions(address=args.address, num_cpus=args.cpus,
                         cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task,
                         upload_code=args.upload_code)
    try:
        result = run_batch(args.inputs, args.out, config=config, ray_options=options,
                           executor="local" if args.local else "ray")
    except KeyboardInterrupt:
        print(f"error: interrupted; finished items are kept, run the same command again to "
              f"do the rest (summary: {Path(args.out) / 'summary.csv'})", file=sys.stderr)
        return 130
    print(json.dumps(result.rows) if args.json else result.table())
    print(f"Summary: {result.summary_csv}", file=sys.stderr)
    return 1 if result.counts["failed"] else 0


def _batch_parser(sub) -> None:
    p = sub.add_parser("batch", help="reconstruct many data sets / .blend files on Ray")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="data set folder, transforms .json, COLMAP folder, FILE.blend"
                        "[:OBJ,OBJ]; NAME=INPUT names its results folder")
    p.add_argument("--out", required=True, help="output folder (one folder per input)")
    p.add_argument("--backend", default="fit", choices=["fit", "lgm", "lgm+fit"])
    p.add_argument("--steps", type=int, help="fit steps (default: the device's preset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", help="LGM weights file or folder (same path on every node)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="with --local only; Ray tasks use the GPU Ray gives them")
    p.add_argument("--format", default=".ply", choices=[".ply", ".compressed.ply", ".spz",
                                                        ".splat"])
    p.add_argument("--rig", default="sphere", choices=["orbit", "sphere"], help=".blend inputs")
    p.add_argument("--views", type=int, default=32, help=".blend inputs: training views")
    p.add_argument("--test-views", type=int, default=8, help=".blend inputs: held-out views")
    p.add_argument("--resolution", type=int, default=256, help=".blend inputs: image size")
    p.add_argument("--engine", default="EEVEE", choices=["CYCLES", "EEVEE", "WORKBENCH"])
    p.add_argument("--colmap-holdout", type=int, default=8,
                   help="COLMAP inputs: every N-th photo held out for PSNR (0: none)")
    p.add_argument("--force", action="store_true", help="redo items finished earlier")
    p.add_argument("--address", help="an existing Ray cluster (default: start Ray here)")
    p.add_argument("--cpus", type=int, help="Ray started here: CPUs to use (default: all)")
    p.add_argument("--cpus-per-task", type=float, default=1.0)
    p.add_argument("--gpus-per-task", type=float,
                   help="GPUs per reconstruction (default: 1 when the cluster has GPUs)")
    p.add_argument("--upload-code", action="store_true",
                   help="cluster: ship this extension with the job")
    p.add_argument("--local", action="store_true", help="no Ray: run the items here in turn")
    p.add_argument("--json", action="store_true", help="print the summary rows as JSON")
    p.set_defaults(func=cmd_batch)


def cmd_eval(args) -> int:
    from .conventions.frames import splats_file_to_world
    from .datasets.nerf_synthetic import read_transforms
    from .devices import resolve_device
    from .formats import read_splats
    from .reconstruction.evaluate import evaluate_splats

    splats = splats_file_to_world(read_splats(args.splats, report=_stderr_report))
    dataset = read_transforms(args.capture, allow_outside_paths=args.allow_outside_paths,
                              report=_stderr_report)
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
    from .reconstruction.evaluate import render_frames_exact

    options = {"splats_path": args.splats, "cameras": args.cameras, "out_dir": args.out,
               "resolution": args.resolution}
    if args.engine in ("eevee", "cycles"):
        written = _blender("scene.render_engine")[1].render_dataset_frames(
            engine=args.engine, samples=args.samples,
            allow_outside_paths=args.allow_outside_paths, report=_stdout_report, **options)
    elif args.engine == "exact":
        written = render_frames_exact(device=args.device,
                                      allow_outside_paths=args.allow_outside_paths, **options)
    else:
        raise GSError(f"unknown render engine {args.engine!r}; choose exact, eevee or cycles")
    print(f"Rendered {len(written)} frames to {args.out}")
    return 0


def cmd_rig(args) -> int:
    return _blender("scene.commands")[1].rig_main(args)


def cmd_bake(args) -> int:
    return _blender("scene.commands")[1].bake_main(args)


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
    _demo_camera(bpy, out / "capture")
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


def _demo_camera(bpy, capture: Path) -> None:
    """The held-out views as cameras (their ground truth as background), the first one the
    scene camera: the .blend opens on a view F12 can render, and the splat display of Blender
    4.5-5.2 (which projects through the scene camera) shows Gaussians, not points."""
    cameras = _blender("scene.camera_import")[1]
    collection = cameras.import_camera_views(capture / "transforms_test.json", split="test",
                                             report=lambda *a: None)
    scene = bpy.context.scene
    scene.camera = sorted(collection.objects, key=lambda o: o.name)[0]


def _demo_preview(splats_path: Path, capture: Path, png: Path) -> dict:
    """Score the file on the capture's test views and write ground truth | render."""
    import numpy as np
    from PIL import Image

    from .conventions.frames import splats_file_to_world
    from .datasets.camera_views import composite_on_background, load_view_image
    from .datasets.nerf_synthetic import read_transforms
    from .formats import read_splats
    from .reconstruction.evaluate import evaluate_splats, render_views

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
    names = ("splats.compressed.ply", "splats.spz", "splats.splat", "splats.glb", "splats.sog")
    for name in names:
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def _max_splats_option(p) -> None:
    from .formats.reader_contract import DEFAULT_MAX_SPLATS

    p.add_argument("--max-splats", type=_positive_int, metavar="N",
                   help=f"refuse files declaring more splats (default {DEFAULT_MAX_SPLATS:,}); "
                        "checked before anything is allocated")


def _spz_version_option(p) -> None:
    p.add_argument("--spz-version", type=int, choices=(2, 3, 4),
                   help=".spz output version (default 3, read by every .spz loader; 4: zstd "
                        "streams with checksums, read by recent loaders only)")


def _outside_paths_option(p) -> None:
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let the data set's image paths point outside its folder (.., "
                        "absolute paths, symlinks out); only for data sets you trust")


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
    _max_splats_option(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert between .ply, .compressed.ply, .splat, .spz")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--sh-degree", type=int, choices=range(4), help="truncate SH bands")
    _max_splats_option(p)
    _spz_version_option(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("import", help="import a splat file into a fresh scene and save a .blend")
    p.add_argument("file")
    p.add_argument("--blend", required=True, help="the .blend to write")
    p.add_argument("--name", help="object name (default: the file's stem)")
    p.add_argument("--up-axis", default="-Y", choices=list(UP_AXES))
    _max_splats_option(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export a splat object of a .blend to a file")
    p.add_argument("--blend", required=True)
    p.add_argument("--object", required=True)
    p.add_argument("output")
    p.add_argument("--up-axis", default=None, choices=list(UP_AXES),
                   help="the written file's up axis (default: the one the object was imported "
                        "with; for splats from Blender's own importers, their axes)")
    p.add_argument("--no-transform", action="store_true",
                   help="write the stored values without baking the object's world transform")
    _spz_version_option(p)
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

    p = sub.add_parser("reconstruct", help="reconstruct splats from a capture data set")
    p.add_argument("--capture", required=True, help="capture folder (transforms_*.json)")
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
    _outside_paths_option(p)
    p.add_argument("--worker-command", metavar="CMD",
                   help="run the model in a worker started by this command, e.g. 'ssh gpu-box "
                        "/opt/splats/bin/python -m blender_gs_addon.worker' (the data set and "
                        "the splats travel over its pipe; --weights is a path over there)")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("check-worker", help="start a worker by a command and report its "
                                            "torch, gsplat and CUDA")
    p.add_argument("--worker-command", metavar="CMD", required=True,
                   help="e.g. 'ssh gpu-box /opt/splats/bin/python -m blender_gs_addon.worker'")
    p.set_defaults(func=cmd_check_worker)

    _batch_parser(sub)

    p = sub.add_parser("eval", help="PSNR/SSIM of splats on a capture's test views")
    p.add_argument("--splats", required=True)
    p.add_argument("--capture", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", action="store_true")
    _outside_paths_option(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("render", help="render splats from every frame of a transforms file")
    p.add_argument("--splats", required=True)
    p.add_argument("--cameras", required=True, help="transforms_*.json (NeRF-synthetic)")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--engine", default="exact", choices=["exact", "eevee", "cycles"])
    p.add_argument("--resolution", type=int, help="override the longer image side")
    p.add_argument("--samples", type=int, help="EEVEE/Cycles samples per pixel (default: 1 "
                   "for the splat display; 8 EEVEE / 64 Cycles for Blender 5.3's native splats)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _outside_paths_option(p)
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
