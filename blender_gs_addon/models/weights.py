"""Finding and loading the published LGM weights — safetensors only.

Where the weights come from, in order:

1. an explicit local ``.safetensors`` file;
2. an explicit local folder holding ``model_fp16_fixrot.safetensors`` (or the fp32
   ``model_fixrot.safetensors``);
3. the Hugging Face hub, ``ashawkey/LGM`` at the pinned revision :data:`LGM_HUB_REVISION`:
   first the local hub cache (no network), then a download — unless offline
   (``offline=True`` or ``HF_HUB_OFFLINE=1``).

Pickle-based checkpoints (.pt, .pth, .bin, .ckpt) are refused: unpickling runs code from the
file. Every tensor is checked against the network's own state dict (names, shapes, floating
type, finiteness) before it is assigned, and the network is built on the meta device first, so
loading never holds two copies of the 415 M parameters.

Only the "fixrot" checkpoints are accepted by name: the older ``model.safetensors`` /
``model_fp16.safetensors`` were trained with the quaternion normalised across all Gaussians
instead of per Gaussian (fixed upstream), so they do not match this network's activations.

torch, safetensors and huggingface_hub are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import GSError, Report, log_report

__all__ = [
    "LGM_HUB_REPO",
    "LGM_HUB_REVISION",
    "LGM_WEIGHT_FILES",
    "download_instructions",
    "hub_offline",
    "load_lgm",
    "read_lgm_state_dict",
    "resolve_lgm_weights",
]

LGM_HUB_REPO = "ashawkey/LGM"
# Hub commit "Upload model_fixrot.safetensors" (1c28a2f): the first one holding both fixrot
# files (model_fp16_fixrot arrived in its parent 55b933d). Pinned so that an upstream change can
# never swap the weights under us; override with ``revision=``.
LGM_HUB_REVISION = "1c28a2fd3bb1982414f722503ae862bdbb82636c"
# Preferred first: fp16 is half the download and what CUDA inference runs in anyway.
LGM_WEIGHT_FILES = ("model_fp16_fixrot.safetensors", "model_fixrot.safetensors")
# Sizes in bytes (and LFS sha256) as listed on the hub at the pinned revision.
LGM_FILE_SIZES = {
    "model_fp16_fixrot.safetensors": 830_126_160,  # sha256 744d6324…6a050ab
    "model_fixrot.safetensors": 1_660_212_248,  # sha256 186631d0…e96f1335
}
_ROTATION_BUG_FILES = ("model.safetensors", "model_fp16.safetensors")
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_TRUE = ("1", "on", "yes", "true")
_HUB_TIMEOUT_S = 5.0  # metadata request; a dead network fails in seconds, not minutes


def hub_offline(offline: bool | None = None) -> bool:
    """An explicit ``offline`` wins; otherwise ``HF_HUB_OFFLINE`` (read now, not at import)."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def download_instructions(*, filename: str = LGM_WEIGHT_FILES[0],
                          revision: str = LGM_HUB_REVISION) -> str:
    """How to fetch the weights on a connected machine and hand them to us."""
    size = LGM_FILE_SIZES.get(filename)
    size_text = f", {size / 1e6:.0f} MB" if size else ""
    return (
        "To get the LGM weights, on a machine with internet access run\n"
        f"    huggingface-cli download {LGM_HUB_REPO} {filename} --revision {revision} "
        "--local-dir DIR\n"
        f"(or download https://huggingface.co/{LGM_HUB_REPO}/resolve/{revision}/{filename}"
        f"{size_text}), copy the file to this machine and pass the file, or the folder that "
        f"holds it, as the LGM weights path (weights=DIR or weights=DIR/{filename}). "
        "A Hugging Face cache that already holds it also works: point cache_dir (or HF_HOME) "
        "at it."
    )


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise GSError(
            f"{path}: refusing to load a {path.suffix} checkpoint. Such files are Python "
            "pickles, and unpickling can run arbitrary code from the file; only .safetensors "
            f"weights are loaded. {download_instructions()}")


def _weights_in_folder(folder: Path) -> Path:
    for name in LGM_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    present = sorted(p.name for p in folder.iterdir() if p.is_file())
    hint = ""
    if any(name in present for name in _ROTATION_BUG_FILES):
        hint = (" It holds the older non-'fixrot' weights, which were trained with a rotation "
                "normalisation bug and do not match this network; get the fixrot file.")
    elif any(Path(n).suffix.lower() in _PICKLE_SUFFIXES for n in present):
        hint = " Pickle checkpoints (.pt/.pth/.bin/.ckpt) are not loaded, only .safetensors."
    raise GSError(f"{folder}: no {' or '.join(LGM_WEIGHT_FILES)} in this folder.{hint} "
                  f"{download_instructions()}")


def resolve_lgm_weights(weights: str | os.PathLike | None = None, *,
                        offline: bool | None = None, cache_dir: str | os.PathLike | None = None,
                        revision: str = LGM_HUB_REVISION, filename: str = LGM_WEIGHT_FILES[0],
                        report: Report = log_report) -> Path:
    """Path of a local LGM .safetensors file, downloading it from the hub if allowed.

    Args:
        weights: a .safetensors file, or a folder holding one of :data:`LGM_WEIGHT_FILES`;
            None means the hub (cache first).
        offline: never touch the network; default from ``HF_HUB_OFFLINE``.
        cache_dir: hub cache folder (default: huggingface_hub's, i.e. ``HF_HOME``/hub).
        revision: hub commit, branch or tag.
        filename: which file to download when it is not cached.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        _refuse_pickle(path)
        if path.is_dir():
            return _weights_in_folder(path)
        if not path.is_file():
            raise GSError(f"{path}: LGM weights file not found. {download_instructions()}")
        return path
    return _from_hub(offline=hub_offline(offline), cache_dir=cache_dir, revision=revision,
                     filename=filename, report=report)


def _from_hub(*, offline: bool, cache_dir, revision: str, filename: str,
              report: Report) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise GSError("huggingface_hub is not installed, so the LGM weights cannot be fetched "
                      f"from the hub. {download_instructions(filename=filename, revision=revision)}"
                      ) from None
    cache = None if cache_dir is None else str(Path(cache_dir).expanduser())
    # The cache first, for every accepted file: no network, and an fp32 copy is as good.
    for name in dict.fromkeys((filename, *LGM_WEIGHT_FILES)):
        try:
            return Path(hf_hub_download(LGM_HUB_REPO, name, revision=revision, cache_dir=cache,
                                        local_files_only=True))
        except Exception:  # any miss means "not cached"; the next step explains
            continue
    instructions = download_instructions(filename=filename, revision=revision)
    if offline:
        where = f" in {cache}" if cache else " in the Hugging Face cache"
        raise GSError(f"LGM weights not found: no weights path was given, none are cached{where}"
                      ", and the hub is offline (HF_HUB_OFFLINE or offline=True). "
                      + instructions)
    size = LGM_FILE_SIZES.get(filename)
    report({"INFO"}, f"downloading {LGM_HUB_REPO}/{filename}"
                     + (f" ({size / 1e6:.0f} MB)" if size else "") + " from the Hugging Face hub")
    try:
        return Path(hf_hub_download(LGM_HUB_REPO, filename, revision=revision, cache_dir=cache,
                                    etag_timeout=_HUB_TIMEOUT_S))
    except Exception as err:  # network, auth, disk: all end the same way for us
        raise GSError(f"LGM weights could not be downloaded from the Hugging Face hub "
                      f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
                      + instructions) from err


def _listing(names, limit: int = 5) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_lgm_state_dict(path: str | os.PathLike, expected: dict[str, tuple[int, ...]], *,
                        device="cpu", dtype=None) -> dict:
    """Read and check a safetensors checkpoint against ``expected`` {name: shape}.

    Returns {name: tensor} on ``device``, cast to ``dtype`` (default: the file's own).
    GSError for a pickle suffix, an unreadable file, missing/unexpected names, wrong shapes,
    non-float tensors or non-finite values.
    """
    import torch
    from safetensors import safe_open

    path = Path(path)
    _refuse_pickle(path)
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as err:  # SafetensorError, OSError, header garbage
        raise GSError(f"{path}: not a readable safetensors file ({err})") from err
    with handle as f:
        names = set(f.keys())
        missing, unexpected = set(expected) - names, names - set(expected)
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing ({_listing(missing)})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected ({_listing(unexpected)})")
            raise GSError(f"{path}: not LGM weights for this network: tensor names differ — "
                          + "; ".join(parts))
        wrong_shape, wrong_type = [], []
        for name in sorted(names):
            info = f.get_slice(name)
            shape = tuple(info.get_shape())
            if shape != tuple(expected[name]):
                wrong_shape.append(f"{name} {list(shape)} (expected {list(expected[name])})")
            if info.get_dtype() not in _FLOAT_DTYPES:
                wrong_type.append(f"{name} {info.get_dtype()}")
        if wrong_shape:
            raise GSError(f"{path}: {len(wrong_shape)} tensors have the wrong shape for this "
                          f"network: {_listing(wrong_shape)}")
        if wrong_type:
            raise GSError(f"{path}: {len(wrong_type)} tensors are not floating point: "
                          f"{_listing(wrong_type)}")
        state, nonfinite = {}, []
        for name in sorted(names):
            tensor = f.get_tensor(name)
            if not bool(torch.isfinite(tensor).all()):
                nonfinite.append(name)
                continue
            state[name] = tensor.to(device=device, dtype=dtype or tensor.dtype)
    if nonfinite:
        raise GSError(f"{path}: {len(nonfinite)} tensors contain NaN or infinite values: "
                      f"{_listing(nonfinite)}")
    return state


def load_lgm(weights: str | os.PathLike | None = None, *, variant: str = "big", device=None,
             dtype=None, offline: bool | None = None, cache_dir: str | os.PathLike | None = None,
             revision: str = LGM_HUB_REVISION, report: Report = log_report):
    """The LGM network with its published (or given) weights, in eval mode, no gradients.

    Args:
        weights: see :func:`resolve_lgm_weights` (file, folder, or None for the hub).
        variant: network preset the weights are for ("big" for the published ones).
        device: default CUDA when available, else CPU.
        dtype: default fp16 on CUDA, fp32 on CPU (the fp16 checkpoint is upcast there).
    """
    import torch

    from ..devices import default_dtype_for
    from .lgm import build_lgm

    device = torch.device(device if device is not None else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = default_dtype_for(device) if dtype is None else dtype
    path = resolve_lgm_weights(weights, offline=offline, cache_dir=cache_dir, revision=revision,
                               report=report)
    known_size = LGM_FILE_SIZES.get(path.name)
    if known_size is not None and path.stat().st_size != known_size:
        report({"WARNING"}, f"{path}: {path.stat().st_size:,} bytes, but the published file of "
                            f"that name has {known_size:,}; checking its tensors anyway")
    model = build_lgm(variant, device="meta", dtype=dtype)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    state = read_lgm_state_dict(path, expected, device=device, dtype=dtype)
    # assign=True adopts the loaded tensors as the parameters (meta tensors cannot be copied
    # into); strict=True because read_lgm_state_dict already matched the names exactly.
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    report({"INFO"}, f"loaded LGM {variant} weights from {path} ({dtype}, {device})")
    return model.eval()
