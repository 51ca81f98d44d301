"""Capture settings as one value: what a capture renders, however it was asked for.

:class:`CaptureOptions` holds every setting of a capture except what it captures (the objects)
and where it writes (the output folder). The capture panel, the ``capture`` command
(:meth:`CaptureOptions.from_command_line`) and scripts (``capture_views(rig=…, …)``) all build
one; :meth:`CaptureOptions.validate` turns it into the normalised copy a capture runs with, or
raises :class:`CaptureOptionError` (a GSError) naming the bad field. The ``parse_*`` helpers read
the command line's string forms ("48x32", "0,30", "r,g,b" / "transparent").
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..conventions.lgm_rig import LGM_FOVY_DEG, LGM_RADIUS
from ..errors import GSError, Report, log_report

__all__ = [
    "Rig", "Engine", "RIGS", "ENGINE_IDS", "DEFAULT_SAMPLES", "DEFAULT_FOV_DEG",
    "DEFAULT_RESOLUTION", "MAX_RESOLUTION", "MAX_VIEWS", "COMMAND_LINE_ELEVATIONS",
    "CaptureOptionError", "CaptureOptions", "parse_resolution", "parse_elevations",
    "parse_background",
]

Rig = Literal["orbit", "sphere", "lgm", "cameras"]
Engine = Literal["CYCLES", "EEVEE", "WORKBENCH"]

RIGS: dict[str, str] = {
    "orbit": "rings of evenly spaced cameras at given elevations",
    "sphere": "cameras spread evenly over the whole sphere",
    "lgm": "the 4 views LGM was trained on (elevation 0, azimuths 0/90/180/270, r 1.5, 49.1°)",
    "cameras": "every camera in a collection, with its own lens, sensor fit and shift",
}
# Capture engine name → Blender's render engine id (both spellings are accepted).
ENGINE_IDS: dict[str, str] = {"CYCLES": "CYCLES", "EEVEE": "BLENDER_EEVEE",
                              "WORKBENCH": "BLENDER_WORKBENCH"}
DEFAULT_SAMPLES: dict[str, int] = {"CYCLES": 64, "EEVEE": 32, "WORKBENCH": 8}
DEFAULT_FOV_DEG = 50.0
DEFAULT_RESOLUTION = 512
MAX_RESOLUTION = 16384
MAX_VIEWS = 10_000
# The command line captures one ring by default, so that --views N writes N training views.
COMMAND_LINE_ELEVATIONS = (20.0,)
_WHITE = (1.0, 1.0, 1.0)


class CaptureOptionError(GSError):
    """A capture setting is malformed or out of range; ``field`` names the CaptureOptions field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class CaptureOptions:
    """How a capture renders its views (not what it captures, nor where it writes).

    Fields take what a user or script gives; ``0`` and ``None`` mean "the default" where noted.
    :meth:`validate` returns the normalised copy that :class:`scene.capture.CaptureSession`
    runs with: rig and engine in canonical spelling, whole numbers as ints, defaults filled in,
    ``resolution`` as (width, height), the LGM rig's own lens and film applied.
    """

    rig: Rig = "orbit"
    """Where the cameras are (see :data:`RIGS`); any letter case."""
    views: int = 16
    """Orbit: cameras per elevation ring; sphere: number of cameras (1‥10000). Unused by the
    lgm rig (always 4) and the cameras rig (every camera of the collection)."""
    elevations: tuple[float, ...] = (0.0, 30.0)
    """Orbit rig: ring elevations in degrees, each in −90‥90 (a single number is one ring)."""
    radius: float | None = None
    """Camera distance in the normalised world, where the selection fits a unit cube; None or 0:
    the selection's bounding sphere just stays in view. The lgm rig always uses 1.5."""
    fov: float | None = None
    """Field of view in degrees across the larger image side, in (0, 180); None or 0: 50. The
    lgm rig always uses 49.1."""
    test_views: int = 0
    """Held-out views (0‥10000): orbit / sphere / lgm render an extra spiral of this many; the
    cameras rig holds out that many of its cameras."""
    resolution: int | tuple[int, int] | None = None
    """Image size in pixels: a whole number (square) or (width, height), each 1‥16384; None:
    512², or the scene's render size for the cameras rig. The lgm rig needs a square."""
    engine: Engine = "EEVEE"
    """Render engine; Blender's ids ("BLENDER_EEVEE", …) and any letter case are accepted."""
    samples: int | None = None
    """Samples per pixel (≥ 1); None or 0: the engine's default (:data:`DEFAULT_SAMPLES`)."""
    transparent: bool | None = None
    """RGBA images with the background left transparent; None: transparent except for the lgm
    rig, which renders on white as LGM was trained."""
    background: tuple[float, float, float] | None = None
    """Colour (RGB in 0‥1) the renders are composited onto when not transparent; None: white."""
    camera_collection: Any = None
    """Cameras rig: the collection (a Blender collection or its name) whose cameras render;
    None: every camera of the scene."""

    # ------------------------------------------------------------------------ validation
    def validate(self, report: Report = log_report) -> CaptureOptions:
        """The normalised copy a capture runs with; idempotent.

        Raises CaptureOptionError naming the first bad field. Reports a warning when the lgm
        rig ignores a given radius or field of view.
        """
        rig = _rig(self.rig)
        engine = _engine(self.engine)
        size = _resolution(self.resolution, rig)
        fov, radius = _fov(self.fov), _radius(self.radius)
        if rig == "lgm":
            if size[0] != size[1]:
                raise CaptureOptionError("resolution", f"the LGM rig renders square views; got "
                                                       f"{size[0]}×{size[1]}")
            if self.fov not in (None, 0, LGM_FOVY_DEG) or self.radius not in (None, 0,
                                                                                LGM_RADIUS):
                report({'WARNING'}, "the LGM rig always uses radius 1.5 and a 49.1° field of "
                                    "view; the given radius / field of view are ignored")
            fov, radius = LGM_FOVY_DEG, LGM_RADIUS
        transparent = rig != "lgm" if self.transparent is None else bool(self.transparent)
        return replace(
            self, rig=rig, engine=engine, samples=_samples(self.samples, engine),
            views=_views(self.views, rig), test_views=_test_views(self.test_views),
            elevations=_elevations(self.elevations, rig), resolution=size, fov=fov,
            radius=radius, transparent=transparent,
            background=None if transparent else _colour(self.background))

    # ---------------------------------------------------------------------- command line
    @classmethod
    def from_command_line(cls, args) -> CaptureOptions:
        """The ``capture`` command's options from its ``argparse`` namespace.

        Reads rig, views, elevations ("0,30"; default one ring at 20°), radius, fov,
        test_views, resolution (N or "WxH"), engine, samples, background ("r,g,b" or
        "transparent") and camera_collection; a missing or None attribute takes the default.
        GSError for a string that does not parse.
        """
        def given(name: str, default=None):
            value = getattr(args, name, None)
            return default if value is None else value

        transparent, background = parse_background(given("background"), name="--background")
        return cls(
            rig=given("rig", "orbit"), views=given("views", 16),
            elevations=parse_elevations(given("elevations", COMMAND_LINE_ELEVATIONS),
                                        name="--elevations"),
            radius=given("radius"), fov=given("fov"), test_views=given("test_views", 0),
            resolution=parse_resolution(given("resolution"), name="--resolution"),
            engine=given("engine", "EEVEE"), samples=given("samples"), transparent=transparent,
            background=background, camera_collection=given("camera_collection"))


# ------------------------------------------------------------------ the command line's strings
def parse_resolution(text, *, name: str = "resolution"):
    """"N" → N, "WxH" (or "W×H") → (W, H); anything not a string is returned as it is.
    GSError naming ``name`` for a string that is neither."""
    if not isinstance(text, str):
        return text
    parts = text.lower().replace("×", "x").split("x")
    try:
        if len(parts) <= 2:
            return tuple(int(p) for p in parts) if len(parts) == 2 else int(parts[0])
    except ValueError:
        pass
    raise GSError(f"{name} must be N or WxH, got {text!r}")


def parse_elevations(text, *, name: str = "elevations"):
    """"0, 30" (commas or semicolons) → (0.0, 30.0); a blank string → (0.0,): one ring at 0°.
    Anything not a string is returned as it is. GSError naming ``name`` for a bad number."""
    if not isinstance(text, str):
        return text
    try:
        elevations = tuple(float(e) for e in text.replace(";", ",").split(",") if e.strip())
    except ValueError:
        raise GSError(f"{name} must be comma-separated degrees, got {text!r}") from None
    return elevations or (0.0,)


def parse_background(text, *, name: str = "background") -> tuple[bool | None, Any]:
    """(transparent, background) from "r,g,b" (→ False, (r, g, b)) or "transparent" (→ True,
    None); None → (None, None), any other non-string → (None, it). GSError naming ``name`` for
    a string that is neither."""
    if not isinstance(text, str):
        return None, text
    if text.strip().lower() == "transparent":
        return True, None
    try:
        return False, tuple(float(c) for c in text.split(","))
    except ValueError:
        raise GSError(f"{name} must be r,g,b or 'transparent', got {text!r}") from None


# ------------------------------------------------------------------------- one field each
def _rig(rig) -> str:
    name = str(rig).lower()
    if name not in RIGS:
        raise CaptureOptionError("rig", f"unknown capture rig {rig!r}; choose one of "
                                        f"{', '.join(RIGS)}")
    return name


def _engine(engine) -> str:
    key = str(engine).upper()
    for name, blender_id in ENGINE_IDS.items():
        if key in (name, blender_id):
            return name
    raise CaptureOptionError("engine", f"unknown render engine {engine!r}; choose one of "
                                       f"{', '.join(ENGINE_IDS)}")


def _whole_number(value, field: str, what: str) -> int:
    try:
        number = int(value)
        ok = float(value) == number
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise CaptureOptionError(field, f"{what} must be a whole number, got {value!r}")
    return number


def _number(value, field: str, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CaptureOptionError(field, f"{what} must be a number, got {value!r}") from None
    return number


def _samples(samples, engine: str) -> int:
    if samples in (None, 0):
        return DEFAULT_SAMPLES[engine]
    number = _whole_number(samples, "samples", "samples")
    if number < 1:
        raise CaptureOptionError("samples", f"samples must be at least 1, got {samples}")
    return number


def _resolution(resolution, rig: str) -> tuple[int, int] | None:
    if resolution is None:
        # The cameras rig renders at the scene's size, which the session reads.
        return None if rig == "cameras" else (DEFAULT_RESOLUTION, DEFAULT_RESOLUTION)
    if isinstance(resolution, numbers.Integral):  # numpy integers too
        size = (int(resolution), int(resolution))
    else:
        try:
            size = tuple(int(v) for v in resolution)
            ok = (not isinstance(resolution, str) and len(size) == 2
                  and all(float(v) == int(v) for v in resolution))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise CaptureOptionError("resolution", f"resolution must be a whole number or "
                                                   f"(width, height), got {resolution!r}")
    if not all(1 <= v <= MAX_RESOLUTION for v in size):
        raise CaptureOptionError("resolution", f"resolution {size[0]}×{size[1]} is outside "
                                               f"1‥{MAX_RESOLUTION} pixels")
    return size


def _views(views, rig: str) -> int:
    number = _whole_number(views, "views", "views")
    if rig in ("orbit", "sphere") and not 1 <= number <= MAX_VIEWS:
        raise CaptureOptionError("views", f"views must be between 1 and {MAX_VIEWS}, got "
                                          f"{views}")
    return number


def _test_views(test_views) -> int:
    number = _whole_number(test_views or 0, "test_views", "test views")
    if number < 0:
        raise CaptureOptionError("test_views", f"test views must be 0 or more, got {test_views}")
    if number > MAX_VIEWS:
        raise CaptureOptionError("test_views", f"test views must be at most {MAX_VIEWS}, got "
                                               f"{test_views}")
    return number


def _elevations(elevations, rig: str) -> tuple[float, ...]:
    if hasattr(elevations, "reshape"):  # a numpy array or scalar
        values = elevations.reshape(-1).tolist()
    else:
        values = elevations if isinstance(elevations, list | tuple) else (elevations,)
    degrees = tuple(_number(e, "elevations", "elevations") for e in values)
    if rig == "orbit" and not (degrees and all(-90.0 <= e <= 90.0 for e in degrees)):
        raise CaptureOptionError("elevations", f"elevations must be between −90 and 90 "
                                               f"degrees, got {list(degrees)}")
    return degrees


def _fov(fov) -> float:
    degrees = DEFAULT_FOV_DEG if fov in (None, 0) else _number(fov, "fov", "field of view")
    if not 0.0 < degrees < 180.0:
        raise CaptureOptionError("fov", f"field of view must be between 0 and 180 degrees, got "
                                        f"{degrees}")
    return degrees


def _radius(radius) -> float | None:
    if radius in (None, 0):
        return None
    distance = _number(radius, "radius", "camera distance")
    if not (math.isfinite(distance) and distance > 0):
        raise CaptureOptionError("radius", f"camera distance must be a positive number, got "
                                           f"{distance}")
    return distance


def _colour(background) -> tuple[float, float, float]:
    if background is None:
        return _WHITE
    try:
        colour = tuple(float(c) for c in background)
    except (TypeError, ValueError):
        colour = ()
    if len(colour) != 3 or not all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in colour):
        raise CaptureOptionError("background", f"background colour must be three numbers in "
                                               f"0‥1, got {background!r}")
    return colour
