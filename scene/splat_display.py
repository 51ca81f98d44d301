"""Show splat objects in EEVEE and Cycles as the Gaussians they are, built entirely in Python.

:func:`add_display` puts a Geometry Nodes modifier (:data:`MODIFIER_NAME`) and a material on a
splat object (see :mod:`blender_gs_addon.mesh_layout`). Per splat and for the scene's active
camera, the node tree does what the 3DGS rasterizer (``render/rasterize.py``) does:

* the mean and the covariance factor W·R·S (W: object → camera, R, S: the splat's rotation and
  scale × the scale multiplier) go into camera space; the Jacobian of the pinhole map (x/z, y/z
  clamped to 1.3× the half field of view, as gsplat does) gives the 2D covariance in pixels, plus
  the 0.3 px² low-pass ``eps2d``. Focal lengths and principal point come from the camera's
  projection matrix (Camera Info: lens, sensor fit, shift, pixel aspect) and the render size,
  which drivers copy from the scene's render settings;
* the 2D covariance's principal axes, scaled by k = sqrt(2 ln(255·opacity)) (≤ 3.33: the
  distance at which alpha falls to 1/255), are mapped back onto the plane through the mean
  parallel to the image plane. That plane maps to the image affinely, so a quad spanned there
  and its per-corner coordinate ``gsd_uv`` (in standard deviations) interpolate exactly into
  ``uv = L⁻¹ d`` for the pixel offset d (Σ₂ᴅ = L Lᵀ): the material's
  ``alpha = min(0.999, opacity · exp(−½ |uv|²))``, cut below 1/255, is the rasterizer's alpha;
* colour is the SH sum for the direction camera → splat in the object's frame (SH coefficients
  are stored there; for a rotation / uniform-scale object transform this equals the world
  evaluation with rotated bands), ``max(sh + 0.5, 0)``;
* splats are culled as the rasterizer culls them (depth outside [0.01, 1e10], degenerate 2D
  covariance, opacity < 1/255 or below the object's threshold, any NaN) and sorted back to front
  by camera depth, so EEVEE's in-order blending composites them like the rasterizer.

The material is emission mixed with transparency by alpha: EEVEE (blended render method) and
Cycles (camera rays pass transparent surfaces exactly; give it enough transparent bounces) both
composite "over". Colours are the model's values as they are: with the scene's view transform
"Raw" (``use_raw_view_transform``) the screen shows exactly what the model produced.

The node group is built through the API once per Blender version (about half a second: each of
its ~350 nodes and ~500 links updates the whole tree) and written to a cache .blend in the
extension's user folder; later files append it from there in a few milliseconds. The cache is
keyed by the tree's version, a digest of the code that builds it and Blender's version, only
read from a folder that is the user's own, and
rebuilt when unreadable.

The un-displayed splats stay in the evaluated geometry as an instance of the input mesh (loose
vertices, which no render engine draws), so the exact render engine can read the evaluated —
e.g. armature-deformed — splats after the display turned them into quads
(:func:`evaluated_splat_mesh`).

Per-object options are modifier inputs (see :data:`OPTION_NAMES`): "SH Degree",
"Scale Multiplier", "Opacity Threshold" and "Viewport Points" (a cheap point display in the
viewport for very large sets: one point per splat with its DC colour, branched off before the
projection, SH and sorting, which are then not evaluated). Nothing loops over splats in Python.

Without a perspective active camera (none, an orthographic camera, or an active "camera" that is
another kind of object) the display shows points instead of quads projected wrongly, and
:func:`camera_problem` says why (the panel and :func:`add_display` report it).
:func:`add_display` raises Cycles' transparent bounce limit to :data:`CYCLES_TRANSPARENT_BOUNCES`
(never lowers it); EEVEE has no such limit. The node types the tree needs (Camera Info) exist
from Blender 4.5; on older versions :func:`add_display` raises GSError and importing splats
continues without the display (:func:`display_support_problem`).

Known limits:

* sorting is per object: each object's quads are drawn back to front, but EEVEE sorts
  blended objects as wholes (by object distance), not splat by splat, so splat objects that
  overlap on screen and interpenetrate in depth blend approximately in EEVEE (Cycles
  composites along each ray in depth order). Join such objects for exact blending;
* object transforms that are not similarities (non-uniform scale, shear): the quads follow the
  transformed covariance exactly, but SH colour is evaluated for the view direction in the
  object frame, which is then not a rotated world direction, so view-dependent colour is
  approximate (the exact render engine skips such objects with a warning);
* panoramic cameras: the tree cannot tell them from perspective ones and projects with the
  lens; :func:`camera_problem` warns;
* Cycles with one sample: transparent Russian roulette (``min_transparent_bounces`` below the
  stack depth) adds noise that more samples remove; ``render_engine.configure_scene`` turns it
  off for comparisons.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import bpy

from ..blender_gs_addon import mesh_layout as layout
from ..blender_gs_addon.errors import GSError, Report, log_report
from ..blender_gs_addon.sh import SH_C0, SH_C1, SH_C2, SH_C3
from . import mesh_splats

__all__ = [
    "MODIFIER_NAME", "NODE_GROUP_NAME", "MATERIAL_NAME", "OPTION_NAMES", "add_display",
    "remove_display", "display_modifier", "set_display_options", "display_options",
    "use_raw_view_transform", "display_node_group", "display_material", "input_property",
    "set_modifier_input",
    "display_support_problem", "camera_problem", "ensure_transparent_bounces",
    "CYCLES_TRANSPARENT_BOUNCES",
]

MODIFIER_NAME = "Splat Display"
NODE_GROUP_NAME = "GS Splat Display"
MATERIAL_NAME = "GS Splat"
_VERSION = 2  # bump when the tree changes: older groups are rebuilt
_VERSION_PROP = "gs_display_version"

# Display attribute names: "gsd_" does not match the "gs_*" pattern the tree removes.
UV = "gsd_uv"
COLOR = "gsd_color"
OPACITY = "gsd_opacity"

ALPHA_THRESHOLD = 1.0 / 255.0
ALPHA_MAX = 0.999
NEAR, FAR = 0.01, 1e10
EPS2D = 0.3
# Cycles counts every splat quad a camera ray passes as one transparent bounce and stops the
# ray (opaque black) at the limit; Blender's default of 8 shows dark blotches where splats
# stack. add_display raises the scene's limit to at least this (never lowers it).
CYCLES_TRANSPARENT_BOUNCES = 256
# Node types of the display tree that older Blender versions lack (Camera Info: Blender 4.5).
_REQUIRED_NODE_TYPES = (
    "GeometryNodeCameraInfo", "GeometryNodeInputActiveCamera", "FunctionNodeSeparateMatrix",
    "FunctionNodeInvertMatrix", "FunctionNodeTransformPoint", "FunctionNodeTransformDirection",
    "FunctionNodeMatrixMultiply", "FunctionNodeCombineTransform", "GeometryNodeSortElements",
    "FunctionNodeRotationToQuaternion", "FunctionNodeQuaternionToRotation",
)

# Modifier inputs: (name, socket type, default, min, max).
_OPTIONS = (
    ("SH Degree", "NodeSocketInt", 3, 0, 3),
    ("Scale Multiplier", "NodeSocketFloat", 1.0, 0.0, 100.0),
    ("Opacity Threshold", "NodeSocketFloat", 0.0, 0.0, 1.0),
    ("Viewport Points", "NodeSocketBool", False, None, None),
    ("Point Radius", "NodeSocketFloat", 0.0, 0.0, 1e3),
)
OPTION_NAMES = tuple(o[0] for o in _OPTIONS)
# Copied from the scene by drivers: the projection needs the render size in pixels.
_RENDER_INPUTS = (("Resolution X", "render.resolution_x"), ("Resolution Y", "render.resolution_y"),
                  ("Resolution %", "render.resolution_percentage"))


# ------------------------------------------------------------------------------- node helper
class _Nodes:
    """Small builder: every method adds one node and returns its output socket."""

    def __init__(self, tree: bpy.types.NodeTree):
        self.tree = tree
        self.count = len(tree.nodes)

    def node(self, kind: str, inputs=(), **props) -> bpy.types.Node:
        node = self.tree.nodes.new(kind)
        # Placed on a grid in creation order, so the tree is readable when opened; set now,
        # while the tree is small, as every location change notifies the whole tree.
        node.location = _grid_location(self.count)
        self.count += 1
        for key, value in props.items():
            setattr(node, key, value)
        for key, value in inputs:
            self.feed(node.inputs[key], value)
        return node

    def feed(self, socket, value) -> None:
        if isinstance(value, bpy.types.NodeSocket):
            self.tree.links.new(value, socket)
        elif value is not None:
            socket.default_value = value

    def math(self, op: str, a, b=None, c=None):
        node = self.node("ShaderNodeMath", [(0, a), (1, b), (2, c)], operation=op)
        return node.outputs[0]

    def add(self, a, b):
        return self.math("ADD", a, b)

    def sub(self, a, b):
        return self.math("SUBTRACT", a, b)

    def mul(self, a, b):
        return self.math("MULTIPLY", a, b)

    def div(self, a, b):
        return self.math("DIVIDE", a, b)

    def vmath(self, op: str, a, b=None, *, scale=None, out: int = 0):
        node = self.node("ShaderNodeVectorMath", [(0, a), (1, b)], operation=op)
        if scale is not None:
            self.feed(node.inputs["Scale"], scale)
        return node.outputs[out]

    def vscale(self, v, s):
        return self.vmath("SCALE", v, scale=s)

    def dot(self, a, b):
        return self.vmath("DOT_PRODUCT", a, b, out=1)

    def xyz(self, x, y, z):
        return self.node("ShaderNodeCombineXYZ", [(0, x), (1, y), (2, z)]).outputs[0]

    def split(self, v):
        return tuple(self.node("ShaderNodeSeparateXYZ", [(0, v)]).outputs[:3])


class _GeoNodes(_Nodes):
    def attribute(self, name: str, data_type: str):
        node = self.node("GeometryNodeInputNamedAttribute", [("Name", name)], data_type=data_type)
        return node.outputs[0]

    def compare(self, op: str, a, b):
        node = self.node("FunctionNodeCompare", [(0, a), (1, b)], data_type='FLOAT',
                         operation=op)
        return node.outputs[0]

    def both(self, a, b):
        return self.node("FunctionNodeBooleanMath", [(0, a), (1, b)],
                         operation='AND').outputs[0]

    def store(self, geometry, name: str, value, data_type: str, domain: str = 'POINT'):
        node = self.node("GeometryNodeStoreNamedAttribute", [(0, geometry), ("Name", name)],
                         data_type=data_type, domain=domain)
        self.feed(node.inputs["Value"], value)
        return node.outputs[0]

    def matrix(self, m):
        """Separate Matrix → entries e[row][col]."""
        outs = self.node("FunctionNodeSeparateMatrix", [(0, m)]).outputs
        return [[outs[col * 4 + row] for col in range(4)] for row in range(4)]


# ---------------------------------------------------------------------------- the node tree
def _sh_color(g: _GeoNodes, direction, degree):
    """Σ_k Y_k(dir) c_k + 0.5 with the coefficients read from the gs_sh_* attributes.

    Not yet clamped at 0: the clamp (a max) would turn NaN into 0, and the caller must see NaN
    to drop the splat as the rasterizer does.
    """
    d = g.vmath("NORMALIZE", direction)
    x, y, z = g.split(d)

    def coeff(k: int):
        name = layout.SH_DC if k == 0 else layout.sh_rest_attribute(k - 1)
        return g.attribute(name, 'FLOAT_VECTOR')  # 0 where the set has fewer bands

    total = g.vscale(coeff(0), SH_C0)
    xx, yy, zz = g.mul(x, x), g.mul(y, y), g.mul(z, z)
    bands = {
        1: [g.mul(-SH_C1, y), g.mul(SH_C1, z), g.mul(-SH_C1, x)],
        2: [g.mul(SH_C2[0], g.mul(x, y)), g.mul(SH_C2[1], g.mul(y, z)),
            g.mul(SH_C2[2], g.sub(g.mul(2.0, zz), g.add(xx, yy))), g.mul(SH_C2[3], g.mul(x, z)),
            g.mul(SH_C2[4], g.sub(xx, yy))],
    }
    four_zz_minus = g.sub(g.mul(4.0, zz), g.add(xx, yy))
    bands[3] = [
        g.mul(SH_C3[0], g.mul(y, g.sub(g.mul(3.0, xx), yy))),
        g.mul(SH_C3[1], g.mul(g.mul(x, y), z)),
        g.mul(SH_C3[2], g.mul(y, four_zz_minus)),
        g.mul(SH_C3[3], g.mul(z, g.sub(g.mul(2.0, zz), g.mul(3.0, g.add(xx, yy))))),
        g.mul(SH_C3[4], g.mul(x, four_zz_minus)),
        g.mul(SH_C3[5], g.mul(z, g.sub(xx, yy))),
        g.mul(SH_C3[6], g.mul(x, g.sub(xx, g.mul(3.0, yy)))),
    ]
    k = 1
    for band in (1, 2, 3):
        on = g.math("GREATER_THAN", degree, band - 0.5)  # 1 when the band is enabled
        part = None
        for basis in bands[band]:
            term = g.vscale(coeff(k), basis)
            part = term if part is None else g.vmath("ADD", part, term)
            k += 1
        total = g.vmath("ADD", total, g.vscale(part, on))
    return g.vmath("ADD", total, (0.5, 0.5, 0.5))


def _build_tree(tree: bpy.types.NodeTree) -> None:
    g = _GeoNodes(tree)
    face = tree.interface
    face.new_socket("Geometry", in_out='INPUT', socket_type='NodeSocketGeometry')
    for name, kind, default, lo, hi in _OPTIONS:
        sock = face.new_socket(name, in_out='INPUT', socket_type=kind)
        sock.default_value = default
        if lo is not None:
            sock.min_value, sock.max_value = lo, hi
    for name, _path in _RENDER_INPUTS:
        sock = face.new_socket(name, in_out='INPUT', socket_type='NodeSocketInt')
        sock.default_value = 100 if name.endswith("%") else 1920
        sock.min_value = 1
    face.new_socket("Geometry", in_out='OUTPUT', socket_type='NodeSocketGeometry')
    gin = g.node("NodeGroupInput").outputs
    gout = g.node("NodeGroupOutput")
    geometry = gin["Geometry"]

    # Camera relative to this object: C_rel = object⁻¹ · camera (camera → object frame).
    camera = g.node("GeometryNodeInputActiveCamera").outputs[0]
    info = g.node("GeometryNodeObjectInfo", [(0, camera)], transform_space='RELATIVE')
    c_rel = info.outputs["Transform"]
    view = g.node("FunctionNodeInvertMatrix", [(0, c_rel)]).outputs[0]  # object → camera (GL)
    proj = g.matrix(g.node("GeometryNodeCameraInfo", [(0, camera)]).outputs["Projection Matrix"])
    pct = g.div(gin["Resolution %"], 100.0)
    width = g.math("ROUND", g.mul(gin["Resolution X"], pct))
    height = g.math("ROUND", g.mul(gin["Resolution Y"], pct))
    # Pinhole intrinsics from Blender's projection matrix (OpenCV pixel convention).
    fx, fy = g.mul(proj[0][0], g.mul(width, 0.5)), g.mul(proj[1][1], g.mul(height, 0.5))
    cx = g.mul(g.sub(1.0, proj[0][2]), g.mul(width, 0.5))
    cy = g.mul(g.add(1.0, proj[1][2]), g.mul(height, 0.5))

    # Splat fields (object frame).
    position = g.node("GeometryNodeInputPosition").outputs[0]
    mult = gin["Scale Multiplier"]
    scale = g.vscale(g.vmath("POWER", (math.e,) * 3,
                                     g.attribute(layout.SCALE, 'FLOAT_VECTOR')), mult)
    quat = g.node("FunctionNodeRotationToQuaternion",
                  [(0, g.attribute(layout.ROTATION, 'QUATERNION'))]).outputs
    qn = g.math("SQRT", g.add(g.add(g.mul(quat[0], quat[0]), g.mul(quat[1], quat[1])),
                              g.add(g.mul(quat[2], quat[2]), g.mul(quat[3], quat[3]))))
    unit = [g.div(quat[i], qn) for i in range(4)]
    rotation = g.node("FunctionNodeQuaternionToRotation",
                      [(i, unit[i]) for i in range(4)]).outputs[0]
    logit = g.attribute(layout.OPACITY, 'FLOAT')
    opacity = g.div(1.0, g.add(1.0, g.math("EXPONENT", g.mul(-1.0, logit))))

    # Mean and covariance factor U = W R S in OpenCV camera axes (flip GL rows y and z).
    mean_gl = g.node("FunctionNodeTransformPoint", [(0, position), (1, view)]).outputs[0]
    mx, my_gl, mz_gl = g.split(mean_gl)
    my, mz = g.mul(-1.0, my_gl), g.mul(-1.0, mz_gl)
    rs = g.node("FunctionNodeCombineTransform", [(0, (0.0, 0.0, 0.0)), (1, rotation),
                                                 (2, scale)]).outputs[0]
    u = g.matrix(g.node("FunctionNodeMatrixMultiply", [(0, view), (1, rs)]).outputs[0])
    row0 = g.xyz(u[0][0], u[0][1], u[0][2])
    row1 = g.vscale(g.xyz(u[1][0], u[1][1], u[1][2]), -1.0)
    row2 = g.vscale(g.xyz(u[2][0], u[2][1], u[2][2]), -1.0)

    # Jacobian rows with gsplat's clamped x/z, y/z (1.3× the half field of view).
    z_safe = g.math("MAXIMUM", mz, NEAR)
    rz = g.div(1.0, z_safe)
    lim_x_pos = g.div(g.add(g.sub(width, cx), g.mul(0.15, width)), fx)
    lim_x_neg = g.div(g.add(cx, g.mul(0.15, width)), fx)
    lim_y_pos = g.div(g.add(g.sub(height, cy), g.mul(0.15, height)), fy)
    lim_y_neg = g.div(g.add(cy, g.mul(0.15, height)), fy)
    tx = g.mul(z_safe, g.math("MINIMUM", g.math("MAXIMUM", g.mul(mx, rz), g.mul(-1.0, lim_x_neg)),
                              lim_x_pos))
    ty = g.mul(z_safe, g.math("MINIMUM", g.math("MAXIMUM", g.mul(my, rz), g.mul(-1.0, lim_y_neg)),
                              lim_y_pos))
    rz2 = g.mul(rz, rz)
    j0 = g.vmath("SUBTRACT", g.vscale(row0, g.mul(fx, rz)), g.vscale(row2, g.mul(g.mul(fx, tx),
                                                                                rz2)))
    j1 = g.vmath("SUBTRACT", g.vscale(row1, g.mul(fy, rz)), g.vscale(row2, g.mul(g.mul(fy, ty),
                                                                                rz2)))
    s00, s11, s01 = g.add(g.dot(j0, j0), EPS2D), g.add(g.dot(j1, j1), EPS2D), g.dot(j0, j1)

    # Principal axes of Σ₂ᴅ: λ = m ± sqrt(m² − det), first axis at angle ½ atan2(2 s01, s00 − s11).
    det = g.sub(g.mul(s00, s11), g.mul(s01, s01))
    mid = g.mul(0.5, g.add(s00, s11))
    disc = g.math("SQRT", g.math("MAXIMUM", g.sub(g.mul(mid, mid), det), 0.0))
    lam1, lam2 = g.add(mid, disc), g.math("MAXIMUM", g.sub(mid, disc), 0.0)
    theta = g.mul(0.5, g.math("ARCTAN2", g.mul(2.0, s01), g.sub(s00, s11)))
    cos_t, sin_t = g.math("COSINE", theta), g.math("SINE", theta)
    extent = g.math("MINIMUM", g.math("SQRT", g.mul(2.0, g.math(
        "LOGARITHM", g.math("MAXIMUM", g.mul(255.0, opacity), 1.0), math.e))), 3.33)
    r1, r2 = g.mul(extent, g.math("SQRT", lam1)), g.mul(extent, g.math("SQRT", lam2))
    # Pixel offsets → object-frame offsets on the plane z = depth (camera GL: x, −y, 0).
    kx, ky = g.div(z_safe, fx), g.div(z_safe, fy)
    axis_u = g.node("FunctionNodeTransformDirection", [(0, g.xyz(
        g.mul(g.mul(r1, cos_t), kx), g.mul(-1.0, g.mul(g.mul(r1, sin_t), ky)), 0.0)),
        (1, c_rel)]).outputs[0]
    axis_v = g.node("FunctionNodeTransformDirection", [(0, g.xyz(
        g.mul(g.mul(-1.0, g.mul(r2, sin_t)), kx), g.mul(-1.0, g.mul(g.mul(r2, cos_t), ky)), 0.0)),
        (1, c_rel)]).outputs[0]

    cam_pos = g.node("FunctionNodeTransformPoint", [(0, (0.0, 0.0, 0.0)), (1, c_rel)]).outputs[0]
    raw_color = _sh_color(g, g.vmath("SUBTRACT", position, cam_pos), gin["SH Degree"])
    color = g.vmath("MAXIMUM", raw_color, (0.0, 0.0, 0.0))

    # Keep what the rasterizer keeps; NaN fails every comparison, so it is dropped too.
    keep = g.both(g.compare('GREATER_EQUAL', mz, NEAR), g.compare('LESS_EQUAL', mz, FAR))
    keep = g.both(keep, g.compare('GREATER_THAN', det, 0.0))
    # A NaN quaternion survives Rotation → Quaternion, but Quaternion → Rotation turns it into
    # a valid rotation: test its norm (NaN fails every comparison).
    quat_ok = g.both(g.compare('GREATER_THAN', qn, 0.0), g.compare('LESS_THAN', qn, 1e30))
    keep = g.both(keep, quat_ok)
    keep = g.both(keep, g.compare('LESS_THAN', lam1, 1e30))
    keep = g.both(keep, g.compare('GREATER_EQUAL', opacity, ALPHA_THRESHOLD))
    keep = g.both(keep, g.compare('GREATER_EQUAL', opacity, gin["Opacity Threshold"]))
    keep = g.both(keep, g.compare('LESS_THAN', g.vmath("LENGTH", raw_color, out=1), 1e30))
    keep = g.both(keep, g.compare('LESS_THAN', g.vmath("LENGTH", g.vmath(
        "ADD", axis_u, axis_v), out=1), 1e30))
    # Evaluate everything the quads need on the splats, then drop the splat attributes.
    points = g.store(geometry, "gsd_axis_u", axis_u, 'FLOAT_VECTOR')
    points = g.store(points, "gsd_axis_v", axis_v, 'FLOAT_VECTOR')
    points = g.store(points, "gsd_extent", extent, 'FLOAT')
    points = g.store(points, COLOR, color, 'FLOAT_COLOR')
    points = g.store(points, OPACITY, opacity, 'FLOAT')
    points = g.store(points, "gsd_depth", mz, 'FLOAT')
    points = g.store(points, "gsd_keep", keep, 'BOOLEAN')
    points = g.node("GeometryNodeMeshToPoints", [(0, points), ("Radius", 0.0)],
                    mode='VERTICES').outputs[0]
    points = g.node("GeometryNodeDeleteGeometry", [(0, points), (1, g.node(
        "FunctionNodeBooleanMath", [(0, g.attribute("gsd_keep", 'BOOLEAN'))],
        operation='NOT').outputs[0])], domain='POINT').outputs[0]
    remove = g.node("GeometryNodeRemoveAttribute", [(0, points), ("Name", "gs_*")])
    remove.inputs["Pattern Mode"].default_value = 'Wildcard'
    points = remove.outputs[0]
    # Back to front: EEVEE blends the faces of one object in index order.
    points = g.node("GeometryNodeSortElements", [(0, points), ("Sort Weight", g.mul(
        -1.0, g.attribute("gsd_depth", 'FLOAT')))], domain='POINT').outputs[0]

    quad = g.node("GeometryNodeMeshGrid", [(0, 2.0), (1, 2.0), (2, 2), (3, 2)]).outputs[0]
    quad = g.store(quad, "gsd_corner", g.node("GeometryNodeInputPosition").outputs[0],
                   'FLOAT_VECTOR')
    quads = g.node("GeometryNodeInstanceOnPoints", [(0, points), (2, quad)]).outputs[0]
    quads = g.node("GeometryNodeRealizeInstances", [(0, quads)]).outputs[0]
    corner = g.attribute("gsd_corner", 'FLOAT_VECTOR')
    cu, cv, _ = g.split(corner)
    k = g.attribute("gsd_extent", 'FLOAT')
    offset = g.vmath("ADD", g.vscale(g.attribute("gsd_axis_u", 'FLOAT_VECTOR'), cu),
                     g.vscale(g.attribute("gsd_axis_v", 'FLOAT_VECTOR'), cv))
    offset = g.vmath("SUBTRACT", offset, corner)  # the instance sat at mean + corner
    quads = g.node("GeometryNodeSetPosition", [(0, quads), ("Offset", offset)]).outputs[0]
    quads = g.store(quads, UV, g.vscale(corner, k), 'FLOAT_VECTOR')
    material = g.node("GeometryNodeSetMaterial", [(0, quads)])
    material.inputs["Material"].default_value = display_material()
    quads = material.outputs[0]

    # Points: one per splat straight from the input, DC colour and opacity only, its radius
    # the largest scale (or the option's radius when set). This branch uses nothing of the
    # projection, SH or sorting above, and the Switch below evaluates only the branch it
    # passes on, so the point display costs a few attribute reads per splat.
    raw_dc = g.vmath("ADD", g.vscale(g.attribute(layout.SH_DC, 'FLOAT_VECTOR'), SH_C0),
                     (0.5, 0.5, 0.5))
    dc_color = g.vmath("MAXIMUM", raw_dc, (0.0, 0.0, 0.0))
    sx, sy, sz = g.split(scale)
    radius = g.math("MAXIMUM", sx, g.math("MAXIMUM", sy, sz))
    radius = g.node("GeometryNodeSwitch", [(0, g.compare('GREATER_THAN', gin["Point Radius"],
                                                         0.0)), (1, radius),
                                           (2, gin["Point Radius"])],
                    input_type='FLOAT').outputs[0]
    keep_dot = g.both(g.compare('GREATER_EQUAL', opacity, ALPHA_THRESHOLD),
                      g.compare('GREATER_EQUAL', opacity, gin["Opacity Threshold"]))
    keep_dot = g.both(keep_dot, g.compare('LESS_THAN', g.vmath("LENGTH", raw_dc, out=1),
                                          1e30))
    keep_dot = g.both(keep_dot, g.compare('LESS_THAN', g.vmath("LENGTH", position, out=1),
                                          1e30))
    keep_dot = g.both(keep_dot, g.compare('LESS_THAN', radius, 1e30))
    keep_dot = g.both(keep_dot, quat_ok)
    dots = g.store(geometry, COLOR, dc_color, 'FLOAT_COLOR')
    dots = g.store(dots, OPACITY, opacity, 'FLOAT')
    dots = g.store(dots, "gsd_radius", radius, 'FLOAT')
    dots = g.store(dots, "gsd_keep", keep_dot, 'BOOLEAN')
    dots = g.node("GeometryNodeDeleteGeometry", [(0, dots), (1, g.node(
        "FunctionNodeBooleanMath", [(0, g.attribute("gsd_keep", 'BOOLEAN'))],
        operation='NOT').outputs[0])], domain='POINT').outputs[0]
    dots = g.node("GeometryNodeMeshToPoints", [(0, dots), ("Radius", g.attribute(
        "gsd_radius", 'FLOAT'))], mode='VERTICES').outputs[0]
    remove = g.node("GeometryNodeRemoveAttribute", [(0, dots), ("Name", "gs_*")])
    remove.inputs["Pattern Mode"].default_value = 'Wildcard'
    dots_mat = g.node("GeometryNodeSetMaterial", [(0, remove.outputs[0])])
    dots_mat.inputs["Material"].default_value = display_material()

    # Quads need a perspective active camera (Blender's perspective projection matrix has
    # −1 in row 3, column 2; orthographic cameras, other objects and no camera at all do not).
    # Without one the splats show as points rather than as quads projected wrongly; the
    # panel and add_display say why (camera_problem).
    perspective = g.compare('LESS_THAN', proj[3][2], -0.5)
    no_perspective = g.node("FunctionNodeBooleanMath", [(0, perspective)],
                            operation='NOT').outputs[0]
    use_points = g.both(g.node("GeometryNodeIsViewport").outputs[0], gin["Viewport Points"])
    use_points = g.node("FunctionNodeBooleanMath", [(0, use_points), (1, no_perspective)],
                        operation='OR').outputs[0]
    shown = g.node("GeometryNodeSwitch", [(0, use_points), (1, quads), (2, dots_mat.outputs[0])],
                   input_type='GEOMETRY').outputs[0]

    # The splats themselves ride along as an instance of the input mesh (loose vertices render
    # as nothing) for the exact engine.
    source = g.node("GeometryNodeGeometryToInstance", [(0, geometry)]).outputs[0]
    joined = g.node("GeometryNodeJoinGeometry")
    tree.links.new(source, joined.inputs[0])
    tree.links.new(shown, joined.inputs[0])
    tree.links.new(joined.outputs[0], gout.inputs[0])
    _layout_nodes(tree)


def _grid_location(index: int) -> tuple[float, float]:
    return ((index // 20) * 220.0, -(index % 20) * 160.0)


def _layout_nodes(tree) -> None:
    """Nodes not made by :class:`_Nodes` (group input/output, a few made directly) onto the
    grid too: those still at the origin."""
    for i, node in enumerate(tree.nodes):
        if node.location.length == 0.0:
            node.location = _grid_location(i)


def _source_digest() -> str:
    """Of the code the tree is built from, so an edited tree never meets an old cache even
    when nobody bumped ``_VERSION``."""
    import hashlib

    digest = hashlib.sha256()
    for module in (__file__, layout.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:12]


def _cache_path() -> Path | None:
    """Where a built display group is kept for the next file: the extension's user folder,
    else a folder of this user's in the temporary directory; named by the tree's version and
    Blender's. None when there is no safe place."""
    name = (f"display_v{_VERSION}_{_source_digest()}_blender_"
            f"{'_'.join(map(str, bpy.app.version))}.blend")
    package = __package__.rpartition(".")[0]
    try:
        return Path(bpy.utils.extension_path_user(package, path="cache", create=True)) / name
    except (ValueError, AttributeError, OSError):  # not installed as an extension
        pass
    uid = getattr(os, "getuid", None)  # POSIX; Windows' temporary folder is per user already
    folder = Path(tempfile.gettempdir()) / f"gs_display_cache_{uid() if uid else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    # Only a folder that is ours and private: someone else's file is never loaded.
    if uid is not None and (info.st_uid != uid() or info.st_mode & 0o077):
        return None
    return folder / name


def _group_from_cache() -> bpy.types.NodeTree | None:
    """Append the group (and its material) written by :func:`_group_to_cache`, or None.

    Building the ~350-node group through the Python API costs about half a second (every
    node and link change updates the whole tree); appending it costs a few milliseconds. Only
    used when the file has no splat material yet, so appending never makes a second one."""
    path = _cache_path()
    if path is None or not path.is_file() or bpy.data.materials.get(MATERIAL_NAME) is not None:
        return None
    before = set(bpy.data.node_groups)
    try:
        with bpy.data.libraries.load(str(path), link=False) as (source, target):
            target.node_groups = [n for n in source.node_groups if n == NODE_GROUP_NAME]
    except (OSError, RuntimeError, ValueError):
        return None
    # Appending leaves an unused reference to the cache file behind: not part of the scene.
    for lib in list(bpy.data.libraries):
        if Path(bpy.path.abspath(lib.filepath)) == path and not getattr(lib, "users_id", ()):
            bpy.data.libraries.remove(lib)
    new = [g for g in bpy.data.node_groups if g not in before]
    tree = next((g for g in new if g.get(_VERSION_PROP) == _VERSION
                 and g.bl_idname == 'GeometryNodeTree'), None)
    if tree is None or len(new) != 1:  # not what this version writes: build instead
        for group in new:
            bpy.data.node_groups.remove(group)
        mat = bpy.data.materials.get(MATERIAL_NAME)
        if mat is not None and mat.users == 0:
            bpy.data.materials.remove(mat)
        return None
    tree.use_fake_user = False
    tree.name = NODE_GROUP_NAME
    return tree


def _group_to_cache(tree: bpy.types.NodeTree) -> None:
    path = _cache_path()
    if path is None:
        return
    partial = path.with_name(path.name + ".partial")
    try:
        bpy.data.libraries.write(str(partial), {tree}, fake_user=True, compress=False)
        os.replace(partial, path)
        for old in path.parent.glob("display_v*.blend"):  # other versions' trees
            if old != path:
                old.unlink(missing_ok=True)
    except (OSError, RuntimeError):
        partial.unlink(missing_ok=True)  # no cache: the next file builds again


def display_node_group() -> bpy.types.NodeTree:
    """The shared display node group (made on first use; rebuilt when out of date)."""
    tree = bpy.data.node_groups.get(NODE_GROUP_NAME)
    if tree is not None and tree.get(_VERSION_PROP) == _VERSION:
        return tree
    if tree is not None:
        tree.name = NODE_GROUP_NAME + " (old)"
    new = _group_from_cache()
    if new is None:
        new = bpy.data.node_groups.new(NODE_GROUP_NAME, 'GeometryNodeTree')
        try:
            _build_tree(new)
        except BaseException:
            bpy.data.node_groups.remove(new)
            if tree is not None:
                tree.name = NODE_GROUP_NAME
            raise
        new[_VERSION_PROP] = _VERSION
        _group_to_cache(new)
    if tree is not None:
        tree.user_remap(new)
        bpy.data.node_groups.remove(tree)
    return new


# ------------------------------------------------------------------------------ the material
def _build_material(mat: bpy.types.Material) -> None:
    if mat.node_tree is None:  # Blender < 5 makes node trees only on request
        mat.use_nodes = True
    tree = mat.node_tree
    tree.nodes.clear()
    s = _Nodes(tree)

    def attr(name: str, out: str):
        return s.node("ShaderNodeAttribute", attribute_name=name,
                      attribute_type='GEOMETRY').outputs[out]

    uv = attr(UV, "Vector")
    falloff = s.math("EXPONENT", s.mul(-0.5, s.vmath("DOT_PRODUCT", uv, uv, out=1)))
    alpha = s.math("MINIMUM", s.mul(attr(OPACITY, "Fac"), falloff), ALPHA_MAX)
    alpha = s.mul(alpha, s.math("GREATER_THAN", alpha, ALPHA_THRESHOLD * (1.0 - 1e-6)))
    emission = s.node("ShaderNodeEmission", [("Color", attr(COLOR, "Color")),
                                             ("Strength", 1.0)])
    clear = s.node("ShaderNodeBsdfTransparent", [("Color", (1.0, 1.0, 1.0, 1.0))])
    mix = s.node("ShaderNodeMixShader", [(0, alpha)])
    tree.links.new(clear.outputs[0], mix.inputs[1])
    tree.links.new(emission.outputs[0], mix.inputs[2])
    out = s.node("ShaderNodeOutputMaterial")
    tree.links.new(mix.outputs[0], out.inputs["Surface"])
    _layout_nodes(tree)
    # EEVEE: alpha blending in draw order (the node tree sorts back to front); both sides.
    mat.surface_render_method = 'BLENDED'
    mat.use_transparency_overlap = True
    mat.use_backface_culling = False
    mat.use_transparent_shadow = True
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)


def display_material() -> bpy.types.Material:
    """The shared splat material (made on first use)."""
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is not None and mat.get(_VERSION_PROP) == _VERSION:
        return mat
    if mat is None:
        mat = bpy.data.materials.new(MATERIAL_NAME)
    _build_material(mat)
    mat[_VERSION_PROP] = _VERSION
    return mat


# ------------------------------------------------------------------------------ public API
def display_modifier(obj: bpy.types.Object) -> bpy.types.NodesModifier | None:
    for mod in obj.modifiers:
        if mod.type == 'NODES' and mod.node_group is not None and \
                mod.node_group.name.startswith(NODE_GROUP_NAME):
            return mod
    return None


def _input_ids(tree) -> dict[str, str]:
    return {item.name: item.identifier for item in tree.interface.items_tree
            if item.item_type == 'SOCKET' and item.in_out == 'INPUT'}


def _input_api_is_properties(mod) -> bool:
    """Blender 5.2+ keeps modifier input values in ``mod.properties.inputs``, not ID props."""
    return hasattr(mod, "properties") and hasattr(mod.properties, "inputs")


def _input_data_path(mod, identifier: str) -> str:
    """Object-relative data path of a Geometry Nodes modifier input (for drivers)."""
    if _input_api_is_properties(mod):
        return f'modifiers["{mod.name}"].properties.inputs.{identifier}.value'
    return f'modifiers["{mod.name}"]["{identifier}"]'


def input_property(mod, identifier: str) -> tuple[object, str]:
    """(owner, property name) of a modifier input for ``layout.prop`` on any Blender version."""
    if _input_api_is_properties(mod):
        return getattr(mod.properties.inputs, identifier), "value"
    return mod, f'["{identifier}"]'


def _get_input(mod, identifier: str):
    if _input_api_is_properties(mod):
        return getattr(mod.properties.inputs, identifier).value
    return mod[identifier]


def set_modifier_input(mod, identifier: str, value) -> None:
    """Set a modifier input by its socket identifier on any Blender version (5.2 moved input
    values from ID properties to ``modifier.properties.inputs``)."""
    if _input_api_is_properties(mod):
        getattr(mod.properties.inputs, identifier).value = value
    else:
        mod[identifier] = value


def add_display(obj: bpy.types.Object, *, sh_degree: int | None = None,
                scale_multiplier: float = 1.0, opacity_threshold: float = 0.0,
                viewport_points: bool = False, point_radius: float = 0.0,
                scene: bpy.types.Scene | None = None, raw_view_transform: bool = False,
                report: Report = log_report) -> bpy.types.NodesModifier:
    """Give a splat object its Gaussian display (Geometry Nodes modifier + material).

    Idempotent: an object that already has the display gets its options updated. ``sh_degree``
    defaults to the object's own degree. The render size inputs are driven by ``scene``'s
    render settings (default: the context scene). The scene's colour management is left alone
    unless ``raw_view_transform`` asks for view transform "Raw" (the screen then shows the
    model's colours unchanged; the "Raw view" button of the display panel does the same).
    Cycles' transparent bounces are raised to :data:`CYCLES_TRANSPARENT_BOUNCES` when lower
    (reported). A scene without a perspective active camera gets a warning: the display then
    shows points (:func:`camera_problem`).
    GSError for objects without splat attributes, and on Blender versions without the node
    types the display needs (before 4.5; :func:`display_support_problem`).
    """
    problem = display_support_problem()
    if problem is not None:
        raise GSError(problem)
    if obj is None or obj.type != 'MESH':
        raise GSError(f"Object {getattr(obj, 'name', obj)!r} is not a splat mesh; the splat "
                      "display draws meshes with splat attributes")
    missing = mesh_splats.missing_attributes(obj.data)
    if missing:
        raise GSError(f"Object {obj.name!r} has no splat attributes (missing "
                      f"{', '.join(missing)}); import a splat file to make a splat object")
    scene = scene or bpy.context.scene
    tree = display_node_group()
    mod = display_modifier(obj)
    if mod is None:
        mod = obj.modifiers.new(MODIFIER_NAME, 'NODES')
        mod.node_group = tree
    if not obj.data.materials:
        obj.data.materials.append(display_material())
    ids = _input_ids(tree)
    for name, path in _RENDER_INPUTS:
        data_path = _input_data_path(mod, ids[name])
        obj.driver_remove(data_path)
        fcurve = obj.driver_add(data_path)
        driver = fcurve.driver
        driver.type = 'AVERAGE'
        var = driver.variables.new()
        var.type = 'SINGLE_PROP'
        var.targets[0].id_type = 'SCENE'
        var.targets[0].id = scene
        var.targets[0].data_path = path
    degree = obj.data.get(layout.SH_DEGREE_PROP, 3) if sh_degree is None else sh_degree
    set_display_options(obj, sh_degree=degree, scale_multiplier=scale_multiplier,
                        opacity_threshold=opacity_threshold, viewport_points=viewport_points,
                        point_radius=point_radius)
    if raw_view_transform:
        use_raw_view_transform(scene, report=report)
    ensure_transparent_bounces(scene, report=report)
    camera = camera_problem(scene)
    if camera is not None:
        report({'WARNING'}, camera)
    return mod


def display_support_problem() -> str | None:
    """Why this Blender cannot build the splat display (None when it can).

    The display needs node types added up to Blender 4.5 (Camera Info). Without them splat
    objects still import and the "Gaussian Splatting" render engine still renders them.
    """
    missing = [name for name in _REQUIRED_NODE_TYPES if not hasattr(bpy.types, name)]
    if not missing:
        return None
    version = ".".join(str(v) for v in bpy.app.version)
    return (f"The splat display needs Blender 4.5 or newer (Blender {version} lacks the "
            f"{', '.join(missing)} node{'s' if len(missing) > 1 else ''}); the splats are still "
            "imported and render with the \"Gaussian Splatting\" render engine")


def camera_problem(scene: bpy.types.Scene) -> str | None:
    """Why the display cannot show Gaussians for ``scene``'s active camera (None when it can).

    The quads are projected through a perspective active camera; without one the display
    shows the splats as points (DC colour), never as wrongly projected quads. Panoramic
    cameras still get quads (the tree cannot tell them apart), with this warning.
    """
    cam = scene.camera
    if cam is None:
        return (f"Scene {scene.name!r} has no active camera: splats show as points until a "
                "camera is made the active camera (Ctrl+Numpad 0)")
    if cam.type != 'CAMERA':
        return (f"The active camera {cam.name!r} of scene {scene.name!r} is not a camera: "
                "splats show as points")
    if cam.data.type == 'PANO':  # the tree cannot tell: it projects with the lens
        return (f"Camera {cam.name!r} is panoramic: the splat display projects splats as a "
                "perspective camera with its lens would, which panoramic renders do not match")
    if cam.data.type != 'PERSP':
        return (f"Camera {cam.name!r} is {cam.data.type.lower().replace('ortho', 'orthographic')}"
                ": the splat display needs a perspective camera, so splats show as points")
    return None


def ensure_transparent_bounces(scene: bpy.types.Scene, *, report: Report = log_report,
                               minimum: int = CYCLES_TRANSPARENT_BOUNCES) -> bool:
    """Raise Cycles' transparent bounce limit to ``minimum`` (never lower it); True if raised.

    EEVEE has no such limit: its blended surfaces are all composited in draw order.
    """
    cycles = getattr(scene, "cycles", None)
    if cycles is None or cycles.transparent_max_bounces >= minimum:
        return False
    old = cycles.transparent_max_bounces
    cycles.transparent_max_bounces = minimum
    report({'INFO'}, f"Scene {scene.name!r}: Cycles transparent bounces {old} → {minimum}, so "
                     "rays pass through stacked splats")
    return True


def set_display_options(obj: bpy.types.Object, *, sh_degree: int | None = None,
                        scale_multiplier: float | None = None,
                        opacity_threshold: float | None = None,
                        viewport_points: bool | None = None,
                        point_radius: float | None = None) -> None:
    """Change the per-object display options (None leaves an option as it is)."""
    mod = display_modifier(obj)
    if mod is None:
        raise GSError(f"Object {obj.name!r} has no splat display; add one first")
    values = {"SH Degree": sh_degree, "Scale Multiplier": scale_multiplier,
              "Opacity Threshold": opacity_threshold, "Viewport Points": viewport_points,
              "Point Radius": point_radius}
    if sh_degree is not None and int(sh_degree) not in (0, 1, 2, 3):
        raise GSError(f"Object {obj.name!r}: SH degree must be 0-3, got {sh_degree}")
    for value, what in ((scale_multiplier, "scale multiplier"), (point_radius, "point radius")):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise GSError(f"Object {obj.name!r}: {what} must be a finite number ≥ 0")
    if opacity_threshold is not None and not 0.0 <= opacity_threshold <= 1.0:
        raise GSError(f"Object {obj.name!r}: opacity threshold must be in [0, 1]")
    ids = _input_ids(mod.node_group)
    for name, value in values.items():
        if value is None:
            continue
        if name == "SH Degree":
            value = int(value)
        elif name == "Viewport Points":
            value = bool(value)
        else:
            value = float(value)
        set_modifier_input(mod, ids[name], value)
    obj.update_tag()


def display_options(obj: bpy.types.Object) -> dict:
    """The display options of ``obj`` ({} without a display)."""
    mod = display_modifier(obj)
    if mod is None:
        return {}
    ids = _input_ids(mod.node_group)
    return {name: _get_input(mod, ids[name]) for name in OPTION_NAMES}


def remove_display(obj: bpy.types.Object) -> bool:
    """Remove the display modifier, its drivers and the splat material slot; True if removed."""
    mod = display_modifier(obj)
    if mod is None:
        return False
    ids = _input_ids(mod.node_group)
    for name, _path in _RENDER_INPUTS:
        obj.driver_remove(_input_data_path(mod, ids[name]))
    obj.modifiers.remove(mod)
    mats = obj.data.materials
    for i in reversed(range(len(mats))):
        if mats[i] is not None and mats[i].name == MATERIAL_NAME:
            mats.pop(index=i)
    return True


def use_raw_view_transform(scene: bpy.types.Scene, *, report: Report = log_report) -> None:
    """Show render values unchanged (view transform "Raw", no look, exposure 0, gamma 1)."""
    view = scene.view_settings
    if view.view_transform != 'Raw':
        old = view.view_transform
        view.view_transform = 'Raw'
        report({'INFO'}, f"Scene {scene.name!r}: view transform {old} → Raw, so splats show "
                         "the colours the model produced")
    view.look = 'None'
    view.exposure = 0.0
    view.gamma = 1.0
