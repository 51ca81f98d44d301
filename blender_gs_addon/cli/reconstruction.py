"""Capture and reconstruction commands: ``capture`` (bpy), ``reconstruct``, ``check-worker``,
``eval`` and ``render`` (exact with torch; EEVEE/Cycles with bpy)."""

from __future__ import annotations

import json
import math

from ..errors import GSError
from .blender import blender_module
from .options import device_option, outside_paths_option
from .output import progress_printer, stderr_report, stdout_report
from .photos import add_pose_arguments, pose_options, print_pose_report

__all__ = ["add_commands"]


def add_commands(sub) -> None:
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

    p = sub.add_parser("reconstruct", help="reconstruct splats from a capture data set, or "
                                           "from photos (poses first)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--capture", help="capture folder (transforms_*.json)")
    source.add_argument("--photos", help="a folder of photos or a video file: recover the "
                                         "poses first")
    p.add_argument("--dataset", help="with --photos: data set folder for the recovered poses "
                                     "(default: <out name>_poses beside --out)")
    add_pose_arguments(p)
    p.add_argument("--backend", default="fit", choices=["fit", "lgm", "lgm+fit"])
    p.add_argument("--steps", type=int, help="optimisation steps (fit backends)")
    p.add_argument("--preset", choices=["cpu", "gpu"], help="fit schedule (default by device)")
    p.add_argument("--weights", help="LGM .safetensors file or folder (default: hub cache)")
    p.add_argument("--offline", action="store_true", help="never download weights")
    device_option(p)
    p.add_argument("--dtype", choices=["fp16", "bf16", "fp32"],
                   help="LGM precision (default: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="splat file to write (.ply, .spz, ...)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    outside_paths_option(p)
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

    p = sub.add_parser("eval", help="PSNR/SSIM of splats on a capture's test views")
    p.add_argument("--splats", required=True)
    p.add_argument("--capture", required=True)
    p.add_argument("--split", default="test")
    device_option(p)
    p.add_argument("--json", action="store_true")
    outside_paths_option(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("render", help="render splats from every frame of a transforms file")
    p.add_argument("--splats", required=True)
    p.add_argument("--cameras", required=True, help="transforms_*.json (NeRF-synthetic)")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--engine", default="exact", choices=["exact", "eevee", "cycles"])
    p.add_argument("--resolution", type=int, help="override the longer image side")
    p.add_argument("--samples", type=int, help="EEVEE/Cycles samples per pixel (default: 1 "
                   "for the splat display; 8 EEVEE / 64 Cycles for Blender 5.3's native splats)")
    device_option(p)
    outside_paths_option(p)
    p.set_defaults(func=cmd_render)


def cmd_capture(args) -> int:
    bpy, commands = blender_module("scene.commands")
    folder = commands.capture_main(args, report=stdout_report)
    print(f"Wrote data set {folder}")
    return 0


def cmd_reconstruct(args) -> int:
    from ..reconstruction.pipeline import held_out_summary, reconstruct
    from ..worker.protocol import json_safe

    options = {"backend": args.backend, "steps": args.steps, "weights": args.weights,
               "device": args.device, "seed": args.seed, "preset": args.preset,
               "offline": True if args.offline else None, "dtype": args.dtype}
    if args.worker_command and args.photos:
        raise GSError("--photos runs pose recovery here; recover the poses first (poses "
                      "--photos DIR --out DATASET), then reconstruct --capture DATASET "
                      "--worker-command …")
    if args.worker_command:
        from ..worker.offload import reconstruct_in_worker

        result = reconstruct_in_worker(
            capture=args.capture, out=args.out, params=options, command=args.worker_command,
            progress=progress_printer(), report=stdout_report)
    else:
        result = reconstruct(capture=args.capture, out=args.out, **options,
                             photos=args.photos, dataset=args.dataset,
                             pose_options=pose_options(args) if args.photos else None,
                             allow_outside_paths=args.allow_outside_paths,
                             progress=progress_printer(), report=stdout_report)
    summary = {k: v for k, v in result.items() if k != "normalisation"}
    if args.json:
        print(json.dumps(json_safe(summary)))
    else:
        if "poses" in result:
            print_pose_report(result["poses"])
        extra = held_out_summary(result)
        print(f"Reconstructed {result['count']:,} splats with {args.backend} on "
              f"{result['device']} in {result['seconds']:.1f} s{', ' + extra if extra else ''}"
              f": {result['splats']}")
    return 0


def cmd_check_worker(args) -> int:
    from ..worker.client import WorkerClient
    from ..worker.offload import STARTUP_TIMEOUT, describe_environment

    with WorkerClient(command=args.worker_command, startup_timeout=STARTUP_TIMEOUT) as client:
        info = client.run("check", timeout=STARTUP_TIMEOUT)
    print(f"Worker {client.label} (version {client.info.get('version')}, pid "
          f"{client.info.get('pid')}): {describe_environment(info)}")
    if not info.get("torch"):
        raise GSError(f"the worker cannot import torch ({info.get('torch_error', 'missing')})")
    return 0


def cmd_eval(args) -> int:
    from ..conventions.frames import splats_file_to_world
    from ..datasets.nerf_synthetic import read_transforms
    from ..devices import resolve_device
    from ..formats import read_splats
    from ..reconstruction.evaluate import evaluate_splats

    splats = splats_file_to_world(read_splats(args.splats, report=stderr_report))
    dataset = read_transforms(args.capture, allow_outside_paths=args.allow_outside_paths,
                              report=stderr_report)
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
    from ..reconstruction.evaluate import render_frames_exact

    options = {"splats_path": args.splats, "cameras": args.cameras, "out_dir": args.out,
               "resolution": args.resolution}
    if args.engine in ("eevee", "cycles"):
        written = blender_module("scene.render_engine")[1].render_dataset_frames(
            engine=args.engine, samples=args.samples,
            allow_outside_paths=args.allow_outside_paths, report=stdout_report, **options)
    elif args.engine == "exact":
        written = render_frames_exact(device=args.device,
                                      allow_outside_paths=args.allow_outside_paths, **options)
    else:
        raise GSError(f"unknown render engine {args.engine!r}; choose exact, eevee or cycles")
    print(f"Rendered {len(written)} frames to {args.out}")
    return 0


