"""How a :class:`~.splats.SplatSet` is stored on a Blender mesh (bpy-free half of the layout).

One mesh object, one loose vertex per splat. Vertex positions are the splat centres in the
FILE frame; the object's matrix carries the file → Blender axis conversion
(:mod:`.conventions.frames`), so
Blender → file → Blender round trips copy values and never round them. Everything else is a
POINT-domain attribute holding the file's raw (pre-activation) values:

=======================  ==============  ==========================================
attribute                Blender type    values (see :mod:`.splats`)
=======================  ==============  ==========================================
``position``             FLOAT_VECTOR    ``positions`` (the mesh's own vertex co)
``gs_scale``             FLOAT_VECTOR    ``log_scales``
``gs_rotation``          QUATERNION      ``rotations`` (w, x, y, z; not normalised)
``gs_opacity``           FLOAT           ``opacity_logits``
``gs_sh_dc``             FLOAT_VECTOR    ``sh_dc`` (RGB)
``gs_sh_rest_<k>``       FLOAT_VECTOR    ``sh_rest[:, k - 1, :]`` (RGB), k = 1 … K
``gs_extra_<name>``      FLOAT           ``extra[name]``
=======================  ==============  ==========================================

with K = 3, 8 or 15 for SH degree 1, 2, 3, and small custom properties on the mesh
(:data:`SH_DEGREE_PROP`, :data:`UP_AXIS_PROP`). A set keeps at most
:data:`MAX_EXTRA_ATTRIBUTES` extras on an object (:func:`cap_extra_properties`), the rest are
left out with a warning: Blender makes each attribute in time proportional to those the mesh
already has. Measured costs and why this layout: docs/architecture.md, "The splat object's mesh
layout". This module only converts between a SplatSet and flat float32 arrays named by
attribute; the bpy calls are in ``scene/mesh_splats.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from .errors import GSError, Report
from .sh import coeffs_for_degree, degree_for_coeffs
from .splats import SplatSet

__all__ = [
    "POSITION", "SCALE", "ROTATION", "OPACITY", "SH_DC", "SH_REST_PREFIX", "EXTRA_PREFIX",
    "SH_DEGREE_PROP", "UP_AXIS_PROP", "MAX_ATTRIBUTE_NAME_BYTES", "AttributeSpec",
    "sh_rest_attribute", "extra_attribute", "attribute_specs", "splat_attribute_arrays",
    "release_attribute_arrays", "attribute_arrays", "splat_fields", "SH_GROUP_BYTES",
    "find_layout", "splats_from_attributes", "sh_rest_columns", "scatter_sh_rest",
    "MAX_EXTRA_ATTRIBUTES", "cap_extra_properties",
]

POSITION = "position"
SCALE = "gs_scale"
ROTATION = "gs_rotation"
OPACITY = "gs_opacity"
SH_DC = "gs_sh_dc"
SH_REST_PREFIX = "gs_sh_rest_"
EXTRA_PREFIX = "gs_extra_"

SH_DEGREE_PROP = "gs_sh_degree"  # int, for display; the attributes are what export reads
UP_AXIS_PROP = "gs_up_axis"  # the up axis chosen at import, the export operator's default

# Blender refuses longer attribute names (attributes.new returns None at 68 bytes in 5.0).
MAX_ATTRIBUTE_NAME_BYTES = 67
# Most extra properties stored on one object (see the module docstring: Blender's cost per
# attribute grows with the attributes already there).
MAX_EXTRA_ATTRIBUTES = 1024

_WIDTH = {"FLOAT": 1, "FLOAT_VECTOR": 3, "QUATERNION": 4}


@dataclass(frozen=True)
class AttributeSpec:
    """One POINT attribute of the layout: Blender name, Blender data type, floats per splat."""

    name: str
    data_type: str  # "FLOAT", "FLOAT_VECTOR" or "QUATERNION"

    @property
    def width(self) -> int:
        return _WIDTH[self.data_type]

    @property
    def foreach_key(self) -> str:
        """The property ``attribute.data.foreach_get/set`` takes for this type."""
        return "vector" if self.data_type == "FLOAT_VECTOR" else "value"


_CORE_SPECS = (
    AttributeSpec(POSITION, "FLOAT_VECTOR"),
    AttributeSpec(SCALE, "FLOAT_VECTOR"),
    AttributeSpec(ROTATION, "QUATERNION"),
    AttributeSpec(OPACITY, "FLOAT"),
    AttributeSpec(SH_DC, "FLOAT_VECTOR"),
)
_CORE_FIELDS = ("positions", "log_scales", "rotations", "opacity_logits", "sh_dc")


def sh_rest_attribute(index: int) -> str:
    """Attribute name of rest coefficient ``index`` (0-based in ``sh_rest``; names are 1-based)."""
    return f"{SH_REST_PREFIX}{index + 1}"


def extra_attribute(name: str) -> str:
    """Attribute name of extra file property ``name``; GSError when Blender cannot hold it."""
    attr = EXTRA_PREFIX + name
    if not name or len(attr.encode("utf-8")) > MAX_ATTRIBUTE_NAME_BYTES:
        raise GSError(f"extra property {name!r} cannot be stored: Blender attribute names are "
                      f"limited to {MAX_ATTRIBUTE_NAME_BYTES} bytes")
    return attr


def cap_extra_properties(splats: SplatSet, *, source: str, report: Report) -> SplatSet:
    """``splats`` with at most :data:`MAX_EXTRA_ATTRIBUTES` extra properties (the first ones;
    a WARNING says how many were left out). The arrays are shared, not copied."""
    names = list(splats.extra)
    if len(names) <= MAX_EXTRA_ATTRIBUTES:
        return splats
    report({"WARNING"}, f"{source}: {len(names):,} extra per-splat properties; the first "
                        f"{MAX_EXTRA_ATTRIBUTES:,} become attributes, the other "
                        f"{len(names) - MAX_EXTRA_ATTRIBUTES:,} ({names[MAX_EXTRA_ATTRIBUTES]} "
                        "…) are left out (Blender slows down quadratically with the number of "
                        "attributes)")
    kept = {name: splats.extra[name] for name in names[:MAX_EXTRA_ATTRIBUTES]}
    return SplatSet(splats.positions, splats.log_scales, splats.rotations,
                    splats.opacity_logits, splats.sh_dc, splats.sh_rest, kept)


def attribute_specs(sh_degree: int, extra_names=()) -> list[AttributeSpec]:
    """Every attribute a set of this SH degree and these extra properties is stored in."""
    specs = list(_CORE_SPECS)
    specs += [AttributeSpec(sh_rest_attribute(k), "FLOAT_VECTOR")
              for k in range(coeffs_for_degree(sh_degree))]
    specs += [AttributeSpec(extra_attribute(name), "FLOAT") for name in extra_names]
    return specs


def splat_attribute_arrays(splats: SplatSet) -> Iterator[tuple[AttributeSpec, np.ndarray]]:
    """Yield (spec, flat contiguous float32 array [N·width]) for every attribute of ``splats``.

    Core fields come as views of the set's own arrays; the SH-rest columns are transposed out
    of ``sh_rest`` a few coefficients at a time (at most :data:`SH_GROUP_BYTES` extra memory).
    """
    yield from attribute_arrays(splat_fields(splats), release=False)


def release_attribute_arrays(fields: dict[str, object]
                             ) -> Iterator[tuple[AttributeSpec, np.ndarray]]:
    """Like :func:`splat_attribute_arrays` for a dict from :func:`splat_fields` that nothing
    else references: each array is dropped from the dict as soon as it has been yielded, so
    an importer's memory moves from the SplatSet into Blender instead of doubling."""
    yield from attribute_arrays(fields, release=True)


def splat_fields(splats: SplatSet) -> dict[str, object]:
    """The arrays of ``splats`` in a plain dict (for :func:`release_attribute_arrays`)."""
    fields: dict[str, object] = {name: getattr(splats, name) for name in _CORE_FIELDS}
    fields["sh_rest"] = splats.sh_rest
    fields["extra"] = dict(splats.extra)
    return fields


SH_GROUP_BYTES = 64 << 20

_RGB = np.dtype((np.void, 12))  # one float32 RGB triple as a single item


def attribute_arrays(fields: dict, *, release: bool
                     ) -> Iterator[tuple[AttributeSpec, np.ndarray]]:
    """(spec, flat float32 array) for every attribute of ``fields`` (from :func:`splat_fields`);
    with ``release`` each array leaves the dict once yielded."""
    extra = fields["extra"]
    sh_rest = fields["sh_rest"]
    count, rest_count = sh_rest.shape[:2]
    specs = attribute_specs(degree_for_coeffs(rest_count), list(extra))
    for spec, name in zip(specs, _CORE_FIELDS):
        values = fields.pop(name) if release else fields[name]
        yield spec, _flat(values)
        del values
    rest_specs = specs[len(_CORE_FIELDS):len(_CORE_FIELDS) + rest_count]
    # Released: one transposition of all coefficients, after which the [N, K, 3] original is
    # freed (peak: one SH copy). Otherwise a few coefficients at a time.
    step = max(1, rest_count if release else SH_GROUP_BYTES // max(1, count * 12))
    del sh_rest
    for start in range(0, rest_count, step):
        source = fields.pop("sh_rest") if release else fields["sh_rest"]
        columns = sh_rest_columns(source, start, min(start + step, rest_count))  # [G, N, 3]
        del source
        for offset in range(columns.shape[0]):
            yield rest_specs[start + offset], columns[offset].reshape(-1)
        del columns
    extra_specs = specs[len(_CORE_FIELDS) + rest_count:]
    for spec, name in zip(extra_specs, list(extra)):
        values = extra.pop(name) if release else extra[name]
        yield spec, _flat(values)
        del values


def sh_rest_columns(sh_rest: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``sh_rest[:, start:stop, :]`` ([N, K, 3]) as a C-contiguous [G, N, 3] array.

    A plain strided copy per coefficient moves 4-byte floats three at a time and re-reads the
    whole array for every coefficient; copying 12-byte RGB items in row blocks that stay in
    cache is about 2-3x faster (measured 143 ms vs 350 ms for K = 15, N = 1e6).
    """
    count = sh_rest.shape[0]
    columns = sh_rest[:, start:stop, :].transpose(1, 0, 2)
    if columns.flags.c_contiguous and columns.dtype == np.float32:
        return columns  # a reader that stores coefficient-major: no copy at all
    out = np.empty((stop - start, count, 3), np.float32)
    if not (sh_rest.flags.c_contiguous and sh_rest.dtype == np.float32):
        for k in range(start, stop):
            out[k - start] = sh_rest[:, k, :]
        return out
    source = sh_rest.view(_RGB).reshape(count, sh_rest.shape[1])  # [N, K] RGB items
    target = out.view(_RGB).reshape(stop - start, count)  # [G, N]
    block = 8192
    for row in range(0, count, block):
        target[:, row:row + block] = source[row:row + block, start:stop].T
    return out


def scatter_sh_rest(columns: np.ndarray, sh_rest: np.ndarray, start: int) -> None:
    """``sh_rest[:, start:start + G, :] = columns`` ([G, N, 3] into [N, K, 3]), blocked."""
    groups, count = columns.shape[:2]
    target = sh_rest.view(_RGB).reshape(count, sh_rest.shape[1])  # [N, K] RGB items
    source = columns.view(_RGB).reshape(groups, count)  # [G, N]
    block = 8192
    for row in range(0, count, block):
        target[row:row + block, start:start + groups] = source[:, row:row + block].T


def _flat(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=np.float32).reshape(-1)


def find_layout(attributes: Mapping[str, str], *, source: str) -> list[AttributeSpec]:
    """The layout specs present in ``attributes`` (name → Blender data type, in mesh order).

    Raises GSError naming ``source`` when the core attributes are missing or have the wrong
    type, or the SH-rest attributes are not exactly ``gs_sh_rest_1 … K`` for K in 3/8/15.
    """
    missing = [spec.name for spec in _CORE_SPECS[1:] if spec.name not in attributes]
    if missing:
        raise GSError(f"{source} has no splat attributes (missing {', '.join(missing)}); "
                      "import a splat file to make a splat object")
    for spec in _CORE_SPECS:
        if attributes.get(spec.name) != spec.data_type:
            raise GSError(f"{source}: attribute {spec.name!r} is {attributes.get(spec.name)}, "
                          f"expected {spec.data_type}")
    rest_names = [n for n in attributes if n.startswith(SH_REST_PREFIX)]
    count = len(rest_names)
    degree = degree_for_coeffs(count)
    expected = {sh_rest_attribute(k) for k in range(count)}
    if degree is None or set(rest_names) != expected:
        raise GSError(f"{source}: SH attributes {sorted(rest_names)} are not gs_sh_rest_1 … K "
                      "with K = 3, 8 or 15")
    extras = [n[len(EXTRA_PREFIX):] for n in attributes
              if n.startswith(EXTRA_PREFIX) and len(n) > len(EXTRA_PREFIX)]
    for name in rest_names + [EXTRA_PREFIX + e for e in extras]:
        expected_type = "FLOAT_VECTOR" if name.startswith(SH_REST_PREFIX) else "FLOAT"
        if attributes[name] != expected_type:
            raise GSError(f"{source}: attribute {name!r} is {attributes[name]}, expected "
                          f"{expected_type}")
    return attribute_specs(degree, extras)


def splats_from_attributes(attributes: Mapping[str, str], count: int,
                           fetch: Callable[[AttributeSpec, np.ndarray], None], *,
                           source: str) -> SplatSet:
    """Rebuild a SplatSet from a mesh's attributes.

    Args:
        attributes: name → Blender data type of every POINT attribute, in mesh order (the order
            of the extra properties is kept).
        count: number of points N.
        fetch: ``fetch(spec, out)`` fills ``out`` (contiguous float32 [N·width]) with the
            attribute's values (``foreach_get``).
        source: names the object in errors.
    """
    specs = find_layout(attributes, source=source)
    by_name = {spec.name: spec for spec in specs}

    def read(spec: AttributeSpec, shape: tuple[int, ...]) -> np.ndarray:
        out = np.empty(count * spec.width, np.float32)
        fetch(spec, out)
        return out.reshape(shape)

    fields = {
        field: read(spec, (count,) if spec.width == 1 else (count, spec.width))
        for spec, field in zip(_CORE_SPECS, _CORE_FIELDS)
    }
    rest_count = sum(1 for s in specs if s.name.startswith(SH_REST_PREFIX))
    sh_rest = np.empty((count, rest_count, 3), np.float32)
    step = max(1, SH_GROUP_BYTES // max(1, count * 12))
    for start in range(0, rest_count, step):
        stop = min(start + step, rest_count)
        columns = np.empty((stop - start, count, 3), np.float32)  # [G, N, 3]
        for k in range(start, stop):
            fetch(by_name[sh_rest_attribute(k)], columns[k - start].reshape(-1))
        scatter_sh_rest(columns, sh_rest, start)
    extra = {spec.name[len(EXTRA_PREFIX):]: read(spec, (count,))
             for spec in specs if spec.name.startswith(EXTRA_PREFIX)}
    out = SplatSet(sh_rest=sh_rest, extra=extra, **fields)
    out.validate(name=source)
    return out
