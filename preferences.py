"""Add-on preferences: where reconstruction runs (in Blender's Python, or a worker process on
another Python environment of this machine or, through a command such as ``ssh``, of another
one), on which device, with which weights and default backend.

Blender looks the preferences up by the add-on's module name:
``bl_ext.user_default.gaussian_splats`` when installed as an extension, ``gaussian_splats``
when the tests load the package directly.
That name is this module's package, so :data:`ROOT_PACKAGE` is computed here rather than
written down. :func:`get_preferences` falls back to :data:`DEFAULTS` when the add-on is not
enabled through Blender's add-on list (scripts that register the package by hand).
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from .blender_gs_addon.formats.reader_contract import DEFAULT_MAX_SPLATS, ReadLimits

__all__ = [
    "ROOT_PACKAGE", "EXECUTION_MODES", "DEVICES", "BACKEND_ITEMS", "DEFAULTS", "Settings",
    "GS_AddonPreferences", "get_preferences", "ensure_preferences", "settings_from",
    "backend_from_item", "read_limits", "CLASSES",
]

# preferences.py sits at the extension root, so its package is the add-on's module name.
ROOT_PACKAGE = __package__ or __name__.rpartition(".")[0]

EXECUTION_MODES = [
    ("AUTO", "Automatic",
     "In Blender's Python when torch imports there, otherwise in the worker Python"),
    ("IN_PROCESS", "In Blender", "Always run the model inside Blender's own Python "
                                 "(needs torch installed there)"),
    ("SUBPROCESS", "Worker Process",
     "Always run the model in a separate worker process on the worker Python below"),
]
DEVICES = [
    ("AUTO", "Automatic", "CUDA when the worker's torch sees a GPU, else CPU"),
    ("CUDA", "CUDA", "NVIDIA GPU (fails when torch sees none)"),
    ("CPU", "CPU", "Processor only (slow, fine for small captures)"),
]
# Enum identifiers stay plain words; backend_from_item maps them to the core's names.
BACKEND_ITEMS = [
    ("FIT", "Fit", "Per-scene 3DGS optimisation from the captured views"),
    ("LGM", "LGM", "LGM feed-forward network on the 4-view LGM rig (needs weights)"),
    ("LGM_FIT", "LGM + Fit", "LGM's prediction refined by the fit on every view"),
]
_BACKENDS = {"FIT": "fit", "LGM": "lgm", "LGM_FIT": "lgm+fit"}


def backend_from_item(item: str) -> str:
    """Enum identifier ('LGM_FIT') → the core's backend name ('lgm+fit')."""
    return _BACKENDS[item]


@dataclass(frozen=True)
class Settings:
    """Plain values of the preferences, as the reconstruction job (and, for ``max_splats``,
    the splat importer) uses them."""

    execution: str = "AUTO"        # AUTO | IN_PROCESS | SUBPROCESS
    worker_python: str = ""        # "" → this Python (sys.executable)
    worker_command: str = ""       # "" → the local worker Python; else what starts a worker
    device: str = "AUTO"           # AUTO | CUDA | CPU
    weights: str = ""              # "" → the default weights location (on the worker's side)
    offline: bool = False          # no Hugging Face Hub downloads
    default_backend: str = "FIT"   # FIT | LGM | LGM_FIT
    max_splats: int = DEFAULT_MAX_SPLATS  # splat files declaring more: refused unread


DEFAULTS = Settings()


class GS_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ROOT_PACKAGE

    execution: EnumProperty(name="Run Model", items=EXECUTION_MODES, default=DEFAULTS.execution,
                            description="Where the reconstruction model runs")
    worker_python: StringProperty(
        name="Worker Python", subtype='FILE_PATH', default=DEFAULTS.worker_python,
        description="Python executable of an environment with torch (and ideally gsplat and "
                    "CUDA), e.g. /home/me/venvs/splats/bin/python. Empty: Blender's own Python")
    worker_command: StringProperty(
        name="Worker Command", default=DEFAULTS.worker_command,
        description="Command that starts a worker, e.g. on a remote GPU machine: ssh gpu-box "
                    "/opt/splats/bin/python -m blender_gs_addon.worker. Captures, splats and "
                    "renders travel over its pipe; weights are looked up over there. Empty: "
                    "the Worker Python on this machine")
    device: EnumProperty(name="Device", items=DEVICES, default=DEFAULTS.device)
    weights: StringProperty(
        name="Weights", subtype='FILE_PATH', default=DEFAULTS.weights,
        description="Model weights: a .safetensors file or a folder holding one. Empty: the "
                    "default download location")
    offline: BoolProperty(name="Offline", default=DEFAULTS.offline,
                          description="Never download weights from the Hugging Face Hub; only "
                                      "use files already on disk")
    default_backend: EnumProperty(name="Default Backend", items=BACKEND_ITEMS,
                                  default=DEFAULTS.default_backend)
    max_splats: IntProperty(
        name="Max Splats", default=DEFAULTS.max_splats, min=1,
        description="Splat files declaring more splats are refused before anything is read "
                    "(about 240 bytes of memory per splat at SH degree 3); protects against "
                    "corrupt or malicious files")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        col = layout.column()
        col.prop(self, "execution")
        sub = col.column()
        sub.active = self.execution != 'IN_PROCESS'
        sub.prop(self, "worker_command")
        python = sub.column()
        python.active = not self.worker_command.strip()
        python.prop(self, "worker_python")
        col.prop(self, "device")
        col.prop(self, "default_backend")
        col.prop(self, "weights")
        col.prop(self, "offline")
        col.prop(self, "max_splats")
        row = layout.row()
        row.operator("gs.check_worker", icon='CHECKMARK')
        status = getattr(context.window_manager, "gs_reconstruct", None)
        if status is not None and status.check_text:
            box = layout.box()
            for line in status.check_text.splitlines():
                box.label(text=line)


def _addon_entry(context):
    addons = (context or bpy.context).preferences.addons
    return addons.get(ROOT_PACKAGE)


def get_preferences(context=None):
    """The add-on's preferences, or :data:`DEFAULTS` (same attribute names) when the add-on is
    not enabled through Blender's add-on list (then there is nothing stored to read)."""
    entry = _addon_entry(context)
    prefs = getattr(entry, "preferences", None) if entry is not None else None
    return prefs if prefs is not None else DEFAULTS


def ensure_preferences(context=None) -> GS_AddonPreferences:
    """Writable preferences for scripts and tests that registered the package by hand: makes the
    add-on entry Blender would make when enabling it (``addon_utils.enable`` does the same)."""
    entry = _addon_entry(context)
    if entry is None:
        entry = (context or bpy.context).preferences.addons.new()
        entry.module = ROOT_PACKAGE
    if entry.preferences is None:
        raise RuntimeError(f"{ROOT_PACKAGE}: the preferences class is not registered")
    return entry.preferences


def read_limits(context=None):
    """The splat readers' :class:`ReadLimits` from the preferences (*Max Splats*)."""
    return ReadLimits(max_splats=int(get_preferences(context).max_splats))


def settings_from(prefs) -> Settings:
    """Snapshot of the preferences (a job must not see them change half-way)."""
    return Settings(**{name: getattr(prefs, name) for name in Settings.__dataclass_fields__})


CLASSES = (GS_AddonPreferences,)
