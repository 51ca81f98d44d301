"""CaptureOptions (blender_gs_addon/capture/options.py): validation names the bad field, the
command line's strings parse, and the panel, the command line and the Python API turn the same
settings into the same options.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import replace

import numpy as np
import pytest

from blender_gs_addon.capture.options import (
    CaptureOptionError,
    CaptureOptions,
    parse_background,
    parse_elevations,
    parse_resolution,
)
from blender_gs_addon.conventions.lgm_rig import LGM_FOVY_DEG, LGM_RADIUS
from blender_gs_addon.errors import GSError


def _quiet(levels, message):
    raise AssertionError(f"unexpected report: {message}")


# ---------------------------------------------------------------------------- validate
def test_defaults_validate_to_the_documented_values():
    options = CaptureOptions().validate(_quiet)
    assert options == CaptureOptions(
        rig="orbit", views=16, elevations=(0.0, 30.0), radius=None, fov=50.0, test_views=0,
        resolution=(512, 512), engine="EEVEE", samples=32, transparent=True, background=None)


def test_spellings_numbers_and_defaults_are_normalised():
    options = CaptureOptions(
        rig="SPHERE", engine="blender_workbench", views=np.int64(7), test_views=2.0,
        elevations=np.array([10, 20]), resolution=np.int32(64), fov=0, radius=0, samples=0,
        transparent=False, background=[0.25, 0.5, 1]).validate(_quiet)
    assert (options.rig, options.engine, options.samples) == ("sphere", "WORKBENCH", 8)
    assert options.views == 7 and type(options.views) is int and options.test_views == 2
    assert options.elevations == (10.0, 20.0) and options.resolution == (64, 64)
    assert options.fov == 50.0 and options.radius is None
    assert options.background == (0.25, 0.5, 1.0) and options.transparent is False
    assert CaptureOptions(engine="cycles").validate(_quiet).samples == 64
    assert CaptureOptions(elevations=15).validate(_quiet).elevations == (15.0,)
    # The background is only used without transparency; an opaque film defaults to white.
    assert CaptureOptions(background=(2.0, 0.0, 0.0)).validate(_quiet).background is None
    assert CaptureOptions(transparent=False).validate(_quiet).background == (1.0, 1.0, 1.0)


def test_validate_is_idempotent():
    for options in (CaptureOptions(rig="lgm", resolution=64, fov=30.0),
                    CaptureOptions(rig="orbit", resolution=(40, 30), samples=3, radius=2.0),
                    CaptureOptions(rig="cameras", test_views=1)):
        once = options.validate(lambda levels, message: None)
        assert once.validate(_quiet) == once


def test_lgm_rig_uses_its_own_lens_and_white_film():
    reports = []
    options = CaptureOptions(rig="lgm", resolution=64, fov=30.0, radius=2.0).validate(
        lambda levels, message: reports.append((levels, message)))
    assert (options.fov, options.radius) == (LGM_FOVY_DEG, LGM_RADIUS)
    assert options.transparent is False and options.background == (1.0, 1.0, 1.0)
    assert reports == [({'WARNING'}, "the LGM rig always uses radius 1.5 and a 49.1° field of "
                                     "view; the given radius / field of view are ignored")]
    # Nothing given, nothing ignored; a transparent LGM capture on request.
    options = CaptureOptions(rig="lgm", transparent=True).validate(_quiet)
    assert options.resolution == (512, 512) and options.transparent is True


def test_cameras_rig_keeps_the_scene_resolution():
    assert CaptureOptions(rig="cameras").validate(_quiet).resolution is None
    assert CaptureOptions(rig="cameras", resolution=(40, 30)).validate(_quiet).resolution == \
        (40, 30)


@pytest.mark.parametrize("field, value, message", [
    ("rig", "spiral", r"unknown capture rig 'spiral'; choose one of orbit, sphere, lgm, cameras"),
    ("engine", "POVRAY", r"unknown render engine 'POVRAY'; choose one of CYCLES, EEVEE, "),
    ("samples", -1, r"samples must be at least 1, got -1"),
    ("samples", 2.5, r"samples must be a whole number, got 2.5"),
    ("samples", "many", r"samples must be a whole number, got 'many'"),
    ("resolution", 0, r"resolution 0×0 is outside 1‥16384 pixels"),
    ("resolution", (64, 20000), r"resolution 64×20000 is outside 1‥16384 pixels"),
    ("resolution", (64,), r"resolution must be a whole number or \(width, height\), got \(64,\)"),
    ("resolution", (64.5, 32), r"resolution must be a whole number or \(width, height\)"),
    ("resolution", "48", r"resolution must be a whole number or \(width, height\), got '48'"),
    ("resolution", np.float64(64.0), r"resolution must be a whole number or \(width, height\)"),
    ("views", 0, r"views must be between 1 and 10000, got 0"),
    ("views", 10_001, r"views must be between 1 and 10000, got 10001"),
    ("views", "many", r"views must be a whole number, got 'many'"),
    ("test_views", -1, r"test views must be 0 or more, got -1"),
    ("test_views", 10_001, r"test views must be at most 10000, got 10001"),
    ("test_views", 1.5, r"test views must be a whole number, got 1.5"),
    ("elevations", (0.0, 100.0), r"elevations must be between −90 and 90 degrees, got "
                                 r"\[0.0, 100.0\]"),
    ("elevations", (), r"elevations must be between −90 and 90 degrees, got \[\]"),
    ("elevations", (float("nan"),), r"elevations must be between −90 and 90 degrees"),
    ("elevations", ("up",), r"elevations must be a number, got 'up'"),
    ("fov", 200, r"field of view must be between 0 and 180 degrees, got 200.0"),
    ("fov", -5, r"field of view must be between 0 and 180 degrees, got -5.0"),
    ("fov", "wide", r"field of view must be a number, got 'wide'"),
    ("radius", -1.0, r"camera distance must be a positive number, got -1.0"),
    ("radius", float("inf"), r"camera distance must be a positive number, got inf"),
    ("radius", "far", r"camera distance must be a number, got 'far'"),
    ("background", (2, 0, 0), r"background colour must be three numbers in 0‥1, got \(2, 0, 0\)"),
    ("background", (1.0, 1.0), r"background colour must be three numbers in 0‥1"),
    ("background", "red", r"background colour must be three numbers in 0‥1, got 'red'"),
])
def test_each_bad_field_is_named(field, value, message):
    options = CaptureOptions(**{field: value}, transparent=False)
    with pytest.raises(CaptureOptionError, match=message) as caught:
        options.validate(_quiet)
    assert caught.value.field == field and isinstance(caught.value, GSError)


def test_lgm_needs_a_square_and_other_rigs_skip_the_orbit_checks():
    with pytest.raises(CaptureOptionError, match=r"the LGM rig renders square views; got 64×32"
                       ) as caught:
        CaptureOptions(rig="lgm", resolution=(64, 32)).validate(_quiet)
    assert caught.value.field == "resolution"
    # Views and elevations only bound the orbit / sphere rigs that use them.
    assert CaptureOptions(rig="cameras", views=0, elevations=(100.0,)).validate(_quiet).views == 0


# -------------------------------------------------------------------------- command line
def test_command_line_strings_parse():
    assert parse_resolution("48x32") == (48, 32)
    assert parse_resolution("48×32") == (48, 32) and parse_resolution("64") == 64
    assert parse_resolution(None) is None and parse_resolution(64) == 64
    assert parse_elevations("0, 30") == (0.0, 30.0) and parse_elevations("-10;45") == (-10.0, 45.0)
    assert parse_elevations(" ") == (0.0,) and parse_elevations((5.0,)) == (5.0,)
    assert parse_background("0.25,0.5,1") == (False, (0.25, 0.5, 1.0))
    assert parse_background("Transparent") == (True, None)
    assert parse_background(None) == (None, None)


@pytest.mark.parametrize("parse, text, message", [
    (parse_resolution, "big", r"--flag must be N or WxH, got 'big'"),
    (parse_resolution, "4x4x4", r"--flag must be N or WxH, got '4x4x4'"),
    (parse_elevations, "0,high", r"--flag must be comma-separated degrees, got '0,high'"),
    (parse_background, "red", r"--flag must be r,g,b or 'transparent', got 'red'"),
])
def test_command_line_strings_that_do_not_parse_name_the_flag(parse, text, message):
    with pytest.raises(GSError, match=message):
        parse(text, name="--flag")


def test_command_line_options_equal_the_keyword_options():
    args = Namespace(rig="sphere", views=2, test_views=1, resolution="48x32", engine="WORKBENCH",
                     samples=None, elevations=None, radius=None, fov=30.0,
                     background="0.25,0.5,1", camera_collection=None, out="/tmp/x")
    assert CaptureOptions.from_command_line(args) == CaptureOptions(
        rig="sphere", views=2, test_views=1, resolution=(48, 32), engine="WORKBENCH",
        elevations=(20.0,), fov=30.0, transparent=False, background=(0.25, 0.5, 1.0))
    # Missing attributes take the defaults: one ring at 20° so --views N writes N views.
    assert CaptureOptions.from_command_line(Namespace()) == CaptureOptions(elevations=(20.0,))
    transparent = CaptureOptions.from_command_line(Namespace(background="transparent"))
    assert transparent.validate(_quiet).transparent is True
    with pytest.raises(GSError, match="--resolution must be N or WxH"):
        CaptureOptions.from_command_line(Namespace(resolution="wide"))


# ------------------------------------------------- the panel and the Python API agree (bpy)
def _panel_and_api_cases(bpy):
    cameras = bpy.data.collections.new("Rig")
    bpy.context.scene.collection.children.link(cameras)
    camera = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    cameras.objects.link(camera)
    camera.location = (0.0, -5.0, 0.0)
    return [  # (panel settings, capture_views keywords, capture command arguments)
        ({"rig": "orbit", "views": 5, "elevations": "10; 40", "fov": 60.0, "test_views": 2,
          "resolution_x": 40, "resolution_y": 30, "engine": "CYCLES", "film": "AUTO"},
         {"rig": "orbit", "views": 5, "elevations": (10, 40), "fov": 60, "test_views": 2,
          "resolution": (40, 30), "engine": "CYCLES"},
         {"rig": "orbit", "views": 5, "elevations": "10,40", "fov": 60.0, "test_views": 2,
          "resolution": "40x30", "engine": "CYCLES"}),
        ({"rig": "lgm", "resolution_x": 64, "resolution_y": 30, "engine": "WORKBENCH",
          "samples": 4, "film": "BACKGROUND", "background": (0.25, 0.5, 0.75)},
         {"rig": "lgm", "resolution": 64, "engine": "WORKBENCH", "samples": 4,
          "transparent": False, "background": (0.25, 0.5, 0.75)},
         {"rig": "lgm", "resolution": "64", "engine": "WORKBENCH", "samples": 4,
          "background": "0.25,0.5,0.75"}),
        ({"rig": "sphere", "views": 7, "radius": 2.5, "resolution_x": 33, "resolution_y": 17,
          "engine": "EEVEE", "samples": 3, "film": "TRANSPARENT"},
         {"rig": "sphere", "views": 7, "radius": 2.5, "resolution": (33, 17), "samples": 3,
          "transparent": True},
         {"rig": "sphere", "views": 7, "radius": 2.5, "resolution": "33x17", "samples": 3,
          "background": "transparent"}),
        ({"rig": "cameras", "use_scene_resolution": True, "camera_collection": cameras,
          "test_views": 0, "engine": "EEVEE", "film": "AUTO"},
         {"rig": "cameras", "camera_collection": cameras},
         {"rig": "cameras", "camera_collection": "Rig"}),
    ]


@pytest.mark.bpy
def test_panel_command_line_and_python_api_give_the_same_options(blender, gs_extension,
                                                                 monkeypatch, tmp_path):
    from gaussian_splats.operators.reconstruct import scene_capture_options
    from gaussian_splats.scene import capture

    bpy = blender
    bpy.ops.mesh.primitive_cube_add()  # selected: the operator's poll wants a selection
    seen = []

    def record_and_stop(session):
        seen.append(session.options)
        raise GSError("stopped before rendering")

    monkeypatch.setattr(capture.CaptureSession, "begin", record_and_stop)
    settings = bpy.context.scene.gs_capture
    settings.output_dir = str(tmp_path / "out")
    for panel, keywords, command_line in _panel_and_api_cases(bpy):
        defaults = type(settings).bl_rna.properties
        for name in ("views", "radius", "fov", "test_views", "samples", "elevations"):
            setattr(settings, name, defaults[name].default)
        for name, value in panel.items():
            setattr(settings, name, value)
        with pytest.raises(RuntimeError, match="stopped before rendering"):
            bpy.ops.gs.capture_views()
        with pytest.raises(GSError, match="stopped before rendering"):
            capture.capture_views(bpy.context, out_dir=tmp_path / "api", **keywords)
        from_panel, from_api = seen[-2:]
        assert from_panel == from_api, panel
        assert scene_capture_options(bpy.context.scene).validate() == from_api
        args = Namespace(**command_line)
        if "elevations" not in command_line:  # the command line's default is one ring at 20°
            args.elevations = ",".join(str(e) for e in from_api.elevations)
        command = CaptureOptions.from_command_line(args)
        if isinstance(command.camera_collection, str):  # a name on the command line
            command = replace(command,
                              camera_collection=bpy.data.collections[command.camera_collection])
        assert command.validate() == from_api, command_line
    assert len(seen) == 8
