"""File > Import/Export operators for splat files, and the drag-and-drop file handler.

Thin wrappers: execute() gathers the options with ``as_keywords`` and makes one call into
``scene/splat_object.py`` with ``report=self.report``; a GSError becomes an ERROR report and
{'CANCELLED'} (and the scene is left as it was).
"""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..blender_gs_addon.axes import UP_AXES
from ..blender_gs_addon.errors import GSError
from ..blender_gs_addon.object_layout import UP_AXIS_PROP
from ..scene import splat_object

__all__ = ["GS_OT_import_splats", "GS_OT_export_splats", "GS_FH_splats", "CLASSES", "MENUS"]

MENU_LABEL = "Gaussian Splats (.ply/.splat/.spz/.glb/.sog)"
# What the import dialog lists and what can be dropped on the viewport (an unbundled SOG is
# opened through its meta.json, which is only offered in the dialog: every .json is no splat).
IMPORT_GLOB = "*.ply;*.splat;*.spz;*.glb;*.gltf;*.sog;*meta.json"
DROP_EXTENSIONS = ".ply;.splat;.spz;.glb;.gltf;.sog"

_UP_AXIS_ITEMS = [(key, key, description) for key, description in UP_AXES.items()]

# format key → (file extension, label, description)
_EXPORT_FORMATS = {
    "ply": (".ply", "PLY (3DGS)", "INRIA 3DGS binary .ply: lossless, every SH band"),
    "compressed_ply": (".compressed.ply", "Compressed PLY",
                       "PlayCanvas / SuperSplat compressed .ply: about 4x smaller, lossy"),
    "splat": (".splat", "SPLAT", "antimatter15 .splat: 32 bytes per splat, no SH bands"),
    "spz": (".spz", "SPZ", "Niantic .spz: gzip-compressed, lossy"),
    "gltf": (".glb", "glTF Binary (KHR_gaussian_splatting)",
             "glTF 2.0 with the Khronos Gaussian splat extension: float data, every SH band"),
    "sog": (".sog", "SOG (PlayCanvas)",
            "PlayCanvas SOG: WebP images in a zip, about 15x smaller than .ply, lossy"),
}


def _up_axis_property(description: str):
    return EnumProperty(name="Up Axis", description=description, items=_UP_AXIS_ITEMS,
                        default="-Y")


class GS_OT_import_splats(bpy.types.Operator, ImportHelper):
    """Import Gaussian splat files (3DGS .ply, compressed .ply, .splat, .spz, glTF, SOG)"""

    bl_idname = "gs.import_splats"
    bl_label = "Import Gaussian Splats"
    bl_options = {'REGISTER', 'UNDO'}

    filename_ext = ".ply"
    filter_glob: StringProperty(default=IMPORT_GLOB, options={'HIDDEN'})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement,
                              options={'HIDDEN', 'SKIP_PRESET'})
    directory: StringProperty(subtype='DIR_PATH', options={'HIDDEN', 'SKIP_PRESET'})

    up_axis: _up_axis_property("Up axis of the file; the object is rotated so it shows upright "
                               "(3DGS files are −Y up)")
    nonfinite: EnumProperty(
        name="NaN / Inf",
        description="What to do with splats that have NaN or infinite values",
        items=[("drop", "Drop", "Leave those splats out and report how many"),
               ("error", "Refuse File", "Do not import a file with such splats")],
        default="drop",
    )

    def _filepaths(self) -> list[str]:
        names = [f.name for f in self.files if f.name]
        if names and self.directory:
            return [os.path.join(self.directory, name) for name in names]
        return [self.filepath]

    def execute(self, context):
        keywords = self.as_keywords(ignore=("filepath", "files", "directory", "filter_glob"))
        try:
            splat_object.import_splat_files(self._filepaths(), report=self.report, **keywords)
        except GSError as err:
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        return {'FINISHED'}

    def invoke(self, context, event):
        # A drop from the file handler sets filepath/files: confirm in a popup, else browse.
        if hasattr(ImportHelper, "invoke_popup"):
            return self.invoke_popup(context)
        return super().invoke(context, event)


class GS_OT_export_splats(bpy.types.Operator, ExportHelper):
    """Export the active splat object to a Gaussian splat file"""

    bl_idname = "gs.export_splats"
    bl_label = "Export Gaussian Splats"
    bl_options = {'REGISTER'}

    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply;*.splat;*.spz;*.glb;*.sog", options={'HIDDEN'})

    format: EnumProperty(
        name="Format",
        description="File format to write",
        items=[(key, label, description)
               for key, (_ext, label, description) in _EXPORT_FORMATS.items()],
        default="ply",
    )
    apply_transform: BoolProperty(
        name="Apply Transform",
        description="Bake the object's location, rotation and uniform scale into the splats",
        default=True,
    )
    up_axis: _up_axis_property("Up axis of the written file (−Y: the 3DGS convention)")

    @classmethod
    def poll(cls, context):
        if splat_object.is_splat_object(context.active_object):
            return True
        cls.poll_message_set("The active object is not a splat object")
        return False

    def _extension(self) -> str:
        return _EXPORT_FORMATS[self.format][0]

    def check(self, context):
        # ExportHelper.check only swaps the last suffix; .compressed.ply has two.
        directory, name = os.path.split(self.filepath)
        if not name:
            return False
        base = name
        for ext in sorted((e for e, _l, _d in _EXPORT_FORMATS.values()), key=len, reverse=True):
            if base.lower().endswith(ext):
                base = base[: -len(ext)]
                break
        else:
            base = os.path.splitext(base)[0]
        filepath = os.path.join(directory, base + self._extension())
        changed = filepath != self.filepath
        self.filepath = filepath
        return changed

    def invoke(self, context, event):
        obj = context.active_object
        stored_axis = obj.data.get(UP_AXIS_PROP) if obj is not None else None
        if not self.properties.is_property_set("up_axis") and stored_axis in UP_AXES:
            self.up_axis = stored_axis
        if not self.filepath:
            folder = os.path.dirname(bpy.data.filepath) if bpy.data.filepath else ""
            self.filepath = os.path.join(folder, bpy.path.clean_name(obj.name)
                                         + self._extension())
        return super().invoke(context, event)

    def execute(self, context):
        keywords = self.as_keywords(ignore=("filepath", "check_existing", "filter_glob"))
        try:
            splat_object.export_splats(context.active_object, self.filepath,
                                       report=self.report, **keywords)
        except GSError as err:
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        return {'FINISHED'}


class GS_FH_splats(bpy.types.FileHandler):
    """Dropping splat files on the 3D viewport (or the outliner) imports them."""

    bl_idname = "GS_FH_splats"
    bl_label = "Gaussian Splats"
    bl_import_operator = "gs.import_splats"
    bl_file_extensions = DROP_EXTENSIONS

    @classmethod
    def poll_drop(cls, context):
        area = context.area
        return area is not None and area.type in {'VIEW_3D', 'OUTLINER'}


def menu_import(self, context):
    self.layout.operator(GS_OT_import_splats.bl_idname, text=MENU_LABEL)


def menu_export(self, context):
    self.layout.operator(GS_OT_export_splats.bl_idname, text=MENU_LABEL)


CLASSES = (GS_OT_import_splats, GS_OT_export_splats, GS_FH_splats)
MENUS = (
    (bpy.types.TOPBAR_MT_file_import, menu_import),
    (bpy.types.TOPBAR_MT_file_export, menu_export),
)
