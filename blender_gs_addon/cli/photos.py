"""``poses``: camera poses of photos or a video recovered with pycolmap into a data set (see
:mod:`..poses`); the pose options ``reconstruct --photos`` shares."""

from __future__ import annotations

import json

from ..errors import GSError
from .output import progress_printer, stdout_report

__all__ = ["add_commands", "add_pose_arguments", "pose_options", "print_pose_report"]


def add_pose_arguments(p) -> None:
    from ..poses.dataset import DEFAULT_TEST_EVERY
    from ..poses.recover import DEFAULT_FRAMES, DEFAULT_MAX_SIZE

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


def add_commands(sub) -> None:
    p = sub.add_parser("poses", help="recover camera poses of photos or a video (pycolmap) "
                                     "into a data set")
    p.add_argument("--photos", required=True, help="a folder of photos or a video file")
    p.add_argument("--out", required=True, help="data set folder to write")
    add_pose_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_poses)


def pose_options(args) -> dict:
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


def print_pose_report(report: dict) -> None:
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
    from ..poses.recover import recover_poses

    result = recover_poses(photos=args.photos, out=args.out, **pose_options(args),
                           progress=progress_printer(), report=stdout_report)
    if args.json:
        print(json.dumps(result))
    else:
        print_pose_report(result)
        print(f"Wrote data set {result['dataset']}")
    return 0
