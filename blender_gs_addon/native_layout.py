"""How a :class:`~.splats.SplatSet` is stored as a Blender 5.3+ native Gaussian splat point cloud
(the bpy-free half of the native layout; ``scene/native_splats.py`` makes the bpy calls).

The details: docs/architecture.md, "The splat object's native layout (Blender 5.3+)".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from .errors import GSError, Report, log_report
from .mesh_layout import EXTRA_PREFIX, extra_attribute, sh_rest_columns
from .splats import SplatSet

__all__ = [
    "POSITION", "SCALE", "ROTATION", "RADIANCE_BASE", "SH_PREFIX", "EXACT_LOG_SCALE",
    "EXACT_OPACITY", "EXACT_ROTATION", "REQUIRED", "GAUSSIAN_SPLAT", "NativeSpec",
    "sh_attribute", "missing_attributes", "native_sh_count", "native_sh_degree", "activate_scales",
    "activate_opacities", "normalised_rotations", "log_scales_from", "logits_from",
    "native_attribute_arrays", "native_fields", "splats_from_native",
]

GAUSSIAN_SPLAT = "GAUSSIAN_SPLAT"  # PointCloud.type of native splats ('POINTS' otherwise)

POSITION = "position"
SCALE = "scale"
ROTATION = "rotation"
RADIANCE_BASE = "radiance:base"
SH_PREFIX = "radiance:sh_"
EXACT_LOG_SCALE = "gs_scale"
EXACT_OPACITY = "gs_opacity"
EXACT_ROTATION = "gs_rotation"

# What Blender needs to draw a splat as stored (without them it draws scale 1e-3, opacity ½).
REQUIRED = {SCALE: "FLOAT_VECTOR", ROTATION: "QUATERNION", RADIANCE_BASE: "FLOAT4"}
_EXACT = {EXACT_LOG_SCALE: "FLOAT_VECTOR", EXACT_OPACITY: "FLOAT", EXACT_ROTATION: "QUATERNION"}

_WIDTH = {"FLOAT": 1, "FLOAT_VECTOR": 3, "FLOAT4": 4, "QUATERNION": 4}
_SH_COUNTS = (0, 3, 8, 15, 24)  # coefficients of SH degree 0 … 4
_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32
_ONE_BELOW = 1.0 - 2.0 ** -24  # the largest float32 below 1


@dataclass(frozen=True)
class NativeSpec:
    """One POINT attribute of the native layout: Blender name and data type."""

    name: str
    data_type: str  # "FLOAT", "FLOAT_VECTOR", "FLOAT4" or "QUATERNION"

    @property
    def width(self) -> int:
        return _WIDTH[self.data_type]

    @property
    def foreach_key(self) -> str:
        """The property ``attribute.data.foreach_get/set`` takes for this type."""
        return "vector" if self.data_type in ("FLOAT_VECTOR", "FLOAT4") else "value"


def sh_attribute(index: int) -> str:
    """Name of rest coefficient ``index`` (0-based, as Blender names them)."""
    return f"{SH_PREFIX}{index}"


def missing_attributes(attributes: Mapping[str, str]) -> list[str]:
    """What ``attributes`` (name → Blender data type) lacks to be drawn as stored splats:
    each missing required attribute by name, a wrong type as "name (TYPE, not EXPECTED)"."""
    missing = []
    for name, data_type in REQUIRED.items():
        have = attributes.get(name)
        if have is None:
            missing.append(name)
        elif have != data_type:
            missing.append(f"{name} ({have}, not {data_type})")
    return missing


def native_sh_count(attributes: Mapping[str, str]) -> int:
    """How many consecutive ``radiance:sh_0 …`` FLOAT_VECTOR attributes there are."""
    count = 0
    while attributes.get(sh_attribute(count)) == "FLOAT_VECTOR":
        count += 1
    return count


# ------------------------------------------------------------------ activations and inverses
def activate_scales(log_scales: np.ndarray) -> np.ndarray:
    """exp, computed in float64 and rounded once to float32 (deterministic)."""
    return np.exp(log_scales.astype(np.float64)).astype(np.float32)


def activate_opacities(logits: np.ndarray) -> np.ndarray:
    """sigmoid, computed in float64 and rounded once to float32 (deterministic)."""
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def normalised_rotations(rotations: np.ndarray) -> np.ndarray:
    """[N, 4] unit quaternions (float64 maths, one rounding); a zero quaternion → identity."""
    q = rotations.astype(np.float64)  # [N, 4]
    norm = np.sqrt(np.einsum("ij,ij->i", q, q))  # [N]
    zero = norm == 0
    norm[zero] = 1.0
    q /= norm[:, None]  # in place: no [N, 4] temporaries
    q[zero] = (1.0, 0.0, 0.0, 0.0)
    return q.astype(np.float32)


def log_scales_from(scales: np.ndarray) -> np.ndarray:
    """log of linear scales; 0 → log(smallest normal float32) (−87.3), negative → NaN."""
    with np.errstate(invalid="ignore"):
        return np.log(np.where(scales == 0, _TINY, scales.astype(np.float64))).astype(np.float32)


def logits_from(opacities: np.ndarray) -> np.ndarray:
    """logit of opacities, clamped to [smallest normal, 1 − 2⁻²⁴] so it stays finite."""
    p = np.clip(opacities.astype(np.float64), _TINY, _ONE_BELOW)  # NaN stays NaN
    return np.log(p / (1.0 - p)).astype(np.float32)


# ------------------------------------------------------------------ SplatSet → attributes
def native_fields(splats: SplatSet) -> dict[str, object]:
    """The arrays of ``splats`` in a plain dict (for :func:`native_attribute_arrays` with
    ``release=True``: nothing else may reference the dict)."""
    fields: dict[str, object] = {name: getattr(splats, name) for name in (
        "positions", "log_scales", "rotations", "opacity_logits", "sh_dc", "sh_rest")}
    fields["extra"] = dict(splats.extra)
    return fields


def _flat(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=np.float32).reshape(-1)


def native_attribute_arrays(fields: dict, *, release: bool = False
                            ) -> Iterator[tuple[NativeSpec, np.ndarray]]:
    """Yield (spec, flat contiguous float32 array [N·width]) for every native attribute.

    ``fields`` comes from :func:`native_fields`. With ``release`` each array is dropped from
    the dict once it has been used, so an importer's memory moves into Blender instead of
    doubling.
    """
    take = fields.pop if release else fields.__getitem__
    yield NativeSpec(POSITION, "FLOAT_VECTOR"), _flat(take("positions"))
    log_scales = take("log_scales")
    yield NativeSpec(SCALE, "FLOAT_VECTOR"), activate_scales(log_scales).reshape(-1)
    yield NativeSpec(EXACT_LOG_SCALE, "FLOAT_VECTOR"), _flat(log_scales)
    del log_scales
    rotations = take("rotations")
    unit = normalised_rotations(rotations)
    yield NativeSpec(ROTATION, "QUATERNION"), unit.reshape(-1)
    if not np.array_equal(unit.view(np.uint32), _flat(rotations).view(np.uint32).reshape(
            -1, 4)):
        yield NativeSpec(EXACT_ROTATION, "QUATERNION"), _flat(rotations)
    del rotations, unit
    logits = take("opacity_logits")
    dc = take("sh_dc")
    base = np.empty((len(logits), 4), np.float32)  # [N, 4]
    base[:, :3] = dc
    base[:, 3] = activate_opacities(logits)
    del dc
    yield NativeSpec(RADIANCE_BASE, "FLOAT4"), base.reshape(-1)
    del base
    yield NativeSpec(EXACT_OPACITY, "FLOAT"), _flat(logits)
    del logits
    yield from _sh_arrays(fields, release=release)
    extra = fields["extra"]
    for name in list(extra):
        yield NativeSpec(extra_attribute(name), "FLOAT"), _flat(
            extra.pop(name) if release else extra[name])


def _sh_arrays(fields: dict, *, release: bool) -> Iterator[tuple[NativeSpec, np.ndarray]]:
    sh_rest = fields["sh_rest"]
    count, rest_count = sh_rest.shape[:2]
    del sh_rest
    # Released: one transposition of all coefficients, then the [N, K, 3] original is freed
    # (peak: one SH copy); otherwise a few coefficients at a time (64 MiB).
    step = max(1, rest_count if release else (64 << 20) // max(1, count * 12))
    for start in range(0, rest_count, step):
        source = fields.pop("sh_rest") if release else fields["sh_rest"]
        columns = sh_rest_columns(source, start, min(start + step, rest_count))  # [G, N, 3]
        del source
        for offset in range(columns.shape[0]):
            yield NativeSpec(sh_attribute(start + offset), "FLOAT_VECTOR"), \
                columns[offset].reshape(-1)
        del columns
    fields.pop("sh_rest", None)


# ------------------------------------------------------------------ attributes → SplatSet
Fetch = Callable[[NativeSpec, np.ndarray], None]


def _read(fetch: Fetch, spec: NativeSpec, count: int) -> np.ndarray:
    out = np.empty(count * spec.width, np.float32)
    fetch(spec, out)
    return out.reshape(count, spec.width) if spec.width > 1 else out


def _exact_or_derived(native: np.ndarray, copy: np.ndarray | None, activate, derive
                      ) -> np.ndarray:
    """Per splat: the exact copy where activating it gives ``native`` bit for bit, else the
    value derived from ``native``."""
    if copy is None:
        return derive(native)
    same = activate(copy).view(np.uint32) == native.view(np.uint32)
    if same.ndim > 1:
        same = same.all(axis=1)
    if same.all():
        return copy
    out = copy.copy()
    out[~same] = derive(native[~same])
    return out


def _sh_rest(attributes: Mapping[str, str], count: int, fetch: Fetch, *, source: str,
             report: Report) -> np.ndarray:
    have = native_sh_count(attributes)
    rest_count = max(k for k in _SH_COUNTS[:4] if k <= have)
    if have != rest_count:
        dropped = ("the degree-4 band" if have >= 24 else
                   f"{have - rest_count} coefficient(s) that do not complete an SH band")
        report({'WARNING'}, f"{source}: {have} SH coefficients; kept degree "
                            f"{_SH_COUNTS.index(rest_count)} and dropped {dropped}")
    # Blender keeps one array per coefficient: read them into a coefficient-major buffer and
    # hand out its [N, K, 3] view. Writers take strided input (the .ply writer reorders to its
    # channel-major columns anyway), so no transposition here: 0.12 s less per 1M SH3 splats.
    columns = np.empty((rest_count, count, 3), np.float32)  # [K, N, 3]
    for k in range(rest_count):
        fetch(NativeSpec(sh_attribute(k), "FLOAT_VECTOR"), columns[k].reshape(-1))
    return columns.transpose(1, 0, 2)


def splats_from_native(attributes: Mapping[str, str], count: int, fetch: Fetch, *,
                       source: str, report: Report = log_report) -> SplatSet:
    """Rebuild a SplatSet from a native splat point cloud's attributes.

    Args:
        attributes: name → Blender data type of every POINT attribute, in their order (the
            order of the extra properties is kept).
        count: number of points N.
        fetch: ``fetch(spec, out)`` fills ``out`` (contiguous float32 [N·width]) with the
            attribute's values (``foreach_get``).
        source: names the object in errors and warnings.
    GSError naming ``source`` and what is missing when a required attribute is absent.
    """
    missing = missing_attributes(attributes)
    if missing:
        raise GSError(f"{source} lacks the splat attributes {', '.join(missing)}")

    def exact(name: str) -> np.ndarray | None:
        if attributes.get(name) != _EXACT[name]:
            return None
        return _read(fetch, NativeSpec(name, _EXACT[name]), count)

    positions = _read(fetch, NativeSpec(POSITION, "FLOAT_VECTOR"), count)
    log_scales = _exact_or_derived(_read(fetch, NativeSpec(SCALE, "FLOAT_VECTOR"), count),
                                   exact(EXACT_LOG_SCALE), activate_scales, log_scales_from)
    rotations = _exact_or_derived(_read(fetch, NativeSpec(ROTATION, "QUATERNION"), count),
                                  exact(EXACT_ROTATION), normalised_rotations,
                                  lambda q: q.copy())
    base = _read(fetch, NativeSpec(RADIANCE_BASE, "FLOAT4"), count)  # [N, 4]
    logits = _exact_or_derived(np.ascontiguousarray(base[:, 3]), exact(EXACT_OPACITY),
                               activate_opacities, logits_from)
    extra = {name[len(EXTRA_PREFIX):]: _read(fetch, NativeSpec(name, "FLOAT"), count)
             for name, data_type in attributes.items()
             if name.startswith(EXTRA_PREFIX) and len(name) > len(EXTRA_PREFIX)
             and data_type == "FLOAT"}
    out = SplatSet(positions=positions, log_scales=log_scales, rotations=rotations,
                   opacity_logits=logits, sh_dc=np.ascontiguousarray(base[:, :3]),
                   sh_rest=_sh_rest(attributes, count, fetch, source=source, report=report),
                   extra=extra)
    out.validate(name=source)
    return out


def native_sh_degree(attributes: Mapping[str, str]) -> int:
    """SH degree a reader keeps (0-3) from the ``radiance:sh_*`` attributes present."""
    have = native_sh_count(attributes)
    return _SH_COUNTS.index(max(k for k in _SH_COUNTS[:4] if k <= have))

