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

    @classmethod
    def from_os_error(cls, path: str, err: OSError, action: str = "read") -> GSError:
        """The one-line error for an OS failure (missing, permission, is-a-folder, disk full)
        while doing ``action`` ("read", "write", …) on ``path``; raise it ``from None``."""
        reason = err.strerror or str(err) or type(err).__name__
        if isinstance(err, IsADirectoryError):
            reason = "it is a folder, not a file"
        elif err.errno is None and action == "write":  # numpy's tofile on a short write
            reason = f"only part of the data was written — is the disk full? ({err})"
        return cls(f"{path}: cannot {action} ({reason})")


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
