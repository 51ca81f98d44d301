"""The parameters each worker job kind takes, checked before any work starts.

:func:`check_job` returns the parameters with defaults filled in, or raises
:class:`InvalidParameters` naming the job kind, the parameter and what was wrong with it
(unknown names, missing required ones, wrong types, numbers out of range or not finite,
choices not on the list, a missing input file). The worker answers that with an error of type
``InvalidParameters`` and keeps serving.
"""

from __future__ import annotations

import math
import re

from ..devices import DTYPES
from ..errors import GSError
from ..poses.dataset import DEFAULT_TEST_EVERY
from ..poses.recover import DEFAULT_FRAMES, DEFAULT_MAX_SIZE
from ..reconstruction.pipeline import BACKENDS

__all__ = ["InvalidParameters", "JOB_KINDS", "OUTPUT_NAME", "POSE_PARAMS", "check_job"]

DEVICES = ("auto", "cpu", "cuda")
MAX_IMAGE_SIDE = 16384
# What a reconstruction may be written as (the worker's file name; the format follows it).
OUTPUT_NAME = re.compile(r"splats(\.compressed)?\.(ply|spz|splat)")
# What a photos job recovers poses from: the folder of photos sent, or the one video sent.
PHOTO_SOURCE = re.compile(r"photos(/[^/\\\x00]+)?")


class InvalidParameters(GSError):
    """A job's parameters are wrong; the message names which and why."""


_REQUIRED = object()


def _fail(what: str, value) -> None:
    shown = repr(value)
    raise InvalidParameters(f"must be {what}, got {shown[:80]}")


def _whole(lo: int, hi: int):
    def check(value):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            _fail(f"a whole number from {lo} to {hi}", value)
        return value
    return check


def _number(lo: float, hi: float):
    def check(value):
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or not math.isfinite(value) or not lo <= value <= hi):
            _fail(f"a finite number from {lo:g} to {hi:g}", value)
        return float(value)
    return check


def _flag(value):
    if not isinstance(value, bool):
        _fail("true or false", value)
    return value


def _text(value):
    if not isinstance(value, str) or not value.strip() or len(value) > 4096:
        _fail("a non-empty text", value)
    return value


def _choice(options):
    def check(value):
        if value not in options:
            _fail(f"one of {', '.join(map(str, options))}", value)
        return value
    return check


def _optional(check):
    return lambda value: None if value is None else check(value)


def _matrix(rows: int, cols: int):
    def check(value):
        ok = (isinstance(value, list) and len(value) == rows and all(
            isinstance(r, list) and len(r) == cols and all(
                isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                for x in r) for r in value))
        if not ok:
            _fail(f"a {rows}×{cols} matrix of finite numbers", value)
        return value
    return check


def _output_name(value):
    if not isinstance(value, str) or not OUTPUT_NAME.fullmatch(value):
        _fail("splats.ply, splats.compressed.ply, splats.spz or splats.splat", value)
    return value


def _photo_source(value):
    if (not isinstance(value, str) or not PHOTO_SOURCE.fullmatch(value)
            or value.split("/")[-1] in (".", "..")):
        _fail("photos or photos/<video file name>", value)
    return value


def _vector3(value):
    ok = (isinstance(value, list) and len(value) == 3 and all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
        for x in value) and any(value))
    if not ok:
        _fail("a non-zero [x, y, z] of finite numbers", value)
    return [float(x) for x in value]


def _max_size(value):
    if value != 0:
        _whole(16, MAX_IMAGE_SIDE)(value)
    return value


def _threads(value):
    if value != -1:
        _whole(1, 1024)(value)
    return value


# The photos job's parameters that are recover_poses() keyword arguments.
POSE_PARAMS = ("frames", "max_size", "test_every", "up", "camera_model", "matcher", "threads")

# kind → {name: (check, default or _REQUIRED)}, and the input files the job needs.
_SPECS = {
    "check": {},
    "wait": {"seconds": (_number(0.0, 3600.0), 1.0), "cancellable": (_flag, True)},
    "render": {
        "viewmat": (_matrix(4, 4), _REQUIRED), "K": (_matrix(3, 3), _REQUIRED),
        "width": (_whole(1, MAX_IMAGE_SIDE), _REQUIRED),
        "height": (_whole(1, MAX_IMAGE_SIDE), _REQUIRED),
        "device": (_choice(DEVICES), "auto"),
    },
    "reconstruct": {
        "backend": (_choice(BACKENDS), "fit"), "steps": (_optional(_whole(1, 10**7)), None),
        "weights": (_optional(_text), None), "device": (_choice(DEVICES), "auto"),
        "seed": (_whole(0, 2**31 - 1), 0), "preset": (_optional(_choice(("cpu", "gpu"))), None),
        "offline": (_optional(_flag), None), "variant": (_text, "big"),
        "dtype": (_optional(_choice(DTYPES)), None), "output": (_output_name, "splats.ply"),
    },
    "photos": {  # pose recovery (pycolmap) and the fit, from photos or a video sent
        "source": (_photo_source, "photos"), "masks": (_flag, False),
        "frames": (_whole(1, 100_000), DEFAULT_FRAMES), "max_size": (_max_size, DEFAULT_MAX_SIZE),
        "test_every": (_whole(0, 1_000_000), DEFAULT_TEST_EVERY),
        "up": (_optional(_vector3), None),
        "camera_model": (_choice(("SIMPLE_PINHOLE", "PINHOLE")), "SIMPLE_PINHOLE"),
        "matcher": (_choice(("auto", "exhaustive", "sequential")), "auto"),
        "threads": (_threads, -1), "steps": (_optional(_whole(1, 10**7)), None),
        "device": (_choice(DEVICES), "auto"), "seed": (_whole(0, 2**31 - 1), 0),
        "preset": (_optional(_choice(("cpu", "gpu"))), None),
        "output": (_output_name, "splats.ply"),
        # How the sender names the photos and masks folders (or the video): the job's own
        # paths in messages and the report are replaced by these.
        "photos_label": (_optional(_text), None), "masks_label": (_optional(_text), None),
    },
}
_INPUTS = {"render": ("splats.ply", "the splats as splats.ply"),
           "reconstruct": ("capture/", "a data set under capture/"),
           "photos": ("photos/", "photos or a video under photos/")}
JOB_KINDS = tuple(_SPECS)


def check_job(kind, params, files) -> dict:
    """``params`` of a ``kind`` job checked and completed with defaults; ``files`` is the job's
    input manifest ([{"path", "size"}]). Raises :class:`InvalidParameters`."""
    if not isinstance(kind, str) or kind not in _SPECS:
        raise InvalidParameters(f"unknown job kind {kind!r:.80}; the worker runs "
                                f"{', '.join(JOB_KINDS)}")
    if not isinstance(params, dict):
        raise InvalidParameters(f"{kind} job: params must be an object, got {params!r:.80}")
    spec = _SPECS[kind]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise InvalidParameters(f"{kind} job: unknown parameter {unknown[0]!r} (it takes "
                                f"{', '.join(spec) or 'none'})")
    checked = {}
    for name, (check, default) in spec.items():
        if name not in params:
            if default is _REQUIRED:
                raise InvalidParameters(f"{kind} job: parameter {name!r} is missing")
            checked[name] = default
            continue
        try:
            checked[name] = check(params[name])
        except InvalidParameters as err:
            raise InvalidParameters(f"{kind} job: parameter {name!r} {err}") from None
    _check_inputs(kind, files)
    if kind == "photos":
        _check_photo_inputs(checked, files)
    return checked


def _check_inputs(kind: str, files) -> None:
    if kind not in _INPUTS:
        return
    needed, what = _INPUTS[kind]
    paths = [f.get("path") for f in files or [] if isinstance(f, dict)]
    if needed.endswith("/"):
        present = any(isinstance(p, str) and p.startswith(needed) for p in paths)
    else:
        present = needed in paths
    if not present:
        raise InvalidParameters(f"{kind} job: its input files must hold {what}")


def _check_photo_inputs(params: dict, files) -> None:
    paths = {f.get("path") for f in files or [] if isinstance(f, dict)}
    source = params["source"]
    if source != "photos" and source not in paths:
        raise InvalidParameters(f"photos job: its input files must hold {source}, the video")
    if params["masks"] and not any(isinstance(p, str) and p.startswith("masks/")
                                   for p in paths):
        raise InvalidParameters("photos job: its input files must hold the masks under masks/")
