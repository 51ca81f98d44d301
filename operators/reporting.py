"""What every operator does with errors and long jobs: :func:`reports_gs_errors` and
:class:`ModalProgress` (how they fit together: docs/architecture.md, "Operators")."""

from __future__ import annotations

import functools

from ..blender_gs_addon.errors import Cancelled, GSError

__all__ = ["reports_gs_errors", "ModalProgress"]


def _reported(operator, method, *args) -> set[str]:
    try:
        return method(operator, *args)
    except Cancelled as err:
        operator.report({'WARNING'}, str(err))
    except GSError as err:
        operator.report({'ERROR'}, str(err))
    return {'CANCELLED'}


def reports_gs_errors(method):
    """Decorate an operator's ``execute(self, context)``, ``invoke(self, context, event)`` or
    ``modal(self, context, event)``: a GSError becomes an ERROR report and ``{'CANCELLED'}``, a
    :class:`Cancelled` one a WARNING. Other exceptions pass (they are bugs, with a traceback).

    The wrapper keeps the method's positional arguments, as Blender checks their count when it
    registers the class.
    """
    count = method.__code__.co_argcount
    if count == 2:
        def reporting(self, context):
            return _reported(self, method, context)
    elif count == 3:
        def reporting(self, context, event):
            return _reported(self, method, context, event)
    else:
        raise TypeError(f"{method.__qualname__}: expected (self, context) or "
                        f"(self, context, event), got {count} arguments")
    return functools.wraps(method)(reporting)


class ModalProgress:
    """Mixin for an operator that runs a job a slice per timer tick, with the window manager's
    progress bar, a status-bar text, and Esc to cancel.

    The operator starts its job, then returns :meth:`start_modal`; from then on this class's
    ``modal`` and ``cancel`` run it. The operator provides:

    - :meth:`modal_step` (required): advance the job one slice; False once it is done.
    - :meth:`modal_status` (required): the status-bar text; :meth:`modal_progress`: the
      progress-bar value (between 0 and the ``total`` given to :meth:`start_modal`).
    - :meth:`modal_finish`: after the last slice (write or report the result).
    - :meth:`modal_abort`: stop the job because the user cancelled (Esc, or Blender ended the
      operator); :meth:`modal_release`: let go of the job, always called once at the end.
    - :meth:`modal_update_ui`: show the progress in places of the operator's own too (a panel
      property, a redraw).

    Class settings: ``modal_timer_seconds``, ``modal_cancel_message`` (the warning on Esc) and
    ``modal_pass_through``: the event types the rest of Blender still gets while the job runs
    (None: every event; the job's own timer ticks then pass too).
    """

    modal_timer_seconds: float = 0.1
    modal_cancel_message: str = "Cancelled; nothing was changed"
    modal_pass_through: frozenset[str] | None = None
    _timer = None

    # -------------------------------------------------------------------- the job's side
    def modal_step(self, context) -> bool:
        raise NotImplementedError

    def modal_status(self) -> str:
        raise NotImplementedError

    def modal_progress(self) -> float:
        return 0.0

    def modal_finish(self, context) -> None:
        pass

    def modal_abort(self, context) -> None:
        pass

    def modal_release(self, context) -> None:
        pass

    def modal_update_ui(self, context) -> None:
        pass

    # ------------------------------------------------------------------ the window's side
    def start_modal(self, context, *, total: float) -> set[str]:
        """Show the progress bar (0‥``total``) and start the timer; returns RUNNING_MODAL."""
        wm = context.window_manager
        wm.progress_begin(0, total)
        self._timer = wm.event_timer_add(self.modal_timer_seconds, window=context.window)
        wm.modal_handler_add(self)
        self.modal_show(context)
        return {'RUNNING_MODAL'}

    def modal_show(self, context) -> None:
        """Update the progress bar, the status text and the operator's own places."""
        context.window_manager.progress_update(self.modal_progress())
        if context.workspace is not None:
            context.workspace.status_text_set(self.modal_status())
        self.modal_update_ui(context)

    def end_modal(self, context) -> None:
        """Release the job, stop the timer, hide the progress bar and the status text."""
        self.modal_release(context)
        if self._timer is not None:
            wm = context.window_manager
            wm.event_timer_remove(self._timer)
            self._timer = None
            wm.progress_end()
            if context.workspace is not None:
                context.workspace.status_text_set(None)

    @reports_gs_errors
    def modal(self, context, event):
        if event.type == 'ESC' and event.value == 'PRESS':
            self.cancel(context)
            self.report({'WARNING'}, self.modal_cancel_message)
            return {'CANCELLED'}
        if self._timer is None or event.type != 'TIMER' or event.timer is not self._timer:
            passes = self.modal_pass_through is None or event.type in self.modal_pass_through
            return {'PASS_THROUGH'} if passes else {'RUNNING_MODAL'}
        try:
            more = self.modal_step(context)
            self.modal_show(context)
            if more:
                return {'PASS_THROUGH'} if self.modal_pass_through is None else {'RUNNING_MODAL'}
            self.modal_finish(context)
        except BaseException:
            self.end_modal(context)
            raise  # a GSError is reported by the decorator
        self.end_modal(context)
        return {'FINISHED'}

    def cancel(self, context) -> None:
        # Esc, or Blender ends the operator itself (file loaded, window closed): stop, restore.
        self.modal_abort(context)
        self.end_modal(context)
