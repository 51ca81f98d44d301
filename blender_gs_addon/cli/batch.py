"""``batch``: many data sets or .blend files reconstructed as Ray tasks (see :mod:`..batch`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["add_commands"]


def add_commands(sub) -> None:
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


def cmd_batch(args) -> int:
    """Many inputs, each a Ray task (or here with --local); exit 1 when an item failed, 130
    when interrupted."""
    from ..batch import BatchConfig, run_batch
    from ..batch.ray_runner import RayOptions

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
