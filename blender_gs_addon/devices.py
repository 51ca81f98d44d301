"""Where computation runs: torch and gsplat availability, and device/dtype resolution.

Every question of the form "can this Python run torch?", "does gsplat's CUDA extension load?",
"which device does 'auto' mean?" and "which precision on that device?" is answered here, once per
process. torch and gsplat are imported only inside the functions.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Literal

from .errors import GSError, Report, log_report

__all__ = ["DTYPES", "Device", "Dtype", "torch_available", "torch_unavailable_reason",
           "gsplat_cuda_available", "gsplat_unavailable_reason", "resolve_device",
           "resolve_dtype", "default_dtype_for"]

Device = Literal["auto", "cpu", "cuda"]
Dtype = Literal["fp16", "bf16", "fp32"]
DTYPES: tuple[str, ...] = ("fp16", "bf16", "fp32")

# Probes run once per process; tests reset them with monkeypatch.
_TORCH_STATE: dict = {}
_GSPLAT_STATE: dict = {}


def torch_available() -> bool:
    """True when ``import torch`` works in this Python (tried once, then remembered).

    A torch that is installed but fails to import (ABI or DLL clash) counts as unavailable, so
    automatic mode goes to the worker instead.
    """
    if "ok" not in _TORCH_STATE:
        if "torch" in sys.modules:
            _TORCH_STATE["ok"] = True
        elif importlib.util.find_spec("torch") is None:
            _TORCH_STATE.update(ok=False, why="torch is not installed in this Python")
        else:
            try:
                import torch  # noqa: F401
                _TORCH_STATE["ok"] = True
            except Exception as err:  # any import failure means: use the worker
                _TORCH_STATE.update(ok=False,
                                    why=f"import torch failed: {type(err).__name__}: {err}")
    return _TORCH_STATE["ok"]


def torch_unavailable_reason() -> str:
    """Why :func:`torch_available` said no ("" when it said yes or was not asked)."""
    return _TORCH_STATE.get("why", "")


def gsplat_cuda_available(*, report: Report = log_report) -> bool:
    """Whether gsplat's CUDA kernels load; the answer is kept for the process.

    gsplat 1.5.3 from PyPI compiles its CUDA extension on first use (about a minute with 16
    cores, longer on fewer; needs nvcc). When that fails the "auto" backend renders CUDA
    tensors with the torch path instead (same rules, 7–50× slower on an H200; see
    docs/benchmarks.md) and says so once, rather than failing inside gsplat.
    """
    if "ok" not in _GSPLAT_STATE:
        try:
            from gsplat.cuda import _backend

            ok = _backend._C is not None
            why = "" if ok else "its JIT build failed or found no CUDA toolkit (nvcc)"
        except Exception as err:  # ImportError, or a compiler error raised by the JIT build
            ok, why = False, f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
        _GSPLAT_STATE.update(ok=ok, why=why)
        if not ok:
            report({"WARNING"}, f"gsplat's CUDA kernels are not available ({why}); rendering "
                                "on the GPU with the slower pure-torch rasterizer")
    return _GSPLAT_STATE["ok"]


def gsplat_unavailable_reason() -> str:
    """Why :func:`gsplat_cuda_available` said no ("" when it said yes or was not asked)."""
    return _GSPLAT_STATE.get("why", "")


def resolve_device(device: str) -> str:
    """'auto' → 'cuda' when torch sees a GPU, else 'cpu'; checks an explicit 'cuda'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise GSError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise GSError("device 'cuda' was asked for but torch sees no CUDA GPU "
                      f"(torch {torch.__version__})")
    return device


def default_dtype_for(device):
    """fp16 on CUDA (what the LGM checkpoint stores and the reference ran), fp32 elsewhere (CPU
    kernels for half precision are slow or missing)."""
    import torch

    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def resolve_dtype(dtype: str | None, device: str):
    """'fp16' / 'bf16' / 'fp32' → torch dtype; None → :func:`default_dtype_for` the device."""
    import torch

    if dtype is None:
        return default_dtype_for(device)
    table = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if dtype not in table:
        raise GSError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return table[dtype]
