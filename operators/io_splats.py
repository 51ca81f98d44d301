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

from ..blender_gs_addon.conventions.frames import UP_AXES
from ..blender_gs_addon.errors import GSError
from ..blender_gs_addon.formats import EXTENSIONS, detect_format
from ..preferences import read_limits
from ..scene import splat_object
from .reporting import reports_gs_errors

__all__ = ["GS_OT_import_splats", "GS_OT_export_splats", "GS_FH_splats", "CLASSES", "MENUS",
           "BLENDER_READS_SPLATS", "BLENDER_CLAIMS", "drop_extensions"]

MENU_LABEL = "Gaussian Splats (.ply/.splat/.spz/.glb/.sog)"
# What the file browser lists: every splat file ending (an unbundled SOG is opened through its
# meta.json, which is only offered in the dialog and never claimed on a drop: every .json is no
# splat file).
IMPORT_GLOB = ";".join("*" + ending for ending in EXTENSIONS)
EXPORT_GLOB = ";".join("*" + ending for ending in EXTENSIONS if ending.startswith("."))

# Drag-and-drop: which handler serves which extension. Every extension our readers take
# (formats.EXTENSIONS, the one list: a new reader joins by being added there) is ours, except
# - those Blender's own importers read as native splats from a version on: Blender's handler
#   serves them there, so a drop never offers two importers that do the same;
# - those Blender's importers claim for other content (glTF: mostly meshes; from 5.3 its
#   importer also reads KHR_gaussian_splatting): ours would put a menu before every glTF drop.
# Blender matches a handler's extensions against the end of the file name, so its .ply handler
# also claims *.compressed.ply: such a drop shows Blender's menu of the two, and ours imports at
# once (no second prompt: options are in Adjust Last Operation).
BLENDER_READS_SPLATS = {".ply": (5, 3, 0), ".spz": (5, 3, 0)}
BLENDER_CLAIMS = {".glb", ".gltf"}


def drop_extensions(version: tuple[int, ...]) -> list[str]:
    """The extensions our file handler claims on Blender ``version`` (a version tuple)."""
    return [ext for ext in EXTENSIONS if ext.startswith(".") and ext not in BLENDER_CLAIMS
            and tuple(version) < BLENDER_READS_SPLATS.get(ext, (10**6,))]


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
_SPZ_VERSION_ITEMS = [
    ("3", "3 (gzip)", "Read by every .spz loader (the safest choice)"),
    ("4", "4 (zstd)", "zstd streams with checksums: smaller and faster, read by recent loaders "
                      "only"),
    ("2", "2 (gzip, old)", "Older 8-bit rotations, for very old loaders"),
]


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

    @reports_gs_errors
    def execute(self, context):
        keywords = self.as_keywords(ignore=("filepath", "files", "directory", "filter_glob"))
        splat_object.import_splat_files(self._filepaths(), limits=read_limits(context),
                                        report=self.report, **keywords)
        return {'FINISHED'}

    def invoke(self, context, event):
        # A drop (the file handler sets filepath/files) imports at once: Blender may already
        # have asked which importer to use, and the options stay in Adjust Last Operation.
        if self.filepath or any(f.name for f in self.files):
            return self.execute(context)
        return super().invoke(context, event)


class GS_OT_export_splats(bpy.types.Operator, ExportHelper):
    """Export the active splat object to a Gaussian splat file"""

    bl_idname = "gs.export_splats"
    bl_label = "Export Gaussian Splats"
    bl_options = {'REGISTER'}

    filename_ext = ".ply"
    filter_glob: StringProperty(default=EXPORT_GLOB, options={'HIDDEN'})

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
    up_axis: EnumProperty(
        name="Up Axis", description="Up axis of the written file",
        items=[("AUTO", "Automatic", "The axis the object was imported with; for splats from "
                "Blender's own importers, the axes Blender's importer of this format uses, so "
                "the file's values come back"), *_UP_AXIS_ITEMS],
        default="AUTO",
    )
    spz_version: EnumProperty(name="SPZ Version", items=_SPZ_VERSION_ITEMS, default="3",
                              description="Version of .spz files written (other formats "
                                          "ignore it)")

    @classmethod
    def poll(cls, context):
        if splat_object.is_splat_object(context.active_object):
            return True
        cls.poll_message_set("The active object is not a splat object")
        return False

    def _extension(self) -> str:
        return _EXPORT_FORMATS[self.format][0]

    def _format_from_name(self) -> str | None:
        """The format the file name asks for (None when its extension is not a splat one)."""
        try:
            return detect_format(self.filepath, for_writing=True)
        except GSError:
            return None

    def check(self, context):
        # A name typed with a splat extension picks the format unless one was chosen; otherwise
        # the name follows the format. (ExportHelper.check only swaps the last suffix;
        # .compressed.ply has two.)
        directory, name = os.path.split(self.filepath)
        if not name:
            return False
        named = self._format_from_name()
        if named is not None and not self.properties.is_property_set("format"):
            self.format = named
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
        if not self.filepath:
            folder = os.path.dirname(bpy.data.filepath) if bpy.data.filepath else ""
            self.filepath = os.path.join(folder, bpy.path.clean_name(obj.name)
                                         + self._extension())
        return super().invoke(context, event)

    @reports_gs_errors
    def execute(self, context):
        keywords = self.as_keywords(ignore=("filepath", "check_existing", "filter_glob"))
        keywords["spz_version"] = int(keywords["spz_version"])
        if keywords["up_axis"] == "AUTO":
            keywords["up_axis"] = None
        if not self.properties.is_property_set("format"):
            # Format from the file name (x.spz writes .spz); the default for other names.
            keywords["format"] = self._format_from_name() or self.format
        splat_object.export_splats(context.active_object, self.filepath,
                                   report=self.report, **keywords)
        return {'FINISHED'}


class GS_FH_splats(bpy.types.FileHandler):
    """Dropping splat files on the 3D viewport (or the outliner) imports them (the extensions
    of :func:`drop_extensions`)."""

    bl_idname = "GS_FH_splats"
    bl_label = "Gaussian Splats"
    bl_import_operator = "gs.import_splats"
    bl_file_extensions = ";".join(drop_extensions(bpy.app.version))

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
