"""The splat display's Geometry Nodes group, built in named stages (what each stage computes,
and why, is in docs/architecture.md, section "The splat display").

:func:`build_display_tree` fills an empty Geometry Nodes tree:

1. :func:`_interface` — the modifier inputs (:data:`OPTIONS`) and the render size inputs that
   drivers copy from the scene (:data:`RENDER_INPUTS`);
2. :func:`_camera` — the active camera relative to the object, and pinhole intrinsics from its
   projection matrix and the render size;
3. :func:`_splat_fields` — scale, unit rotation and opacity from the ``gs_*`` attributes;
4. :func:`_project` — mean and 2D covariance in pixels (gsplat's clamped Jacobian, ``eps2d``),
   its principal axes mapped back onto the plane through the mean;
5. :func:`_quad_branch` — cull as the rasterizer culls, SH colour, sort back to front, one quad
   per splat with per-corner ``gsd_uv`` for the material;
6. :func:`_point_branch` — the cheap viewport points (DC colour, largest scale);
7. :func:`_output` — points instead of quads without a perspective camera (or when asked), and
   the splats themselves carried along as an instance for the exact render engine.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import bpy

from ...blender_gs_addon import mesh_layout as layout
from ...blender_gs_addon.sh import SH_C0
from .material import ALPHA_THRESHOLD, COLOR, OPACITY, UV, VERSION_PROP, display_material
from .nodes import GeometryNodeBuilder, layout_nodes
from .sh_nodes import sh_band_basis

__all__ = ["NODE_GROUP_NAME", "TREE_VERSION", "VERSION_PROP", "OPTIONS", "OPTION_NAMES",
           "RENDER_INPUTS", "REQUIRED_NODE_TYPES", "NEAR", "FAR", "EPS2D", "build_display_tree",
           "sh_color"]

NODE_GROUP_NAME = "GS Splat Display"
TREE_VERSION = 2  # bump when the tree changes: older groups are rebuilt

NEAR, FAR = 0.01, 1e10
EPS2D = 0.3
# Node types of the display tree that older Blender versions lack (Camera Info: Blender 4.5).
REQUIRED_NODE_TYPES = (
    "GeometryNodeCameraInfo", "GeometryNodeInputActiveCamera", "FunctionNodeSeparateMatrix",
    "FunctionNodeInvertMatrix", "FunctionNodeTransformPoint", "FunctionNodeTransformDirection",
    "FunctionNodeMatrixMultiply", "FunctionNodeCombineTransform", "GeometryNodeSortElements",
    "FunctionNodeRotationToQuaternion", "FunctionNodeQuaternionToRotation",
)

# Modifier inputs: (name, socket type, default, min, max).
OPTIONS = (
    ("SH Degree", "NodeSocketInt", 3, 0, 3),
    ("Scale Multiplier", "NodeSocketFloat", 1.0, 0.0, 100.0),
    ("Opacity Threshold", "NodeSocketFloat", 0.0, 0.0, 1.0),
    ("Viewport Points", "NodeSocketBool", False, None, None),
    ("Point Radius", "NodeSocketFloat", 0.0, 0.0, 1e3),
)
OPTION_NAMES = tuple(o[0] for o in OPTIONS)
# Copied from the scene by drivers: the projection needs the render size in pixels.
RENDER_INPUTS = (("Resolution X", "render.resolution_x"), ("Resolution Y", "render.resolution_y"),
                 ("Resolution %", "render.resolution_percentage"))


def build_display_tree(tree: bpy.types.NodeTree) -> None:
    """Fill the empty Geometry Nodes ``tree`` with the splat display (stages above)."""
    g = GeometryNodeBuilder(tree)
    _interface(tree)
    gin = g.node("NodeGroupInput").outputs
    gout = g.node("NodeGroupOutput")
    cam = _camera(g, gin)
    fields = _splat_fields(g, gin)
    projected = _project(g, cam, fields)
    quads = _quad_branch(g, gin, cam, fields, projected)
    dots = _point_branch(g, gin, fields)
    _output(g, gin, gout, cam, quads, dots)
    layout_nodes(tree)


def _interface(tree: bpy.types.NodeTree) -> None:
    face = tree.interface
    face.new_socket("Geometry", in_out='INPUT', socket_type='NodeSocketGeometry')
    for name, kind, default, lo, hi in OPTIONS:
        sock = face.new_socket(name, in_out='INPUT', socket_type=kind)
        sock.default_value = default
        if lo is not None:
            sock.min_value, sock.max_value = lo, hi
    for name, _path in RENDER_INPUTS:
        sock = face.new_socket(name, in_out='INPUT', socket_type='NodeSocketInt')
        sock.default_value = 100 if name.endswith("%") else 1920
        sock.min_value = 1
    face.new_socket("Geometry", in_out='OUTPUT', socket_type='NodeSocketGeometry')


def _camera(g: GeometryNodeBuilder, gin) -> SimpleNamespace:
    """Camera relative to this object (C_rel = object⁻¹ · camera) and pinhole intrinsics."""
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
    return SimpleNamespace(c_rel=c_rel, view=view, proj=proj, width=width, height=height,
                           fx=fx, fy=fy, cx=cx, cy=cy)


def _splat_fields(g: GeometryNodeBuilder, gin) -> SimpleNamespace:
    """Position, scale (× multiplier), unit rotation, opacity; ``quat_ok`` is False for a
    NaN or zero quaternion (Quaternion → Rotation would turn it into a valid rotation)."""
    position = g.node("GeometryNodeInputPosition").outputs[0]
    scale = g.vscale(g.vmath("POWER", (math.e,) * 3,
                             g.attribute(layout.SCALE, 'FLOAT_VECTOR')), gin["Scale Multiplier"])
    quat = g.node("FunctionNodeRotationToQuaternion",
                  [(0, g.attribute(layout.ROTATION, 'QUATERNION'))]).outputs
    qn = g.math("SQRT", g.add(g.add(g.mul(quat[0], quat[0]), g.mul(quat[1], quat[1])),
                              g.add(g.mul(quat[2], quat[2]), g.mul(quat[3], quat[3]))))
    unit = [g.div(quat[i], qn) for i in range(4)]
    rotation = g.node("FunctionNodeQuaternionToRotation",
                      [(i, unit[i]) for i in range(4)]).outputs[0]
    logit = g.attribute(layout.OPACITY, 'FLOAT')
    opacity = g.div(1.0, g.add(1.0, g.math("EXPONENT", g.mul(-1.0, logit))))
    quat_ok = g.both(g.compare('GREATER_THAN', qn, 0.0), g.compare('LESS_THAN', qn, 1e30))
    return SimpleNamespace(position=position, scale=scale, rotation=rotation, opacity=opacity,
                           quat_ok=quat_ok)


def _project(g: GeometryNodeBuilder, cam, fields) -> SimpleNamespace:
    """Depth, 2D covariance (det, largest eigenvalue), the alpha extent and the quad's axes."""
    # Mean and covariance factor U = W R S in OpenCV camera axes (flip GL rows y and z).
    mean_gl = g.node("FunctionNodeTransformPoint", [(0, fields.position), (1, cam.view)]).outputs[0]
    mx, my_gl, mz_gl = g.split(mean_gl)
    my, mz = g.mul(-1.0, my_gl), g.mul(-1.0, mz_gl)
    rs = g.node("FunctionNodeCombineTransform", [(0, (0.0, 0.0, 0.0)), (1, fields.rotation),
                                                 (2, fields.scale)]).outputs[0]
    u = g.matrix(g.node("FunctionNodeMatrixMultiply", [(0, cam.view), (1, rs)]).outputs[0])
    rows = (g.xyz(u[0][0], u[0][1], u[0][2]),
            g.vscale(g.xyz(u[1][0], u[1][1], u[1][2]), -1.0),
            g.vscale(g.xyz(u[2][0], u[2][1], u[2][2]), -1.0))
    z_safe = g.math("MAXIMUM", mz, NEAR)
    s00, s11, s01 = _covariance_2d(g, cam, rows, mx, my, z_safe)
    # Principal axes of Σ₂ᴅ: λ = m ± sqrt(m² − det), first axis at angle ½ atan2(2 s01, s00 − s11).
    det = g.sub(g.mul(s00, s11), g.mul(s01, s01))
    mid = g.mul(0.5, g.add(s00, s11))
    disc = g.math("SQRT", g.math("MAXIMUM", g.sub(g.mul(mid, mid), det), 0.0))
    lam1, lam2 = g.add(mid, disc), g.math("MAXIMUM", g.sub(mid, disc), 0.0)
    theta = g.mul(0.5, g.math("ARCTAN2", g.mul(2.0, s01), g.sub(s00, s11)))
    cos_t, sin_t = g.math("COSINE", theta), g.math("SINE", theta)
    # k = sqrt(2 ln(255·opacity)) ≤ 3.33: where alpha falls to 1/255.
    extent = g.math("MINIMUM", g.math("SQRT", g.mul(2.0, g.math(
        "LOGARITHM", g.math("MAXIMUM", g.mul(255.0, fields.opacity), 1.0), math.e))), 3.33)
    r1, r2 = g.mul(extent, g.math("SQRT", lam1)), g.mul(extent, g.math("SQRT", lam2))
    # Pixel offsets → object-frame offsets on the plane z = depth (camera GL: x, −y, 0).
    kx, ky = g.div(z_safe, cam.fx), g.div(z_safe, cam.fy)
    axis_u = g.node("FunctionNodeTransformDirection", [(0, g.xyz(
        g.mul(g.mul(r1, cos_t), kx), g.mul(-1.0, g.mul(g.mul(r1, sin_t), ky)), 0.0)),
        (1, cam.c_rel)]).outputs[0]
    axis_v = g.node("FunctionNodeTransformDirection", [(0, g.xyz(
        g.mul(g.mul(-1.0, g.mul(r2, sin_t)), kx), g.mul(-1.0, g.mul(g.mul(r2, cos_t), ky)), 0.0)),
        (1, cam.c_rel)]).outputs[0]
    return SimpleNamespace(depth=mz, det=det, lam1=lam1, extent=extent, axis_u=axis_u,
                           axis_v=axis_v)


def _covariance_2d(g: GeometryNodeBuilder, cam, rows, mx, my, z_safe):
    """(s00, s11, s01) of J U Uᵀ Jᵀ + eps2d·I with gsplat's Jacobian: x/z and y/z clamped to
    1.3× the half field of view."""
    row0, row1, row2 = rows
    rz = g.div(1.0, z_safe)
    lim_x_pos = g.div(g.add(g.sub(cam.width, cam.cx), g.mul(0.15, cam.width)), cam.fx)
    lim_x_neg = g.div(g.add(cam.cx, g.mul(0.15, cam.width)), cam.fx)
    lim_y_pos = g.div(g.add(g.sub(cam.height, cam.cy), g.mul(0.15, cam.height)), cam.fy)
    lim_y_neg = g.div(g.add(cam.cy, g.mul(0.15, cam.height)), cam.fy)
    tx = g.mul(z_safe, g.math("MINIMUM", g.math("MAXIMUM", g.mul(mx, rz), g.mul(-1.0, lim_x_neg)),
                              lim_x_pos))
    ty = g.mul(z_safe, g.math("MINIMUM", g.math("MAXIMUM", g.mul(my, rz), g.mul(-1.0, lim_y_neg)),
                              lim_y_pos))
    rz2 = g.mul(rz, rz)
    j0 = g.vmath("SUBTRACT", g.vscale(row0, g.mul(cam.fx, rz)),
                 g.vscale(row2, g.mul(g.mul(cam.fx, tx), rz2)))
    j1 = g.vmath("SUBTRACT", g.vscale(row1, g.mul(cam.fy, rz)),
                 g.vscale(row2, g.mul(g.mul(cam.fy, ty), rz2)))
    return g.add(g.dot(j0, j0), EPS2D), g.add(g.dot(j1, j1), EPS2D), g.dot(j0, j1)


def sh_color(g: GeometryNodeBuilder, direction, degree):
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
    k = 1
    for band, basis_values in enumerate(_sh_bases(g, x, y, z), start=1):
        on = g.math("GREATER_THAN", degree, band - 0.5)  # 1 when the band is enabled
        part = None
        for basis in basis_values:
            term = g.vscale(coeff(k), basis)
            part = term if part is None else g.vmath("ADD", part, term)
            k += 1
        total = g.vmath("ADD", total, g.vscale(part, on))
    return g.vmath("ADD", total, (0.5, 0.5, 0.5))


def _sh_bases(g: GeometryNodeBuilder, x, y, z) -> list[list]:
    """The real SH basis functions of bands 1–3 at the unit direction (x, y, z)."""
    return [sh_band_basis(g, band, x, y, z) for band in (1, 2, 3)]


def _quad_keep(g: GeometryNodeBuilder, gin, fields, projected, raw_color):
    """Keep what the rasterizer keeps; NaN fails every comparison, so it is dropped too."""
    mz = projected.depth
    keep = g.both(g.compare('GREATER_EQUAL', mz, NEAR), g.compare('LESS_EQUAL', mz, FAR))
    keep = g.both(keep, g.compare('GREATER_THAN', projected.det, 0.0))
    keep = g.both(keep, fields.quat_ok)
    keep = g.both(keep, g.compare('LESS_THAN', projected.lam1, 1e30))
    keep = g.both(keep, g.compare('GREATER_EQUAL', fields.opacity, ALPHA_THRESHOLD))
    keep = g.both(keep, g.compare('GREATER_EQUAL', fields.opacity, gin["Opacity Threshold"]))
    keep = g.both(keep, g.compare('LESS_THAN', g.vmath("LENGTH", raw_color, out=1), 1e30))
    return g.both(keep, g.compare('LESS_THAN', g.vmath("LENGTH", g.vmath(
        "ADD", projected.axis_u, projected.axis_v), out=1), 1e30))


def _drop_unkept(g: GeometryNodeBuilder, points):
    """Delete the points whose ``gsd_keep`` is False."""
    return g.node("GeometryNodeDeleteGeometry", [(0, points), (1, g.node(
        "FunctionNodeBooleanMath", [(0, g.attribute("gsd_keep", 'BOOLEAN'))],
        operation='NOT').outputs[0])], domain='POINT').outputs[0]


def _without_splat_attributes(g: GeometryNodeBuilder, geometry):
    remove = g.node("GeometryNodeRemoveAttribute", [(0, geometry), ("Name", "gs_*")])
    remove.inputs["Pattern Mode"].default_value = 'Wildcard'
    return remove.outputs[0]


def _quad_branch(g: GeometryNodeBuilder, gin, cam, fields, projected):
    """One quad per kept splat, back to front, with everything the material reads."""
    cam_pos = g.node("FunctionNodeTransformPoint", [(0, (0.0, 0.0, 0.0)),
                                                    (1, cam.c_rel)]).outputs[0]
    raw_color = sh_color(g, g.vmath("SUBTRACT", fields.position, cam_pos), gin["SH Degree"])
    color = g.vmath("MAXIMUM", raw_color, (0.0, 0.0, 0.0))
    keep = _quad_keep(g, gin, fields, projected, raw_color)
    # Evaluate everything the quads need on the splats, then drop the splat attributes.
    points = g.store(gin["Geometry"], "gsd_axis_u",
                     projected.axis_u, 'FLOAT_VECTOR')
    points = g.store(points, "gsd_axis_v", projected.axis_v, 'FLOAT_VECTOR')
    points = g.store(points, "gsd_extent", projected.extent, 'FLOAT')
    points = g.store(points, COLOR, color, 'FLOAT_COLOR')
    points = g.store(points, OPACITY, fields.opacity, 'FLOAT')
    points = g.store(points, "gsd_depth", projected.depth, 'FLOAT')
    points = g.store(points, "gsd_keep", keep, 'BOOLEAN')
    points = g.node("GeometryNodeMeshToPoints", [(0, points), ("Radius", 0.0)],
                    mode='VERTICES').outputs[0]
    points = _without_splat_attributes(g, _drop_unkept(g, points))
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
    offset = g.vmath("ADD", g.vscale(g.attribute("gsd_axis_u", 'FLOAT_VECTOR'), cu),
                     g.vscale(g.attribute("gsd_axis_v", 'FLOAT_VECTOR'), cv))
    offset = g.vmath("SUBTRACT", offset, corner)  # the instance sat at mean + corner
    quads = g.node("GeometryNodeSetPosition", [(0, quads), ("Offset", offset)]).outputs[0]
    quads = g.store(quads, UV, g.vscale(corner, g.attribute("gsd_extent", 'FLOAT')),
                    'FLOAT_VECTOR')
    material = g.node("GeometryNodeSetMaterial", [(0, quads)])
    material.inputs["Material"].default_value = display_material()
    return material.outputs[0]


def _point_branch(g: GeometryNodeBuilder, gin, fields):
    """One point per splat straight from the input, DC colour and opacity only, its radius the
    largest scale (or the option's radius when set). This branch uses nothing of the
    projection, SH or sorting, and the Switch of :func:`_output` evaluates only the branch it
    passes on, so the point display costs a few attribute reads per splat."""
    raw_dc = g.vmath("ADD", g.vscale(g.attribute(layout.SH_DC, 'FLOAT_VECTOR'), SH_C0),
                     (0.5, 0.5, 0.5))
    dc_color = g.vmath("MAXIMUM", raw_dc, (0.0, 0.0, 0.0))
    sx, sy, sz = g.split(fields.scale)
    radius = g.math("MAXIMUM", sx, g.math("MAXIMUM", sy, sz))
    radius = g.node("GeometryNodeSwitch", [(0, g.compare('GREATER_THAN', gin["Point Radius"],
                                                         0.0)), (1, radius),
                                           (2, gin["Point Radius"])],
                    input_type='FLOAT').outputs[0]
    opacity = fields.opacity
    keep = g.both(g.compare('GREATER_EQUAL', opacity, ALPHA_THRESHOLD),
                  g.compare('GREATER_EQUAL', opacity, gin["Opacity Threshold"]))
    keep = g.both(keep, g.compare('LESS_THAN', g.vmath("LENGTH", raw_dc, out=1), 1e30))
    keep = g.both(keep, g.compare('LESS_THAN', g.vmath("LENGTH", fields.position, out=1), 1e30))
    keep = g.both(keep, g.compare('LESS_THAN', radius, 1e30))
    keep = g.both(keep, fields.quat_ok)
    dots = g.store(gin["Geometry"], COLOR, dc_color, 'FLOAT_COLOR')
    dots = g.store(dots, OPACITY, opacity, 'FLOAT')
    dots = g.store(dots, "gsd_radius", radius, 'FLOAT')
    dots = _drop_unkept(g, g.store(dots, "gsd_keep", keep, 'BOOLEAN'))
    dots = g.node("GeometryNodeMeshToPoints", [(0, dots), ("Radius", g.attribute(
        "gsd_radius", 'FLOAT'))], mode='VERTICES').outputs[0]
    dots_mat = g.node("GeometryNodeSetMaterial", [(0, _without_splat_attributes(g, dots))])
    dots_mat.inputs["Material"].default_value = display_material()
    return dots_mat.outputs[0]


def _output(g: GeometryNodeBuilder, gin, gout, cam, quads, dots) -> None:
    """Quads need a perspective active camera (Blender's perspective projection matrix has −1
    in row 3, column 2; orthographic cameras, other objects and no camera at all do not).
    Without one the splats show as points rather than as quads projected wrongly."""
    perspective = g.compare('LESS_THAN', cam.proj[3][2], -0.5)
    no_perspective = g.node("FunctionNodeBooleanMath", [(0, perspective)],
                            operation='NOT').outputs[0]
    use_points = g.both(g.node("GeometryNodeIsViewport").outputs[0], gin["Viewport Points"])
    use_points = g.node("FunctionNodeBooleanMath", [(0, use_points), (1, no_perspective)],
                        operation='OR').outputs[0]
    shown = g.node("GeometryNodeSwitch", [(0, use_points), (1, quads), (2, dots)],
                   input_type='GEOMETRY').outputs[0]
    # The splats themselves ride along as an instance of the input mesh (loose vertices render
    # as nothing) for the exact engine.
    source = g.node("GeometryNodeGeometryToInstance", [(0, gin["Geometry"])]).outputs[0]
    joined = g.node("GeometryNodeJoinGeometry")
    g.tree.links.new(source, joined.inputs[0])
    g.tree.links.new(shown, joined.inputs[0])
    g.tree.links.new(joined.outputs[0], gout.inputs[0])
