"""Capture operators: render training views of the selection, import a data set's cameras.

``gs.capture_views`` reads its settings from ``scene.gs_capture`` (:class:`GS_PG_capture`; the
pointer is added by the registrar hook :func:`register_properties`) and calls
``scene/capture.py``. In the UI it is modal — one view per timer tick, progress in the window
manager's progress bar and the status bar, ESC cancels and restores — and in background mode
(or called with EXEC_DEFAULT) it runs synchronously and prints its progress.

``gs.import_camera_views`` turns a transforms*.json data set or a COLMAP sparse model into
Blender cameras with their images as backgrounds (``scene/camera_import.py``);
``gs.dataset_from_cameras`` goes the other way: scene cameras showing photos as background
images become a data set (``scene/camera_views_export.py``).

:func:`draw_capture_settings` draws the settings for a panel.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy_extras.io_utils import ImportHelper

from ..blender_gs_addon.capture.options import (
    DEFAULT_SAMPLES,
    RIGS,
    CaptureOptions,
    parse_elevations,
)
from ..blender_gs_addon.conventions.frames import UP_AXES
from ..blender_gs_addon.errors import GSError
from ..scene import camera_import, camera_views_export
from ..scene.capture import CaptureSession, capture_views, print_progress
from .reporting import ModalProgress, reports_gs_errors

__all__ = ["GS_PG_capture", "GS_OT_capture_views", "GS_OT_import_camera_views",
           "GS_OT_dataset_from_cameras",
           "draw_capture_settings", "register_properties",
           "unregister_properties", "CLASSES", "MENUS"]

_RIG_ITEMS = [
    ("orbit", "Orbit", RIGS["orbit"]),
    ("sphere", "Sphere", RIGS["sphere"]),
    ("lgm", "LGM", RIGS["lgm"]),
    ("cameras", "Scene Cameras", RIGS["cameras"]),
]
_ENGINE_ITEMS = [
    ("CYCLES", "Cycles", f"Path tracing (default {DEFAULT_SAMPLES['CYCLES']} samples)"),
    ("EEVEE", "EEVEE", f"Rasterised, fast on a GPU (default {DEFAULT_SAMPLES['EEVEE']} samples)"),
    ("WORKBENCH", "Workbench", "Viewport shading, fastest; looks as the scene's Workbench "
                               "settings say"),
]
_FILM_ITEMS = [
    ("AUTO", "Rig Default", "Transparent, except the LGM rig which renders on white"),
    ("TRANSPARENT", "Transparent", "RGBA images with the background left transparent"),
    ("BACKGROUND", "Background Colour", "Composite the renders onto a colour"),
]


def _path_options() -> set:
    """Newer Blender warns about "//" paths in properties that do not declare support for them;
    older Blender does not know the option."""
    if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties:
        return {'PATH_SUPPORTS_BLEND_RELATIVE'}
    return set()


_PATH_OPTIONS = _path_options()


class GS_PG_capture(bpy.types.PropertyGroup):
    """Capture settings of a scene (``scene.gs_capture``)."""

    rig: EnumProperty(name="Rig", items=_RIG_ITEMS, default="orbit",
                      description="Where the cameras are")
    views: IntProperty(name="Views", default=16, min=1, max=10_000,
                       description="Orbit: cameras per elevation ring; sphere: number of cameras")
    elevations: StringProperty(name="Elevations", default="0, 30",
                               description="Orbit rig: comma-separated elevations in degrees")
    radius: FloatProperty(name="Distance", default=0.0, min=0.0, soft_max=10.0,
                          description="Camera distance with the selection scaled into a unit "
                                      "cube (0: fit the selection into view)")
    fov: FloatProperty(name="Field of View", default=50.0, min=1.0, max=170.0,
                       description="Degrees across the larger image side")
    test_views: IntProperty(name="Test Views", default=0, min=0, max=10_000,
                            description="Held-out views written to transforms_test.json")
    resolution_x: IntProperty(name="Width", default=512, min=1, max=16384, subtype='PIXEL')
    resolution_y: IntProperty(name="Height", default=512, min=1, max=16384, subtype='PIXEL')
    reconstruct_dataset: StringProperty(
        name="Data Set", subtype='DIR_PATH', default="",
        description="Reconstruct this data set folder (transforms_*.json: a capture, photos, "
                    "a NeRF data set) instead of capturing the selection")
    use_scene_resolution: BoolProperty(
        name="Scene Resolution", default=True,
        description="Scene-camera rig: render at the scene's output resolution")
    engine: EnumProperty(name="Engine", items=_ENGINE_ITEMS, default="EEVEE")
    samples: IntProperty(name="Samples", default=0, min=0, max=65536,
                         description="Samples per pixel (0: the engine's default)")
    film: EnumProperty(name="Film", items=_FILM_ITEMS, default="AUTO")
    background: FloatVectorProperty(name="Background", subtype='COLOR', size=3, min=0.0,
                                    max=1.0, default=(1.0, 1.0, 1.0))
    camera_collection: PointerProperty(name="Cameras", type=bpy.types.Collection,
                                       description="Scene-camera rig: the cameras to render from")
    output_dir: StringProperty(name="Output", subtype='DIR_PATH', default="//gs_capture/",
                               description="Folder of the data set", options=_PATH_OPTIONS)

    def options(self) -> CaptureOptions:
        """The capture these settings ask for (GSError for elevations that do not parse)."""
        if self.rig == "lgm":
            resolution = self.resolution_x
        elif self.rig == "cameras" and self.use_scene_resolution:
            resolution = None
        else:
            resolution = (self.resolution_x, self.resolution_y)
        return CaptureOptions(
            rig=self.rig, views=self.views, elevations=parse_elevations(self.elevations),
            radius=self.radius or None, fov=None if self.rig == "lgm" else self.fov,
            test_views=self.test_views, resolution=resolution, engine=self.engine,
            samples=self.samples or None,
            transparent=None if self.film == "AUTO" else self.film == "TRANSPARENT",
            background=tuple(self.background) if self.film == "BACKGROUND" else None,
            camera_collection=self.camera_collection)

    def output_folder(self) -> str:
        """The absolute output folder (GSError when none is set, or when it is relative to a
        .blend file that is not saved)."""
        if not self.output_dir:
            raise GSError("choose an output folder for the capture")
        if self.output_dir.startswith("//") and not bpy.data.filepath:
            raise GSError("the output folder is relative to the .blend file, which is not "
                          "saved: save the file or choose an absolute folder")
        return bpy.path.abspath(self.output_dir)


# Events a running capture lets through, so the view can still be navigated between renders.
_PASS_THROUGH = frozenset({'MOUSEMOVE', 'INBETWEEN_MOUSEMOVE', 'WHEELUPMOUSE', 'WHEELDOWNMOUSE',
                           'MIDDLEMOUSE', 'TRACKPADPAN', 'TRACKPADZOOM', 'TIMER_REPORT',
                           'WINDOW_DEACTIVATE'})


class GS_OT_capture_views(ModalProgress, bpy.types.Operator):
    """Render views of the selected objects into a NeRF-style data set (transforms json + PNGs)"""

    bl_idname = "gs.capture_views"
    bl_label = "Capture Views"
    bl_options = {'REGISTER'}

    modal_timer_seconds = 0.01
    modal_cancel_message = "Capture cancelled; the scene and output folder are unchanged"
    modal_pass_through = _PASS_THROUGH
    _session: CaptureSession | None = None

    @classmethod
    def poll(cls, context):
        if context.scene is None or not hasattr(context.scene, "gs_capture"):
            return False
        if not context.selected_objects:
            cls.poll_message_set("Select the objects to capture")
            return False
        return True

    # ---------------------------------------------------------------- synchronous
    @reports_gs_errors
    def execute(self, context):
        settings = context.scene.gs_capture
        capture_views(context, options=settings.options(), out_dir=settings.output_folder(),
                      progress=print_progress if bpy.app.background else None,
                      report=self.report)
        return {'FINISHED'}

    # ---------------------------------------------------------------------- modal
    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        return self._start_modal(context)

    @reports_gs_errors
    def _start_modal(self, context):
        settings = context.scene.gs_capture
        self._session = CaptureSession(
            context.scene, objects=list(context.selected_objects), options=settings.options(),
            out_dir=settings.output_folder(), view_layer=context.view_layer, report=self.report)
        try:
            self._session.begin()
        except BaseException:
            self.end_modal(context)  # restores the scene
            raise
        return self.start_modal(context, total=max(1, self._session.total))

    def modal_step(self, context) -> bool:
        return self._session.step()

    def modal_status(self) -> str:
        return f"Capture: {self._session.message} — Esc to cancel"

    def modal_progress(self) -> float:
        return self._session.done

    def modal_update_ui(self, context) -> None:
        if context.area is not None:
            context.area.tag_redraw()

    def modal_finish(self, context) -> None:
        self._session.finish()  # reports where the data set went

    def modal_release(self, context) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class GS_OT_import_camera_views(bpy.types.Operator, ImportHelper):
    """Create cameras (with their images as backgrounds) for the views of a data set:
    transforms*.json (NeRF-synthetic / nerfstudio) or a COLMAP sparse model"""

    bl_idname = "gs.import_camera_views"
    bl_label = "Import Camera Views"
    bl_options = {'REGISTER', 'UNDO'}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json;*.bin;*.txt", options={'HIDDEN'})

    up_axis: EnumProperty(
        name="Up Axis",
        items=[("AUTO", "Auto", "transforms.json: Blender's world (+Z); COLMAP: −Y up")]
        + [(key, key, description) for key, description in UP_AXES.items()],
        default="AUTO",
        description="Up axis of the data set's world")
    use_normalisation: BoolProperty(
        name="Original Placement", default=True,
        description="Captured data sets: put the cameras back around the original object "
                    "(undo the stored normalisation)")
    set_resolution: BoolProperty(
        name="Set Render Size", default=True,
        description="Set the scene's render resolution to the views' so the cameras frame "
                    "like their images")
    show_images: BoolProperty(name="Background Images", default=True,
                              description="Show each view's image as its camera's background")
    split: EnumProperty(name="Views", default="ALL", items=[
        ("ALL", "All", "Every split"), ("train", "Train", "Training views only"),
        ("test", "Test", "Held-out views only")])

    @reports_gs_errors
    def execute(self, context):
        path = self.filepath
        if not os.path.exists(path):
            path = os.path.dirname(path) or path
        camera_import.import_camera_views(
            path, context=context, up_axis=self.up_axis,
            use_normalisation=self.use_normalisation, set_resolution=self.set_resolution,
            images=self.show_images, split=None if self.split == "ALL" else self.split,
            report=self.report)
        return {'FINISHED'}


class GS_OT_dataset_from_cameras(bpy.types.Operator):
    """Write a data set (transforms.json + images) from the scene's cameras that show photos as
    background images, ready for Reconstruct"""

    bl_idname = "gs.dataset_from_cameras"
    bl_label = "Data Set from Camera Photos"
    bl_options = {'REGISTER'}

    directory: StringProperty(name="Folder", subtype='DIR_PATH',
                              description="Empty folder to write the data set into")
    collection: StringProperty(name="Collection",
                               description="Cameras of this collection (empty: the whole scene)")
    frame_selected: BoolProperty(
        name="Frame Selected", default=True,
        description="Normalise around the selected objects; else around where the cameras look")
    test_views: IntProperty(name="Test Views", default=0, min=0,
                            description="Views held out for evaluation")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    @reports_gs_errors
    def execute(self, context):
        collection = None
        if self.collection:
            collection = bpy.data.collections.get(self.collection)
            if collection is None:
                raise GSError(f"no collection named {self.collection!r}")
        objects = [o for o in context.selected_objects if o.type != 'CAMERA'] \
            if self.frame_selected else None
        camera_views_export.dataset_from_cameras(
            scene=context.scene, out_dir=bpy.path.abspath(self.directory),
            collection=collection, objects=objects or None, test_views=self.test_views,
            report=self.report)
        return {'FINISHED'}


def draw_capture_settings(layout, props: GS_PG_capture, *, context=None) -> None:
    """Draw the capture settings and the Capture button (for a sidebar panel)."""
    col = layout.column()
    col.use_property_split = True
    col.use_property_decorate = False
    col.prop(props, "rig")
    if props.rig in ("orbit", "sphere"):
        col.prop(props, "views", text="Per Ring" if props.rig == "orbit" else "Views")
        if props.rig == "orbit":
            col.prop(props, "elevations")
        col.prop(props, "radius")
        col.prop(props, "fov")
    elif props.rig == "cameras":
        col.prop(props, "camera_collection")
    col.prop(props, "test_views")
    if props.rig == "cameras":
        col.prop(props, "use_scene_resolution")
    if props.rig == "lgm":
        col.prop(props, "resolution_x", text="Resolution")
    elif not (props.rig == "cameras" and props.use_scene_resolution):
        sub = col.column(align=True)
        sub.prop(props, "resolution_x", text="Resolution X")
        sub.prop(props, "resolution_y", text="Y")
    col.prop(props, "engine")
    col.prop(props, "samples")
    col.prop(props, "film")
    if props.film == "BACKGROUND":
        col.prop(props, "background")
    col.prop(props, "output_dir")
    layout.operator(GS_OT_capture_views.bl_idname, icon='RENDER_STILL')
    layout.operator(GS_OT_import_camera_views.bl_idname, icon='OUTLINER_OB_CAMERA')
    layout.operator(GS_OT_dataset_from_cameras.bl_idname, icon='IMAGE_BACKGROUND')


def menu_import(self, context):
    self.layout.operator(GS_OT_import_camera_views.bl_idname,
                         text="Camera Views (transforms.json / COLMAP)")


def register_properties() -> None:
    """Registrar hook: the settings pointer on every scene."""
    bpy.types.Scene.gs_capture = PointerProperty(type=GS_PG_capture)


def unregister_properties() -> None:
    if hasattr(bpy.types.Scene, "gs_capture"):
        del bpy.types.Scene.gs_capture


CLASSES = (GS_PG_capture, GS_OT_capture_views, GS_OT_import_camera_views,
           GS_OT_dataset_from_cameras)
MENUS = ((bpy.types.TOPBAR_MT_file_import, menu_import),)
