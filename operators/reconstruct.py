"""One-click reconstruction: ``gs.reconstruct`` captures the selection, reconstructs splats and
imports them on top of the source objects; ``gs.check_worker`` reports what the model would run
with; ``gs.reconstruct_cancel`` stops a running reconstruction (the panel's Cancel button).

With a window, ``gs.reconstruct`` is modal: a timer steps :class:`ReconstructSession` (one
capture view, or a look at the model's progress, per tick), progress shows in the window
manager's progress cursor, the status bar and the sidebar panel (``WindowManager.gs_reconstruct``,
drawn by panels/sidebar.py), and Esc cancels. In background mode (``bpy.app.background``) or
without a window it runs synchronously and prints progress, so headless scripts work.

Registration hook: :func:`register_properties` / :func:`unregister_properties` (called by the
root registrar after / before the classes) add the window-manager status, a load_pre handler
that cancels a running job when another file is opened, and stop the warm worker on unregister.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..blender_gs_addon.errors import GSError
from ..preferences import BACKEND_ITEMS, backend_from_item, get_preferences, settings_from
from ..scene import model_runner, reconstruct_job
from ..scene.reconstruct_job import ReconstructCancelled, ReconstructSession

__all__ = [
    "GS_ReconstructStatus", "GS_OT_reconstruct", "GS_OT_reconstruct_cancel", "GS_OT_check_worker",
    "CLASSES", "register_properties", "unregister_properties", "scene_capture_options",
]

_TIMER_SECONDS = 0.1


class GS_ReconstructStatus(bpy.types.PropertyGroup):
    """Runtime status of the reconstruction, for the panel (window-manager data is not saved
    with the file)."""

    running: bpy.props.BoolProperty(default=False)
    progress: FloatProperty(subtype='FACTOR', min=0.0, max=1.0, default=0.0)
    stage: StringProperty(default="")
    message: StringProperty(default="")
    last_result: StringProperty(default="")
    check_text: StringProperty(default="")


def _status(context) -> GS_ReconstructStatus | None:
    return getattr(context.window_manager, "gs_reconstruct", None)


def _redraw_sidebars(context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == 'VIEW_3D':
                area.tag_redraw()


class _SettingsWithoutOutput:
    """The scene's capture settings seen without their output folder: a reconstruction writes
    its capture into its own private job folder, so a relative or unsaved output path must not
    stop it."""

    def __init__(self, props):
        self._props = props

    def __getattr__(self, name):
        return os.sep if name == "output_dir" else getattr(self._props, name)


def scene_capture_options(scene) -> dict:
    """CaptureSession options from the Capture panel's settings (``scene.gs_capture``, read by
    operators/capture.py's own ``capture_options``), or the job's defaults without them."""
    props = getattr(scene, "gs_capture", None)
    if props is None:
        return dict(reconstruct_job.DEFAULT_CAPTURE)
    from .capture import capture_options

    options = capture_options(_SettingsWithoutOutput(props))
    options.pop("out_dir", None)
    return options


_BACKEND_ITEMS = [("DEFAULT", "Preferences", "The default backend of the add-on preferences"),
                  *BACKEND_ITEMS]


class GS_OT_reconstruct(bpy.types.Operator):
    """Capture the selected objects, reconstruct Gaussian splats from the views and add them on
    top of the objects. Esc cancels"""

    bl_idname = "gs.reconstruct"
    bl_label = "Reconstruct Splats"
    bl_options = {'UNDO'}

    backend: EnumProperty(name="Backend", items=_BACKEND_ITEMS,
                          description="Reconstruction backend")
    steps: IntProperty(name="Steps", min=0, default=0,
                       description="Fit steps (0: the backend's default)")
    seed: IntProperty(name="Seed", min=0, default=0)
    dataset: StringProperty(
        name="Data Set", subtype='DIR_PATH', default="",
        description="Reconstruct this data set folder (transforms_*.json) instead of capturing "
                    "the selection; the result is placed by its normalisation transform")

    _session: ReconstructSession | None = None
    _timer = None

    @classmethod
    def poll(cls, context):
        session = reconstruct_job.active_session()
        if session is not None and session.running:
            cls.poll_message_set("a reconstruction is already running")
            return False
        return True

    def _make_session(self, context) -> ReconstructSession:
        settings = settings_from(get_preferences(context))
        backend = None if self.backend == 'DEFAULT' else backend_from_item(self.backend)
        # The operator's own dataset= first (scripts), else the panel's folder.
        chosen = self.dataset.strip() or getattr(getattr(context.scene, "gs_capture", None),
                                                 "reconstruct_dataset", "").strip()
        dataset = bpy.path.abspath(chosen) if chosen else None
        return ReconstructSession(context, settings=settings, backend=backend,
                                  capture=scene_capture_options(context.scene),
                                  steps=self.steps or None, seed=self.seed, dataset=dataset,
                                  report=self.report)

    def invoke(self, context, event):
        return self.execute(context)

    def execute(self, context):
        try:
            session = self._make_session(context)
        except GSError as err:
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        if bpy.app.background or context.window is None:
            return self._run_blocking(context, session)
        return self._start_modal(context, session)

    # ---------------------------------------------------------------------- background
    def _run_blocking(self, context, session: ReconstructSession):
        status = _status(context)
        try:
            session.run()
        except ReconstructCancelled as err:
            self.report({'WARNING'}, str(err))
            return {'CANCELLED'}
        except GSError as err:
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        self._finished_report(session, status)
        return {'FINISHED'}

    def _finished_report(self, session, status) -> None:
        text = f"Reconstructed {session.object.name}: {session.message}"
        if status is not None:
            status.last_result = text
        self.report({'INFO'}, text)

    # --------------------------------------------------------------------------- modal
    def _start_modal(self, context, session: ReconstructSession):
        try:
            session.start()
        except GSError as err:
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        self._session = session
        wm = context.window_manager
        wm.progress_begin(0.0, 1.0)
        self._timer = wm.event_timer_add(_TIMER_SECONDS, window=context.window)
        wm.modal_handler_add(self)
        self._show(context)
        return {'RUNNING_MODAL'}

    def _show(self, context) -> None:
        session = self._session
        status = _status(context)
        percent = 100.0 * session.fraction
        if status is not None:
            status.running = session.running
            status.progress = session.fraction
            status.stage = session.stage
            status.message = session.message
        context.window_manager.progress_update(session.fraction)
        if context.workspace is not None:
            context.workspace.status_text_set(
                f"Reconstructing splats: {percent:.0f}% — {session.message}   (Esc to cancel)")
        _redraw_sidebars(context)

    def _end(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        status = _status(context)
        if status is not None:
            status.running = False
            status.progress = 0.0
            status.stage = self._session.stage if self._session else ""
        _redraw_sidebars(context)

    def modal(self, context, event):
        session = self._session
        if event.type == 'ESC' and event.value == 'PRESS':
            session.cancel()
            self._end(context)
            self.report({'WARNING'}, "Reconstruction cancelled; the scene is unchanged")
            return {'CANCELLED'}
        if event.type != 'TIMER' or event.timer is not self._timer:
            return {'PASS_THROUGH'}
        if not session.running:  # cancelled from the panel's button
            self._end(context)
            self.report({'WARNING'}, "Reconstruction cancelled; the scene is unchanged")
            return {'CANCELLED'}
        try:
            more = session.step()
        except ReconstructCancelled as err:
            self._end(context)
            self.report({'WARNING'}, str(err))
            return {'CANCELLED'}
        except GSError as err:
            self._end(context)
            self.report({'ERROR'}, str(err))
            return {'CANCELLED'}
        if more:
            self._show(context)
            return {'PASS_THROUGH'}
        self._end(context)
        self._finished_report(session, _status(context))
        return {'FINISHED'}

    def cancel(self, context):
        # Blender ends the operator (file loaded, window closed): stop and restore.
        if self._session is not None:
            self._session.cancel()
            self._end(context)


class GS_OT_reconstruct_cancel(bpy.types.Operator):
    """Stop the running reconstruction; the scene is left as it was"""

    bl_idname = "gs.reconstruct_cancel"
    bl_label = "Cancel Reconstruction"
    bl_options = {'INTERNAL'}

    @classmethod
    def poll(cls, context):
        session = reconstruct_job.active_session()
        return session is not None and session.running

    def execute(self, context):
        session = reconstruct_job.active_session()
        if session is None or not session.cancel():
            return {'CANCELLED'}
        return {'FINISHED'}


class GS_OT_check_worker(bpy.types.Operator):
    """Report whether torch imports in Blender's Python, and what torch, gsplat and CUDA the
    worker Python has (starts the worker once; may take a few seconds)"""

    bl_idname = "gs.check_worker"
    bl_label = "Check Worker"
    bl_options = {'INTERNAL'}

    def execute(self, context):
        settings = settings_from(get_preferences(context))
        info = model_runner.check_environment(settings)
        text = "\n".join(info["summary"])
        status = _status(context)
        if status is not None:
            status.check_text = text
        print(text, flush=True)
        ok = info["in_process"] or (info["worker"] or {}).get("torch")
        self.report({'INFO'} if ok else {'WARNING'}, " | ".join(info["summary"]))
        return {'FINISHED'}


@bpy.app.handlers.persistent
def _cancel_on_load(*_args) -> None:
    # Opening another file frees the objects a running capture renders; stop it first.
    session = reconstruct_job.active_session()
    if session is not None and session.running:
        session.cancel()


def register_properties() -> None:
    bpy.types.WindowManager.gs_reconstruct = PointerProperty(type=GS_ReconstructStatus)
    if _cancel_on_load not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_cancel_on_load)


def unregister_properties() -> None:
    session = reconstruct_job.active_session()
    if session is not None:
        session.cancel()
    model_runner.stop_worker()
    if _cancel_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_cancel_on_load)
    if hasattr(bpy.types.WindowManager, "gs_reconstruct"):
        del bpy.types.WindowManager.gs_reconstruct


CLASSES = (GS_ReconstructStatus, GS_OT_reconstruct, GS_OT_reconstruct_cancel, GS_OT_check_worker)
