"""The command-line contract of rigging: ``rig`` (armature or humanoid template) and ``bake``.

Input .blend files are made the way a user would: the CLI ``import`` of a .ply, then (for the
armature case) a small bpy script that adds a two-bone armature with a keyed bend.
"""

import importlib.util
import json

import numpy as np
import pytest
from cli_runner import ROOT
from cli_runner import run_cli as cli
from cli_runner import run_script as blender_script

from blender_gs_addon.formats import read_splats, write_splats
from blender_gs_addon.splats import SplatSet

pytestmark = [
    pytest.mark.bpy,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module"),
]

COUNT = 2000


# Adds armature "Arm" (upper 0→1, lower 1→2 along +Z) to the open file; "lower" is keyed
# straight at frame 1 and bent 90° about +X at frame 2.
ADD_ARMATURE = r'''
import math, sys
import bpy
src, dst = sys.argv[1:3]
bpy.ops.wm.open_mainfile(filepath=src)
data = bpy.data.armatures.new("Arm")
arm = bpy.data.objects.new("Arm", data)
bpy.context.scene.collection.objects.link(arm)
bpy.context.view_layer.objects.active = arm
with bpy.context.temp_override(active_object=arm, object=arm, selected_objects=[arm]):
    bpy.ops.object.mode_set(mode="EDIT")
    upper, lower = data.edit_bones.new("upper"), data.edit_bones.new("lower")
    upper.head, upper.tail, lower.head, lower.tail = (0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 2)
    lower.parent, lower.use_connect = upper, True
    bpy.ops.object.mode_set(mode="OBJECT")
pb = arm.pose.bones["lower"]
pb.rotation_mode = "XYZ"
for frame, angle in ((1, 0.0), (2, math.pi / 2)):
    pb.rotation_euler = (angle, 0, 0)
    pb.keyframe_insert("rotation_euler", frame=frame)
bpy.ops.wm.save_as_mainfile(filepath=dst)
'''

# Opens a rigged file, reports its binding and how far the left hand's splats move when the
# left upper arm is raised (a pose edit, no frame change).
CHECK_HUMANOID = r'''
import json, math, sys
sys.path.insert(0, sys.argv[1])
import bpy
import numpy as np
from blender_gs_addon.extension import extension_module, load_extension
load_extension().register()
rig = extension_module("scene.rigging")
bpy.ops.wm.open_mainfile(filepath=sys.argv[2])
obj = bpy.data.objects["Person"]
arm = bpy.data.objects[obj["gs_armature"]]
rest = extension_module("scene.splat_object").splat_positions(obj)
pb = arm.pose.bones["upper_arm.L"]
pb.rotation_mode = "XYZ"
pb.rotation_euler = (0, 0, math.pi / 3)
moved = np.linalg.norm(rig.evaluated_splats(obj)[0] - rest, axis=1)
print(json.dumps({
    "armature": arm.name, "type": arm.type, "modifiers": [m.name for m in obj.modifiers],
    "layout": extension_module("scene.splat_object").splat_layout(obj),
    "deform_bones": sum(b.use_deform for b in arm.data.bones),
    "left_hand_moved": float(moved[rest[:, 0] > 0.75].min()),
    "right_arm_moved": float(moved[rest[:, 0] < -0.4].max()),
}))
'''


def _ply(path, positions, rng, degree=1):
    splats = SplatSet.empty(len(positions), degree)
    splats.positions = positions.astype(np.float32)
    q = rng.normal(size=(len(positions), 4))
    splats.rotations = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    splats.sh_rest = rng.normal(size=splats.sh_rest.shape).astype(np.float32)
    write_splats(path, splats)
    return splats


@pytest.fixture(scope="module")
def limb_blend(tmp_path_factory):
    """(in.blend with splat object "Limb" and armature "Arm", the limb's splats)."""
    folder = tmp_path_factory.mktemp("cli_rig")
    rng = np.random.default_rng(3)
    z, phi = rng.uniform(0, 2, COUNT), rng.uniform(0, 2 * np.pi, COUNT)
    r = 0.1 * rng.uniform(0.9, 1.0, COUNT)
    splats = _ply(folder / "limb.ply", np.stack([r * np.cos(phi), r * np.sin(phi), z], 1), rng)
    # +Z: the file frame is Blender's, so baked files compare directly with the input
    cli("import", folder / "limb.ply", "--blend", folder / "limb.blend", "--name", "Limb",
        "--up-axis", "+Z")
    blender_script(ADD_ARMATURE, folder / "limb.blend", folder / "in.blend")
    return folder / "in.blend", splats


def test_rig_with_armature_then_bake(limb_blend, tmp_path):
    blend, splats = limb_blend
    out = tmp_path / "rigged.blend"
    proc = cli("rig", "--blend", blend, "--object", "Limb", "--armature", "Arm", "--out", out)
    assert out.is_file()
    assert f"Bound {COUNT:,} splats to 2 bones of 'Arm'" in proc.stdout
    assert "'Limb' bound to 'Arm'" in proc.stdout

    frames = tmp_path / "frames"
    proc = cli("bake", "--blend", out, "--object", "Limb", "--frames", "1:2", "--out", frames)
    assert sorted(p.name for p in frames.iterdir()) == ["Limb_0001.ply", "Limb_0002.ply"]
    rest, bent = read_splats(frames / "Limb_0001.ply"), read_splats(frames / "Limb_0002.ply")
    assert rest.count == bent.count == COUNT
    assert f"Baked 2 frames of {COUNT:,} splats" in proc.stdout
    np.testing.assert_allclose(rest.positions, splats.positions, atol=1e-5)
    # frame 2: the lower half swung 90° about +X round the joint (0, 0, 1), the root stayed
    p = splats.positions
    root, tip = p[:, 2] < 0.6, p[:, 2] > 1.6
    np.testing.assert_allclose(bent.positions[root], p[root], atol=1e-5)
    turn = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0.0]])
    expected = (p[tip] - [0, 0, 1]) @ turn.T + [0, 0, 1]
    assert np.median(np.linalg.norm(bent.positions[tip] - expected, axis=1)) < 1e-3
    assert np.abs(bent.positions - rest.positions).max() > 0.8
    # rotations and SH bands went with the pose; scales stayed
    assert np.abs(np.abs((bent.rotations[tip] * rest.rotations[tip]).sum(1)) - 1).max() > 0.1
    assert np.abs(bent.sh_rest[tip] - rest.sh_rest[tip]).max() > 0.1
    np.testing.assert_array_equal(bent.log_scales, rest.log_scales)


def test_rig_template_humanoid(tmp_path):
    from test_skinning import human_figure

    rng = np.random.default_rng(11)
    pts, _ = human_figure(rng, pose="T", count=15000)
    _ply(tmp_path / "person.ply", pts, rng, degree=0)
    cli("import", tmp_path / "person.ply", "--blend", tmp_path / "person.blend", "--name",
        "Person", "--up-axis", "+Z")
    out = tmp_path / "rigged.blend"
    proc = cli("rig", "--blend", tmp_path / "person.blend", "--object", "Person",
               "--template", "humanoid", "--out", out)
    assert "Rigged 'Person' as a humanoid (T-pose input)" in proc.stdout
    assert "'Person' bound to 'Person rig'" in proc.stdout
    check = json.loads(blender_script(CHECK_HUMANOID, ROOT, out).strip().splitlines()[-1])
    assert check["armature"] == "Person rig" and check["type"] == "ARMATURE"
    # The mesh layout is posed by its Armature and rotation modifiers; native splats (5.3+)
    # by one Geometry Nodes modifier reading the hidden cage.
    assert check["modifiers"][:2] == {"MESH": ["GS Armature", "GS Rotation"],
                                      "NATIVE": ["GS Pose"]}[check["layout"]]
    assert check["deform_bones"] >= 20
    assert check["left_hand_moved"] > 0.1 and check["right_arm_moved"] < 1e-5


@pytest.mark.parametrize(
    "args, words",
    [
        (["rig", "--blend", "{blend}", "--object", "Nope", "--armature", "Arm", "--out",
          "{tmp}/o.blend"], "no object named 'Nope'"),
        (["rig", "--blend", "{blend}", "--object", "Limb", "--armature", "Limb", "--out",
          "{tmp}/o.blend"], "needs an armature object, got a "),  # mesh or point cloud
        (["rig", "--blend", "{tmp}/missing.blend", "--object", "Limb", "--armature", "Arm",
          "--out", "{tmp}/o.blend"], "no such .blend"),
        (["bake", "--blend", "{blend}", "--object", "Nope", "--frames", "1:2", "--out",
          "{tmp}/f"], "no object named 'Nope'"),
        (["bake", "--blend", "{blend}", "--object", "Limb", "--frames", "3-4", "--out",
          "{tmp}/f"], "frames must be A:B"),
        (["bake", "--blend", "{blend}", "--object", "Limb", "--frames", "5:2", "--out",
          "{tmp}/f"], "is empty"),
    ],
)
def test_rig_and_bake_errors_are_one_line(limb_blend, tmp_path, args, words):
    blend, _ = limb_blend
    proc = cli(*[a.format(blend=blend, tmp=tmp_path) for a in args], check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.blend").exists() and not (tmp_path / "f").exists()
