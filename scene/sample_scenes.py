"""Built-in sample scenes, generated procedurally (no files): subjects for capture demos and tests.

``build_sample_scene("toy")`` adds a small toy robot (≈0.7 × 0.5 × 1.4 Blender units, standing on
z = 0) made of bevelled boxes, cylinders and spheres with procedural checker / noise / wave
materials (no emission, no image textures), a sun and a world light. Front, back and sides all
differ (face and chest on −Y, a backpack on +Y, arms on ±X) so every capture view carries
information. Everything is built from bmesh and the data API (no operators, no randomness), so
two builds are identical.

Materials also carry a viewport colour (``diffuse_color``), so Workbench renders of the sample
(colour type "Material") look like the Cycles / EEVEE ones.
"""

from __future__ import annotations

import math

import bmesh
import bpy
import numpy as np
from mathutils import Matrix, Vector

from ..blender_gs_addon.errors import GSError
from .display.nodes import NodeBuilder

__all__ = ["SAMPLE_SCENES", "build_sample_scene"]

SAMPLE_SCENES = {
    "toy": "a textured toy robot from primitives with checker / noise / wave materials, "
           "lit by a sun and a world light",
}


def build_sample_scene(name: str, *, scene: bpy.types.Scene | None = None,
                       set_world: bool = True) -> list[bpy.types.Object]:
    """Add the built-in sample ``name`` to ``scene`` (default: the context's scene).

    The objects go into a new collection "GS Sample <name>" under the scene's master collection;
    with ``set_world`` the scene gets the sample's world (a soft grey environment light) and
    Workbench's colour type "Material". Returns the subject objects (what a capture should
    select), not the lights.
    """
    if name not in SAMPLE_SCENES:
        raise GSError(f"unknown sample scene {name!r}; available: {', '.join(SAMPLE_SCENES)}")
    scene = scene or bpy.context.scene
    collection = bpy.data.collections.new(f"GS Sample {name}")
    scene.collection.children.link(collection)
    subjects = _build_toy(collection)
    _add_lights(collection, name)
    if set_world:
        scene.world = _sample_world(name)
        scene.display.shading.color_type = 'MATERIAL'
        scene.display.shading.light = 'STUDIO'
    return subjects


# ------------------------------------------------------------------------------------ meshes
def _box(bm: bmesh.types.BMesh, size, center, bevel: float) -> None:
    geom = bmesh.ops.create_cube(bm, size=1.0)["verts"]
    bmesh.ops.scale(bm, vec=Vector(size), verts=geom)
    bmesh.ops.translate(bm, vec=Vector(center), verts=geom)
    if bevel > 0:
        # Insertion-ordered de-duplication: a set's order would follow memory addresses and
        # make the bevel's vertex order (and so the mesh) differ between builds.
        edges = list(dict.fromkeys(e for v in geom for e in v.link_edges))
        bmesh.ops.bevel(bm, geom=edges, offset=bevel, segments=3, profile=0.5, affect='EDGES',
                        clamp_overlap=True)


def _cylinder(bm, radius: float, depth: float, matrix: Matrix, segments: int = 24) -> None:
    bmesh.ops.create_cone(bm, cap_ends=True, segments=segments, radius1=radius, radius2=radius,
                          depth=depth, matrix=matrix)


def _sphere(bm, radius: float, center, segments: int = 24) -> None:
    bmesh.ops.create_uvsphere(bm, u_segments=segments, v_segments=segments // 2, radius=radius,
                              matrix=Matrix.Translation(Vector(center)))


def _sort_by_position(sequence, position) -> None:
    sequence.index_update()
    xyz = np.round(np.array([tuple(position(e)) for e in sequence], dtype=np.float64), 6)
    order = np.lexsort((xyz[:, 0], xyz[:, 1], xyz[:, 2]))  # [N] z, then y, then x
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    sequence.sort(key=lambda e: int(rank[e.index]))


def _mesh_object(name: str, build, material, collection) -> bpy.types.Object:
    bm = bmesh.new()
    try:
        build(bm)
        # bmesh's bevel orders its new elements by memory address in places: sort vertices and
        # faces by position so that every build yields the same mesh, element for element.
        _sort_by_position(bm.verts, lambda v: v.co)
        _sort_by_position(bm.faces, lambda f: f.calc_center_median())
        mesh = bpy.data.meshes.new(name)
        bm.to_mesh(mesh)
    finally:
        bm.free()
    mesh.shade_smooth()
    mesh.set_sharp_from_angle(angle=math.radians(40.0))
    mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    return obj


# --------------------------------------------------------------------------------- materials
def _principled_material(name: str, viewport_rgb, roughness: float = 0.5,
                         metallic: float = 0.0) -> tuple[bpy.types.Material, object]:
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5 makes node trees on request
        mat.use_nodes = True
    mat.diffuse_color = (*viewport_rgb, 1.0)
    mat.roughness = roughness
    mat.metallic = metallic
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Base Color"].default_value = (*viewport_rgb, 1.0)
    return mat, bsdf


def _texture_coordinates(g: NodeBuilder, scale: float):
    """Object coordinates × ``scale``: the texture space of every sample material."""
    coords = g.node("ShaderNodeTexCoord").outputs["Object"]
    return g.node("ShaderNodeMapping", [("Vector", coords),
                                        ("Scale", (scale, scale, scale))]).outputs["Vector"]


def _two_colour_ramp(g: NodeBuilder, fac, low, high, positions=(0.0, 1.0)):
    ramp = g.node("ShaderNodeValToRGB", [("Fac", fac)])
    for element, colour, position in zip(ramp.color_ramp.elements, (low, high), positions):
        element.position, element.color = position, (*colour, 1.0)
    return ramp.outputs["Color"]


def _checker_material(name, colour1, colour2, scale: float) -> bpy.types.Material:
    """Checker of two colours, its edges broken up by noise, with noise-varied roughness."""
    mat, bsdf = _principled_material(name, [(a + b) / 2 for a, b in zip(colour1, colour2)])
    g = NodeBuilder(mat.node_tree)
    vector = _texture_coordinates(g, scale)
    noise = g.node("ShaderNodeTexNoise", [("Vector", vector), ("Scale", 3.0), ("Detail", 4.0)])
    warp = g.node("ShaderNodeMix", [("Factor", 0.08), ("A", vector),
                                    ("B", noise.outputs["Color"])], data_type='VECTOR')
    checker = g.node("ShaderNodeTexChecker", [("Vector", warp.outputs["Result"]), ("Scale", 1.0),
                                              ("Color1", (*colour1, 1.0)),
                                              ("Color2", (*colour2, 1.0))])
    g.feed(bsdf.inputs["Base Color"], checker.outputs["Color"])
    rough = g.node("ShaderNodeMapRange", [("Value", noise.outputs["Fac"]), ("To Min", 0.25),
                                          ("To Max", 0.7)])
    g.feed(bsdf.inputs["Roughness"], rough.outputs["Result"])
    return mat


def _noise_material(name, colour_low, colour_high, scale: float) -> bpy.types.Material:
    """Mottled paint: noise through a two-colour ramp."""
    mat, bsdf = _principled_material(name, [(a + b) / 2 for a, b in zip(colour_low, colour_high)],
                                     roughness=0.45)
    g = NodeBuilder(mat.node_tree)
    noise = g.node("ShaderNodeTexNoise", [("Vector", _texture_coordinates(g, scale)),
                                          ("Scale", 4.0), ("Detail", 6.0)])
    g.feed(bsdf.inputs["Base Color"], _two_colour_ramp(
        g, noise.outputs["Fac"], colour_low, colour_high, positions=(0.35, 0.65)))
    return mat


def _stripe_material(name, colour1, colour2, scale: float) -> bpy.types.Material:
    """Brushed-metal stripes: a wave texture along Z through a two-colour ramp, metallic."""
    mat, bsdf = _principled_material(name, [(a + b) / 2 for a, b in zip(colour1, colour2)],
                                     roughness=0.35, metallic=0.6)
    g = NodeBuilder(mat.node_tree)
    wave = g.node("ShaderNodeTexWave", [("Vector", _texture_coordinates(g, scale)),
                                        ("Distortion", 2.0)],
                  wave_type='BANDS', bands_direction='Z')
    g.feed(bsdf.inputs["Base Color"], _two_colour_ramp(g, wave.outputs["Fac"], colour1, colour2))
    return mat


# -------------------------------------------------------------------------------------- toy
def _build_toy(collection) -> list[bpy.types.Object]:
    body_mat = _checker_material("GS Toy Body", (0.08, 0.22, 0.75), (0.9, 0.88, 0.8), 6.0)
    head_mat = _noise_material("GS Toy Head", (0.95, 0.45, 0.08), (0.98, 0.8, 0.25), 3.0)
    metal_mat = _stripe_material("GS Toy Metal", (0.25, 0.27, 0.3), (0.75, 0.77, 0.8), 2.5)
    eye_mat, _ = _principled_material("GS Toy Eye", (0.02, 0.02, 0.025), roughness=0.1)
    accent_mat = _checker_material("GS Toy Accent", (0.8, 0.05, 0.05), (0.35, 0.0, 0.02), 14.0)
    pack_mat = _noise_material("GS Toy Backpack", (0.1, 0.45, 0.15), (0.55, 0.8, 0.3), 5.0)

    def legs(bm):
        for x in (-0.14, 0.14):
            _cylinder(bm, 0.075, 0.28, Matrix.Translation((x, 0.0, 0.2)))
            _box(bm, (0.16, 0.24, 0.07), (x, -0.03, 0.035), 0.02)

    def body(bm):
        _box(bm, (0.5, 0.34, 0.48), (0.0, 0.0, 0.58), 0.05)

    def arms(bm):
        for side in (-1.0, 1.0):
            # Upper arm hangs outwards and slightly forwards from the shoulder.
            tilt = Matrix.Rotation(side * math.radians(25.0), 4, 'Y')
            forward = Matrix.Rotation(math.radians(-15.0), 4, 'X')
            place = Matrix.Translation((side * 0.34, 0.0, 0.62)) @ forward @ tilt
            _cylinder(bm, 0.05, 0.36, place)
            hand = place @ Vector((0.0, 0.0, -0.2))
            _sphere(bm, 0.075, hand, 16)
            _sphere(bm, 0.07, (side * 0.27, 0.0, 0.78), 16)  # shoulder joint

    def head(bm):
        _box(bm, (0.38, 0.32, 0.3), (0.0, 0.0, 1.0), 0.06)
        _cylinder(bm, 0.05, 0.06, Matrix.Translation((0.0, 0.0, 0.835)))  # neck

    def eyes(bm):
        for x in (-0.08, 0.08):
            _sphere(bm, 0.045, (x, -0.155, 1.03), 16)
        _box(bm, (0.16, 0.02, 0.035), (0.0, -0.16, 0.93), 0.0)  # mouth

    def antenna(bm):
        _cylinder(bm, 0.012, 0.2, Matrix.Translation((0.06, 0.0, 1.24)), 12)
        _sphere(bm, 0.04, (0.06, 0.0, 1.36), 16)

    def chest(bm):
        _cylinder(bm, 0.07, 0.03, Matrix.Translation((0.0, -0.17, 0.62))
                  @ Matrix.Rotation(math.radians(90.0), 4, 'X'))
        for i, z in enumerate((0.46, 0.5)):
            _box(bm, (0.06 + 0.04 * i, 0.02, 0.025), (0.12, -0.17, z), 0.0)

    def backpack(bm):
        _box(bm, (0.36, 0.12, 0.34), (0.0, 0.22, 0.6), 0.04)
        for x in (-0.1, 0.1):
            _cylinder(bm, 0.035, 0.1, Matrix.Translation((x, 0.25, 0.8)), 12)

    parts = [
        ("GS Toy Legs", legs, metal_mat),
        ("GS Toy Body", body, body_mat),
        ("GS Toy Arms", arms, metal_mat),
        ("GS Toy Head", head, head_mat),
        ("GS Toy Eyes", eyes, eye_mat),
        ("GS Toy Antenna", antenna, accent_mat),
        ("GS Toy Chest", chest, accent_mat),
        ("GS Toy Backpack", backpack, pack_mat),
    ]
    return [_mesh_object(name, build, mat, collection) for name, build, mat in parts]


# ------------------------------------------------------------------------------- lights/world
def _add_lights(collection, name: str) -> None:
    sun = bpy.data.lights.new(f"GS Sample {name} Sun", 'SUN')
    sun.energy = 3.0
    sun.angle = math.radians(8.0)
    sun_obj = bpy.data.objects.new(sun.name, sun)
    # From the front-left, above: every side view still sees a lit and a shaded face.
    sun_obj.rotation_euler = (math.radians(50.0), 0.0, math.radians(-35.0))
    collection.objects.link(sun_obj)


def _sample_world(name: str) -> bpy.types.World:
    world = bpy.data.worlds.new(f"GS Sample {name} World")
    if world.node_tree is None:
        world.use_nodes = True
    background = world.node_tree.nodes.get("Background")
    background.inputs["Color"].default_value = (0.35, 0.38, 0.42, 1.0)
    background.inputs["Strength"].default_value = 1.0
    world.color = (0.35, 0.38, 0.42)
    return world
