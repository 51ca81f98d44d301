"""Rigging at scale: binding a splat figure and per-frame deformation with live rotation.

A stick-figure shell of N splats (1M, or 100k with ``quick``) is rigged with the humanoid
template (Rigify metarig, 29 deform bones). Rows: weight computation + vertex-group writing
("bind"), and the depsgraph evaluation of a pose change with the Armature modifier alone vs
with the live-rotation Geometry Nodes modifier. Wall and process CPU time are both reported
(the machine may be shared; Blender evaluates on several threads).

Native splats (Blender 5.3+ point clouds, SH degree 3): the same figure at 100k and 1M splats
bound in a Python whose bpy has them (``bench_native_render.native_python``, a subprocess):
bind (weights, cage, frames, ``GS Pose``) and a pose change with and without the SH rotation.
"""

from __future__ import annotations

import time

import numpy as np


def _figure(rng, count):
    def tube(n, a, b, r):
        a, b = np.asarray(a, float), np.asarray(b, float)
        axis = (b - a) / np.linalg.norm(b - a)
        e1 = np.cross(axis, [1.0, 0, 0] if abs(axis[0]) < 0.9 else [0, 1.0, 0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(axis, e1)
        t, phi = rng.uniform(0, 1, (n, 1)), rng.uniform(0, 2 * np.pi, (n, 1))
        return a + t * (b - a) + r * (np.cos(phi) * e1 + np.sin(phi) * e2)

    n = count // 12
    parts = [tube(n, (0, 0, 1.58), (0, 0, 1.8), 0.1), tube(3 * n, (0, 0, 0.85), (0, 0, 1.5), 0.16)]
    for s in (1, -1):
        parts += [tube(n, (s * 0.17, 0, 1.42), (s * 0.87, 0, 1.42), 0.045),
                  tube(2 * n, (s * 0.1, 0, 0.0), (s * 0.1, 0, 0.88), 0.07)]
    pts = np.vstack(parts)
    extra = count - len(pts)
    return np.vstack([pts, tube(extra, (0, 0, 0.9), (0, 0, 1.4), 0.15)]) if extra > 0 else pts


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(quick: bool = False) -> list[dict]:
    mesh, native = _mesh_rows(quick), _native_rows(quick)
    label = "100k" if quick else "1M"
    mesh_bind = next(r for r in mesh if r["name"].startswith(f"bind {label} "))
    native_bind = next((r for r in native if r["name"].startswith(f"native: bind {label} ")),
                       None)
    if native_bind is not None:
        native.append({"name": f"native bind / mesh bind, {label} splats (same run)",
                       "value": native_bind["value"] / mesh_bind["value"], "unit": "×",
                       "goal": "<= 1.3", "note": "the cage takes the vertex groups the mesh "
                                                 "layout writes on itself"})
    return mesh + native


def _mesh_rows(quick: bool) -> list[dict]:
    import bpy

    from blender_gs_addon.extension import extension_module
    from blender_gs_addon.rigging import skinning
    from blender_gs_addon.splats import SplatSet

    rigging = extension_module("scene.rigging")
    humanoid = extension_module("scene.humanoid")
    so = extension_module("scene.splat_object")
    count = 100_000 if quick else 1_000_000
    label = f"{count / 1e6:g}M" if count >= 1e6 else f"{count // 1000}k"
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    rng = np.random.default_rng(0)
    s = SplatSet.empty(count, 0)
    s.positions = _figure(rng, count).astype(np.float32)
    obj = so.create_splat_object(s, name="figure", up_axis="+Z")
    for mod in list(obj.modifiers):  # measure rigging alone (no display modifier)
        obj.modifiers.remove(mod)
    rows = []

    arm = humanoid.create_metarig("rig")
    world = np.array(obj.matrix_world)
    humanoid.fit_metarig(arm, s.positions @ world[:3, :3].T + world[:3, 3], source="bench")
    names = [b.name for b in rigging.deform_bones(arm)]
    heads = np.array([arm.data.bones[n].head_local for n in names])
    tails = np.array([arm.data.bones[n].tail_local for n in names])
    wall, cpu = _timed(lambda: skinning.bone_weights(s.positions, heads, tails))
    rows.append({"name": f"automatic weights, {label} splats, {len(names)} bones (core)",
                 "value": wall, "unit": "s", "goal": "info", "note": f"CPU {cpu:.2f} s"})
    info = {}
    wall, cpu = _timed(lambda: info.update(rigging.bind_splats(obj, arm)))
    rows.append({"name": f"bind {label} splats (weights + vertex groups + modifiers)",
                 "value": wall, "unit": "s", "goal": "<= 3 s at 1M",
                 "note": f"CPU {cpu:.2f} s; {info['groups']:,} rotation groups"})

    pose = arm.pose.bones["forearm.L"]
    pose.rotation_mode = 'XYZ'
    rot_mod = obj.modifiers[rigging.ROTATION_MODIFIER]

    def evaluate(angle):
        pose.rotation_euler = (angle, 0.0, 0.0)
        bpy.context.view_layer.update()
        obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.vertices  # noqa: B018

    for label_mode, enabled in (("Armature modifier alone", False),
                                ("Armature + live rotation", True)):
        rot_mod.show_viewport = enabled
        evaluate(0.0)
        times = [_timed(lambda a=a: evaluate(a)) for a in np.linspace(0.2, 1.2, 5)]
        wall = float(np.median([t[0] for t in times]))
        cpu = float(np.median([t[1] for t in times]))
        rows.append({"name": f"pose change evaluation, {label} splats: {label_mode}",
                     "value": wall, "unit": "s",
                     "goal": "<= 0.3 s at 1M" if enabled else "info",
                     "note": f"median of 5; CPU {cpu:.2f} s"})
    rot_mod.show_viewport = True
    return rows


def _native_rows(quick: bool) -> list[dict]:
    import json
    import subprocess
    from pathlib import Path

    from bench_native_render import native_python

    python = native_python()
    if python is None:
        return [{"name": "native splats", "value": None, "unit": "", "goal": "",
                 "note": "skipped: no Python with bpy >= 5.3 (GS_BPY53_PYTHON or .venv313)"}]
    here = Path(__file__).resolve()
    proc = subprocess.run([python, str(here), "--native"] + (["--quick"] if quick else []),
                          capture_output=True, text=True, cwd=here.parent.parent)
    for line in proc.stdout.splitlines():
        if line.startswith("@@JSON@@"):
            return json.loads(line[len("@@JSON@@"):])
    tail = (proc.stderr or proc.stdout or f"exit {proc.returncode}").strip().splitlines()
    raise RuntimeError(f"native rigging benchmark ({python}): {tail[-1]}")


def native_run(quick: bool) -> list[dict]:
    """Runs under bpy >= 5.3: native bind and pose evaluation rows."""
    from blender_gs_addon.extension import load_extension

    load_extension().register()
    rows = []
    for count in (100_000,) if quick else (100_000, 1_000_000):
        rows += _native_rows_at(count)
    return rows


def _native_rows_at(count: int) -> list[dict]:
    import bpy

    from blender_gs_addon.extension import extension_module
    from blender_gs_addon.splats import SplatSet

    so = extension_module("scene.splat_object")
    humanoid = extension_module("scene.humanoid")
    label = f"{count / 1e6:g}M" if count >= 1e6 else f"{count // 1000}k"
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    rng = np.random.default_rng(0)
    s = SplatSet.empty(count, 3)
    s.positions = _figure(rng, count).astype(np.float32)
    s.sh_rest = rng.normal(0, 0.1, s.sh_rest.shape).astype(np.float32)
    obj = so.create_splat_object(s, name="figure", up_axis="+Z", layout="NATIVE")
    del s
    arm = humanoid.create_metarig("rig")
    humanoid.fit_metarig(arm, so.splat_positions(obj).astype(np.float64), source="bench")
    info = {}
    wall, cpu = _timed(lambda: info.update(
        extension_module("scene.rigging").bind_splats(obj, arm)))
    row = {"name": f"native: bind {label} splats SH3 (weights, cage, frames, GS Pose)",
           "value": wall, "unit": "s", "goal": "info (ratio below)",
           "note": f"CPU {cpu:.2f} s; {info['groups']:,} rotation groups; includes building "
                   "the node groups (once per file)"}
    return [row] + _native_pose_rows(bpy, obj, arm,
                                     extension_module("scene.native_pose_nodes"), label)


def _native_pose_rows(bpy, obj, arm, pose_nodes, label) -> list[dict]:
    pose = arm.pose.bones["forearm.L"]
    pose.rotation_mode = 'XYZ'
    mod = obj.modifiers["GS Pose"]
    full = mod.node_group

    def evaluate(angle):
        pose.rotation_euler = (angle, 0.0, 0.0)
        bpy.context.view_layer.update()
        obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.points  # noqa: B018

    rows = []
    for mode, tree in (("positions, rotations and SH bands", full),
                       ("positions and rotations, SH not turned",
                        pose_nodes.native_pose_node_group(0))):
        mod.node_group = tree
        evaluate(0.0)
        times = [_timed(lambda a=a: evaluate(a)) for a in np.linspace(0.2, 1.2, 5)]
        rows.append({"name": f"native: pose change evaluation, {label} splats SH3: {mode}",
                     "value": float(np.median([t[0] for t in times])), "unit": "s",
                     "goal": "info", "note": "median of 5; CPU "
                                             f"{float(np.median([t[1] for t in times])):.2f} s"})
    mod.node_group = full
    rows.append(_native_sh_error(bpy, obj, label))
    return rows


def _native_sh_error(bpy, obj, label) -> dict:
    """The posed SH bands Geometry Nodes wrote against numpy's float64 rotation of the rest
    bands by each splat's rotation delta (posed ⊗ rest⁻¹)."""
    from blender_gs_addon.extension import extension_module
    from blender_gs_addon.quaternions import quat_to_matrix
    from blender_gs_addon.sh import rotate_sh_rest

    so = extension_module("scene.splat_object")
    rest = so.read_stored_splats(obj)
    posed = so.evaluated_splats(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()))
    delta = quat_to_matrix(posed.rotations.astype(np.float64)) @ np.swapaxes(
        quat_to_matrix(rest.rotations.astype(np.float64)), -1, -2)
    expected = rotate_sh_rest(rest.sh_rest.astype(np.float64), delta)
    error = np.abs(posed.sh_rest - expected)  # [N, 15, 3]
    bands = ", ".join(f"band {b}: {error[:, s].max():.2g}" for b, s in
                      ((1, slice(0, 3)), (2, slice(3, 8)), (3, slice(8, 15))))
    turned = int((np.abs(posed.sh_rest - rest.sh_rest).max(axis=(1, 2)) > 1e-4).sum())
    return {"name": f"native: posed SH bands (Geometry Nodes, float32) vs numpy float64, "
                    f"{label} splats", "value": float(error.max()), "unit": "max abs",
            "goal": "<= 1e-5",
            "note": f"{bands}; coefficients N(0, 0.1), largest {np.abs(rest.sh_rest).max():.2f}; "
                    f"{turned:,} splats turned"}


if __name__ == "__main__":
    import json
    import sys

    if "--native" in sys.argv:
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        print("@@JSON@@" + json.dumps(native_run(quick="--quick" in sys.argv)))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
