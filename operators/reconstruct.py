"""One-click reconstruction: ``gs.reconstruct`` captures the selection, reconstructs splats and
imports them on top of the source objects; ``gs.reconstruct_photos`` recovers the camera poses
of photos (a folder or a video) and reconstructs them, bringing in the splats and the cameras
(with the photos as backgrounds) in a new collection; ``gs.check_worker`` reports what the model
would run with; ``gs.reconstruct_cancel`` stops a running reconstruction (the panel's Cancel
button).

With a window, both reconstructions are modal (:class:`SessionModal`): a timer steps
:class:`ReconstructSession` (one capture view, or a look at the model's progress, per tick),
progress shows in the window manager's progress cursor, the status bar and the sidebar panel
(``WindowManager.gs_reconstruct``, drawn by panels/sidebar.py), and Esc cancels. In background
mode (``bpy.app.background``) or without a window they run synchronously and print progress,
so headless scripts work.

Registration hook: :func:`register_properties` / :func:`unregister_properties` (called by the
root registrar after / before the classes) add the window-manager status, the scene's photo
settings (``scene.gs_photos``, :class:`GS_PG_photos`), a load_pre handler that cancels a
running job when another file is opened, and stop the warm worker on unregister.
"""

from __future__ import annotations

import functools

import bpy
from bpy.props import (
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..blender_gs_addon.capture.options import CaptureOptions
from ..blender_gs_addon.poses.dataset import DEFAULT_TEST_EVERY, pose_summary
from ..blender_gs_addon.poses.photo_job import PhotoJob
from ..blender_gs_addon.poses.recover import DEFAULT_FRAMES, DEFAULT_MAX_SIZE
from ..preferences import BACKEND_ITEMS, backend_from_item, get_preferences, settings_from
from ..scene import model_runner, reconstruct_job
from ..scene.reconstruct_job import ReconstructCancelled, ReconstructSession
from .reporting import ModalProgress, reports_gs_errors

__all__ = [
    "GS_ReconstructStatus", "GS_PG_photos", "SessionModal", "GS_OT_reconstruct",
    "GS_OT_reconstruct_photos", "GS_OT_reconstruct_cancel", "GS_OT_check_worker", "CLASSES",
    "register_properties", "unregister_properties", "scene_capture_options",
]


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


def scene_capture_options(scene) -> CaptureOptions:
    """How the reconstruction captures: the Capture panel's settings (``scene.gs_capture``;
    its output folder is not used, as a reconstruction writes its capture into its own private
    job folder), or the job's defaults without them."""
    settings = getattr(scene, "gs_capture", None)
    return reconstruct_job.DEFAULT_CAPTURE if settings is None else settings.options()


_BACKEND_ITEMS = [("DEFAULT", "Preferences", "The default backend of the add-on preferences"),
                  *BACKEND_ITEMS]


class SessionModal(ModalProgress):
    """What both reconstruction operators do with their :class:`ReconstructSession`: run it
    synchronously in background mode (or without a window), else modally with the progress
    bar, the status bar, the sidebar's status and Esc. An operator provides
    ``_make_session(context)`` and ``_finished_text(session)`` (the INFO report and the
    sidebar's last-result line)."""

    modal_timer_seconds = 0.1
    modal_cancel_message = "Reconstruction cancelled; the scene is unchanged"
    _session: ReconstructSession | None = None

    @classmethod
    def poll(cls, context):
        session = reconstruct_job.active_session()
        if session is not None and session.running:
            cls.poll_message_set("a reconstruction is already running")
            return False
        return True

    def invoke(self, context, event):
        return self.execute(context)

    @reports_gs_errors
    def execute(self, context):
        session = self._make_session(context)
        if bpy.app.background or context.window is None:
            session.run()  # closes itself
            self._finished_report(session, _status(context))
            return {'FINISHED'}
        return self._start_modal(context, session)

    def _finished_report(self, session, status) -> None:
        text = self._finished_text(session)
        if status is not None:
            status.last_result = text
        self.report({'INFO'}, text)

    # --------------------------------------------------------------------------- modal
    def _start_modal(self, context, session: ReconstructSession):
        session.start()
        self._session = session
        return self.start_modal(context, total=1.0)

    def modal_step(self, context) -> bool:
        if not self._session.running:  # cancelled from the panel's button
            raise ReconstructCancelled(self.modal_cancel_message)
        return self._session.step()

    def modal_status(self) -> str:
        session = self._session
        return (f"Reconstructing splats: {100.0 * session.fraction:.0f}% — {session.message}"
                "   (Esc to cancel)")

    def modal_progress(self) -> float:
        return self._session.fraction

    def modal_update_ui(self, context) -> None:
        session, status = self._session, _status(context)
        if status is not None:
            status.running = session.running
            status.progress = session.fraction
            status.stage = session.stage
            status.message = session.message
        _redraw_sidebars(context)

    def modal_finish(self, context) -> None:
        self._finished_report(self._session, _status(context))

    def modal_abort(self, context) -> None:
        if self._session is not None:
            self._session.cancel()

    def modal_release(self, context) -> None:
        status = _status(context)
        if status is not None:
            status.running = False
            status.progress = 0.0
            status.stage = self._session.stage if self._session else ""
        _redraw_sidebars(context)


class GS_OT_reconstruct(SessionModal, bpy.types.Operator):
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

    def _finished_text(self, session) -> str:
        return f"Reconstructed {session.object.name}: {session.message}"


# What a reconstruction from photos takes: the sidebar's settings (scene.gs_photos) and the
# operator's own properties (scripts) share these definitions.
def _photo_properties() -> dict:
    return {
        "photos": StringProperty(
            name="Photos", subtype='FILE_PATH', default="",
            description="A folder of photos or a video file (mp4, mov, mkv, …) of the subject "
                        "from many positions"),
        "masks": StringProperty(
            name="Masks", subtype='DIR_PATH', default="",
            description="Optional folder with one mask per photo (white: subject)"),
        "dataset": StringProperty(
            name="Data Set", subtype='DIR_PATH', default="",
            description="Folder to keep the recovered data set in (its images are the "
                        "cameras' backgrounds); empty: <photos>_poses beside the photos"),
        "frames": IntProperty(name="Video Frames", min=3, max=100_000, default=DEFAULT_FRAMES,
                              description="Frames sampled from a video (the sharpest of each "
                                          "stretch)"),
        "max_size": IntProperty(name="Image Size", min=0, max=16384, default=DEFAULT_MAX_SIZE,
                                subtype='PIXEL', description="Longer side of the working "
                                                             "images (0: full size)"),
        "test_every": IntProperty(name="Hold Out Every", min=0, default=DEFAULT_TEST_EVERY,
                                  description="Every n-th placed photo is held out to measure "
                                              "the held-out PSNR (0: none)"),
        "steps": IntProperty(name="Steps", min=0, default=0,
                             description="Fit steps (0: the preset's default)"),
        "threads": IntProperty(name="SfM Threads", min=-1, max=1024, default=-1,
                               description="CPU threads for pose recovery (-1: all cores; 1 "
                                           "gives the same poses every run)"),
        "up": FloatVectorProperty(
            name="Up", size=3, default=(0.0, 0.0, 0.0),
            description="Up direction in the recovered (COLMAP) world, which becomes +Z; "
                        "zero: the cameras' average up"),
    }


class GS_PG_photos(bpy.types.PropertyGroup):
    """Reconstruct-from-photos settings of a scene (``scene.gs_photos``)."""

    __annotations__ = _photo_properties()


class GS_OT_reconstruct_photos(SessionModal, bpy.types.Operator):
    """Recover the camera poses of photos (a folder or a video), reconstruct Gaussian splats and
    add them with the recovered cameras (the photos as their backgrounds) in a new collection.
    Esc cancels"""

    bl_idname = "gs.reconstruct_photos"
    bl_label = "Reconstruct from Photos"
    bl_options = {'UNDO'}

    __annotations__ = {**_photo_properties(), "seed": IntProperty(name="Seed", min=0, default=0)}

    def _option(self, context, name: str):
        """The operator's own value when given (scripts), else the sidebar's."""
        panel = getattr(context.scene, "gs_photos", None)
        if panel is None or self.properties.is_property_set(name):
            return getattr(self, name)
        return getattr(panel, name)

    def _make_session(self, context) -> ReconstructSession:
        option = functools.partial(self._option, context)

        def path(name):
            text = option(name).strip()
            return bpy.path.abspath(text) if text else None

        up = tuple(option("up"))
        job = PhotoJob(photos=path("photos") or "", masks=path("masks"),
                       dataset=path("dataset"), frames=option("frames"),
                       max_size=option("max_size"), test_every=option("test_every"),
                       up=up if any(up) else None, threads=option("threads") or -1)
        settings = settings_from(get_preferences(context))
        return ReconstructSession(context, settings=settings, backend="fit", photos=job,
                                  steps=option("steps") or None, seed=self.seed,
                                  report=self.report)

    def _finished_text(self, session) -> str:
        poses = session.result["poses"]
        return (f"Reconstructed {session.object.name} from photos: {pose_summary(poses)}; "
                f"{session.message}")


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
    bpy.types.Scene.gs_photos = PointerProperty(type=GS_PG_photos)
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
    if hasattr(bpy.types.Scene, "gs_photos"):
        del bpy.types.Scene.gs_photos


CLASSES = (GS_ReconstructStatus, GS_PG_photos, GS_OT_reconstruct, GS_OT_reconstruct_photos,
           GS_OT_reconstruct_cancel, GS_OT_check_worker)
