"""The Ray side of a batch: Ray started on this machine or an existing cluster joined, one task
per item (two for a .blend input: the capture on CPU, then the reconstruction with the GPU it
asks for), results as they come, and Ctrl-C that cancels every task and waits for them to clean
up. The only module that imports ray.

Resources: each reconstruction task asks for ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs
(default: one when the cluster has GPUs, else none), so Ray runs as many at once as the nodes
hold; a task given a GPU reconstructs on CUDA, one given none on the CPU with
``cpus_per_task`` torch threads. Ray started here is set up for small machines: no dashboard, a
100 MB object store (tasks pass only small dicts; the splats go to the shared output folder),
its logs and sockets in a temporary folder removed afterwards, and Ray's usage statistics off
unless ``RAY_USAGE_STATS_ENABLED`` says otherwise.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import GSError
from .inputs import BatchInput
from .tasks import BatchConfig, capture_item, fail_item, new_staging, reconstruct_item

__all__ = ["RayOptions", "ray_session", "run_on_ray"]

# Ray refuses object stores under 75 MiB; the tasks pass only small dicts.
_MIN_OBJECT_STORE_MB = 80


@dataclass(frozen=True)
class RayOptions:
    """Where and with what resources the batch's Ray tasks run."""

    # An existing cluster ("auto", "HOST:6379", "ray://HOST:10001"); None: start Ray here.
    address: str | None = None
    num_cpus: int | None = None  # Ray started here: CPUs it may use (None: all)
    num_gpus: int | None = None  # Ray started here: GPUs it may use (None: those it finds)
    cpus_per_task: float = 1.0  # CPUs each task asks for (also its torch threads on CPU)
    gpus_per_task: float | None = None  # GPUs each reconstruction asks for; None: 1 if any
    object_store_mb: int = 100  # Ray started here: object store size
    # Cluster: ship this extension with the job; else it must be at this path on every node.
    upload_code: bool = False
    cancel_grace_s: float = 30.0  # Ctrl-C: how long cancelled tasks get to clean up


def _code_env(options: RayOptions) -> dict:
    """The runtime environment that makes the tasks import this very package."""
    from ..extension import extension_root

    root = str(extension_root())
    if options.upload_code:
        return {"working_dir": root, "excludes": [".git", ".venv*", "tests", "docs", "out",
                                                  "dist", "**/__pycache__"]}
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}}


@contextmanager
def ray_session(options: RayOptions):
    """ray, initialised as ``options`` say, shut down afterwards (a session the caller had
    already started is used and left running)."""
    try:
        import ray
    except ImportError:
        raise GSError("batch on Ray needs the ray package (pip install ray==2.60.0); or run "
                      "the items here one by one with --local") from None
    if ray.is_initialized():
        yield ray
        return
    # No usage reports from a studio's machines unless the user turned them on.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = {"include_dashboard": False, "logging_level": logging.ERROR,
              "log_to_driver": False, "runtime_env": _code_env(options)}
    temp = None
    if options.address is None:
        temp = tempfile.mkdtemp(prefix="ray-gs-")
        kwargs.update(num_cpus=options.num_cpus, num_gpus=options.num_gpus, _temp_dir=temp,
                      object_store_memory=max(_MIN_OBJECT_STORE_MB, options.object_store_mb)
                      * 2**20)
    try:
        try:
            ray.init(address=options.address or "local", **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = options.address or "on this machine"
            raise GSError(f"could not start or reach Ray {where}: "
                          f"{str(err).strip().splitlines()[0]}") from None
        yield ray
    finally:
        ray.shutdown()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def _capture_task(item: BatchInput, staging: str, config: BatchConfig) -> dict:
    return capture_item(item, Path(staging), config)


def _reconstruct_task(item: BatchInput, staging: str, out_dir: str, config: BatchConfig,
                      captured: dict | None, cpus: float) -> dict:
    import ray
    import torch

    torch.set_num_threads(max(1, int(cpus)))
    device = "cuda" if ray.get_gpu_ids() else "cpu"  # only the GPU Ray gave this task
    return reconstruct_item(item, Path(staging), Path(out_dir), config, captured=captured,
                            device=device)


def _gpus_per_task(ray, options: RayOptions) -> float:
    """The GPUs a task asks for; GSError when Ray started here could never give them."""
    available = ray.cluster_resources()
    gpus = options.gpus_per_task
    if gpus is None:
        gpus = 1.0 if available.get("GPU", 0.0) >= 1.0 else 0.0
    if options.address is None:  # no autoscaler: a task asking for more would wait forever
        for what, need in (("GPU", gpus), ("CPU", options.cpus_per_task)):
            if need > available.get(what, 0.0):
                raise GSError(f"each task asks for {need:g} {what}(s) but Ray on this machine "
                              f"has {available.get(what, 0.0):g}")
    return gpus


def _metrics_of(ray, ref, job, out_dir: Path, config: BatchConfig) -> dict | None:
    """The task's metrics; a crashed task (worker died, node lost) as a failed item; None
    when it was cancelled."""
    item, staging, _ = job
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return None
    except ray.exceptions.RayError as err:
        line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return fail_item(item, out_dir, config, f"Ray task failed: {line}",
                         staging=staging if staging.exists() else None)


def run_on_ray(items: list[BatchInput], out_dir: Path, config: BatchConfig,
               options: RayOptions, on_result: Callable[[BatchInput, dict], None]) -> None:
    """Run every item as Ray tasks; ``on_result(item, metrics)`` as each finishes.

    Ctrl-C (KeyboardInterrupt) cancels all tasks, gives them ``cancel_grace_s`` to remove their
    unfinished folders (then stops them by force and removes those folders here), reports the
    items that finished meanwhile, and raises KeyboardInterrupt again.
    """
    out_dir = Path(out_dir)
    with ray_session(options) as ray:
        gpus = _gpus_per_task(ray, options)
        capture = ray.remote(_capture_task).options(
            num_cpus=options.cpus_per_task, num_gpus=0, max_retries=1)
        reconstruct = ray.remote(_reconstruct_task).options(
            num_cpus=options.cpus_per_task, num_gpus=gpus, max_retries=1)
        jobs = {}
        for item in items:
            staging = new_staging(out_dir, item.name)
            first = (capture.remote(item, str(staging), config) if item.kind == "blend"
                     else None)
            ref = reconstruct.remote(item, str(staging), str(out_dir), config, first,
                                     options.cpus_per_task)
            jobs[ref] = (item, staging, first)
        pending = list(jobs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in ready:
                    metrics = _metrics_of(ray, ref, jobs[ref], out_dir, config)
                    if metrics is not None:
                        on_result(jobs[ref][0], metrics)
        except KeyboardInterrupt:
            _cancel(ray, pending, jobs, out_dir, config, options, on_result)
            raise


def _cancel(ray, pending, jobs, out_dir, config, options, on_result) -> None:
    """Cancel the pending tasks (see :func:`run_on_ray`)."""
    for ref in pending:
        for task in (ref, jobs[ref][2]):
            if task is not None:
                ray.cancel(task)
    ready, stuck = (ray.wait(pending, num_returns=len(pending), timeout=options.cancel_grace_s)
                    if pending else ([], []))
    for ref in stuck:
        ray.cancel(ref, force=True)
    if stuck:  # let the killed workers go before their folders are removed
        ray.wait(stuck, num_returns=len(stuck), timeout=10.0)
    for ref in ready:
        metrics = _metrics_of(ray, ref, jobs[ref], out_dir, config)
        if metrics is not None:
            on_result(jobs[ref][0], metrics)
    for ref in pending:
        shutil.rmtree(jobs[ref][1], ignore_errors=True)  # a published item was renamed away
