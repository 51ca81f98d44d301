"""What the scene must offer the splat display, checked and set without surprises: the node
types (Blender 4.5+), a perspective active camera, enough Cycles transparent bounces, and — only
when asked — the Standard view transform.
"""

from __future__ import annotations

import bpy

from ...blender_gs_addon.errors import Report, log_report
from .tree import REQUIRED_NODE_TYPES

__all__ = ["CYCLES_TRANSPARENT_BOUNCES", "display_support_problem", "camera_problem",
           "ensure_transparent_bounces", "use_standard_view_transform"]

# Cycles counts every splat quad a camera ray passes as one transparent bounce and stops the
# ray (opaque black) at the limit; Blender's default of 8 shows dark blotches where splats
# stack. add_display raises the scene's limit to at least this (never lowers it).
CYCLES_TRANSPARENT_BOUNCES = 256


def display_support_problem() -> str | None:
    """Why this Blender cannot build the splat display (None when it can).

    The display needs node types added up to Blender 4.5 (Camera Info). Without them splat
    objects still import and the "Gaussian Splatting" render engine still renders them.
    """
    missing = [name for name in REQUIRED_NODE_TYPES if not hasattr(bpy.types, name)]
    if not missing:
        return None
    version = ".".join(str(v) for v in bpy.app.version)
    return (f"The splat display needs Blender 4.5 or newer (Blender {version} lacks the "
            f"{', '.join(missing)} node{'s' if len(missing) > 1 else ''}); the splats are still "
            "imported and render with the \"Gaussian Splatting\" render engine")


def camera_problem(scene: bpy.types.Scene) -> str | None:
    """Why the display cannot show Gaussians for ``scene``'s active camera (None when it can).

    The quads are projected through a perspective active camera; without one the display
    shows the splats as points (DC colour), never as wrongly projected quads. Panoramic
    cameras still get quads (the tree cannot tell them apart), with this warning.
    """
    cam = scene.camera
    if cam is None:
        return (f"Scene {scene.name!r} has no active camera: splats show as points until a "
                "camera is made the active camera (Ctrl+Numpad 0)")
    if cam.type != 'CAMERA':
        return (f"The active camera {cam.name!r} of scene {scene.name!r} is not a camera: "
                "splats show as points")
    if cam.data.type == 'PANO':  # the tree cannot tell: it projects with the lens
        return (f"Camera {cam.name!r} is panoramic: the splat display projects splats as a "
                "perspective camera with its lens would, which panoramic renders do not match")
    if cam.data.type != 'PERSP':
        return (f"Camera {cam.name!r} is {cam.data.type.lower().replace('ortho', 'orthographic')}"
                ": the splat display needs a perspective camera, so splats show as points")
    return None


def ensure_transparent_bounces(scene: bpy.types.Scene, *, report: Report = log_report,
                               minimum: int = CYCLES_TRANSPARENT_BOUNCES) -> bool:
    """Raise Cycles' transparent bounce limit to ``minimum`` (never lower it); True if raised.

    EEVEE has no such limit: its blended surfaces are all composited in draw order.
    """
    cycles = getattr(scene, "cycles", None)
    if cycles is None or cycles.transparent_max_bounces >= minimum:
        return False
    old = cycles.transparent_max_bounces
    cycles.transparent_max_bounces = minimum
    report({'INFO'}, f"Scene {scene.name!r}: Cycles transparent bounces {old} → {minimum}, so "
                     "rays pass through stacked splats")
    return True


def use_standard_view_transform(scene: bpy.types.Scene, *,
                                report: Report = log_report) -> None:
    """Show splats' trained colours exactly: view transform "Standard" (the inverse of the sRGB
    conversion splats' colours go through: :mod:`blender_gs_addon.conventions.colour`), no look,
    exposure 0, gamma 1. Reports a change; only called on request, never behind the user's
    back."""
    view = scene.view_settings
    if view.view_transform != 'Standard':
        old = view.view_transform
        view.view_transform = 'Standard'
        report({'INFO'}, f"Scene {scene.name!r}: view transform {old} → Standard, so splats "
                         "show the colours they were trained to")
    view.look = 'None'
    view.exposure = 0.0
    view.gamma = 1.0
