"""A textured object rendered from known cameras, posing as photos (pose recovery tests and the
poses benchmark).

The .blend is built by bpy in a subprocess: a box, a sphere and a cylinder, each with its own
image texture of multi-scale colour noise (SIFT finds plenty of blobs in it; no two objects
share texture, so no feature repeats), shown by Workbench with texture colour and flat light
(the colour does not change with the view, as a matte object's would not). The views are
rendered by the ``capture`` command (transparent film), then composited over a grey background
as the "photos", with the film's alpha as the masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cli_runner import run_cli, run_script
from PIL import Image

BACKGROUND = (0.5, 0.5, 0.5)

_BUILD = r'''
import sys
import bpy
import numpy as np
from PIL import Image


def texture(name, seed, size=512):
    rng = np.random.default_rng(seed)
    acc = np.zeros((size, size, 3), np.float32)
    for cells, weight in ((4, 1.0), (8, 0.8), (16, 0.7), (32, 0.6), (64, 0.5)):
        small = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
        up = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        acc += weight * (np.asarray(up, np.float32) / 255.0 - 0.5)
    acc = np.clip(acc / np.abs(acc).max() * 0.8 + 0.5, 0.0, 1.0)
    image = bpy.data.images.new(name, size, size)
    rgba = np.concatenate([acc, np.ones((size, size, 1), np.float32)], -1)[::-1]
    image.pixels.foreach_set(rgba.ravel())
    image.pack()
    return image


def material(name, image):
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    node = nodes.new("ShaderNodeTexImage")
    node.image = image
    nodes.active = node
    mat.node_tree.links.new(node.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    return mat


bpy.ops.wm.read_homefile(use_factory_startup=True, use_empty=True, app_template="")
bpy.ops.mesh.primitive_cube_add(size=0.7, location=(0, 0, 0.35), calc_uvs=True)
cube = bpy.context.object
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.28, location=(0.1, 0.05, 0.95), calc_uvs=True)
sphere = bpy.context.object
bpy.ops.mesh.primitive_cylinder_add(radius=0.12, depth=0.6, location=(0.45, -0.1, 0.3),
                                    calc_uvs=True)
cylinder = bpy.context.object
for i, obj in enumerate((cube, sphere, cylinder)):
    obj.data.materials.append(material(f"Photo subject {i}", texture(f"Photo texture {i}", i)))
    obj.select_set(True)
shading = bpy.context.scene.display.shading
shading.light = 'FLAT'
shading.color_type = 'TEXTURE'
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1])
'''


def render_subject(folder: Path, *, views_per_ring: int, resolution: int,
                   elevations: str = "-15,15,45") -> Path:
    """Render the subject from ``views_per_ring`` orbit cameras on each of three rings into
    the capture data set ``folder/capture`` (transparent film); returns that folder."""
    folder.mkdir(parents=True, exist_ok=True)
    blend = folder / "subject.blend"
    run_script(_BUILD, blend)
    capture = folder / "capture"
    run_cli("capture", "--blend", blend, "--rig", "orbit", "--views", views_per_ring,
            f"--elevations={elevations}", "--resolution", resolution, "--engine", "WORKBENCH",
            "--background", "transparent", "--out", capture)
    return capture


def photos_from_capture(dataset, photos: Path, masks: Path | None = None) -> list[str]:
    """Composite every view of ``dataset`` over :data:`BACKGROUND` into ``photos`` (PNG, named
    after the views) and, with ``masks``, write the alpha there; the photo names."""
    from blender_gs_addon.datasets.camera_views import (
        composite_on_background,
        load_view_image,
    )

    photos.mkdir(parents=True, exist_ok=True)
    if masks is not None:
        masks.mkdir(parents=True, exist_ok=True)
    names = []
    for view in dataset.views:
        rgba = load_view_image(view)
        rgb = composite_on_background(rgba, BACKGROUND)
        name = f"{Path(view.name).name}.png"
        Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(photos / name)
        if masks is not None:
            alpha = (rgba[..., 3] * 255 + 0.5).astype(np.uint8)
            Image.fromarray(alpha).save(masks / name)
        names.append(name)
    return names
