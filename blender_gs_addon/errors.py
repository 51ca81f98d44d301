"""The project's one error type and the report-callback convention.

Every failure the core can foresee (bad files, bad arguments, missing weights, a dead worker)
raises :class:`GSError`. Operators turn it into ``self.report({'ERROR'}, str(err))`` and
``{'CANCELLED'}`` (a :class:`Cancelled` one into a warning); the command line prints it as one
stderr line.

Core functions that have something to tell the user besides their result (dropped rows, kept
extra properties, progress) take ``report=`` — a callable with Blender's ``Operator.report``
signature, ``report({'WARNING'}, "message")`` — so an operator can pass ``self.report`` as is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["GSError", "Cancelled", "Report", "log_report"]

_log = logging.getLogger("blender_gs_addon")

Report = Callable[[set, str], None]


class GSError(ValueError):
    """A foreseen failure with a message for the user (names the file/object and the problem)."""


class Cancelled(GSError):
    """The user (or a progress callback) stopped an operation, which changed nothing."""


def log_report(levels: set, message: str) -> None:
    """Default ``report=``: send the message to the ``blender_gs_addon`` logger."""
    if "ERROR" in levels:
        _log.error(message)
    elif "WARNING" in levels:
        _log.warning(message)
    else:
        _log.info(message)
