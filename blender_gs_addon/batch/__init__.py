"""Batch reconstruction of many data sets and .blend files, each a Ray task (or run in-process)."""

from .driver import BatchResult, run_batch
from .inputs import BatchInput, resolve_inputs
from .tasks import BatchConfig, run_item

__all__ = ["BatchConfig", "BatchInput", "BatchResult", "resolve_inputs", "run_batch", "run_item"]
