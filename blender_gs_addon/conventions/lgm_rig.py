"""The camera rig LGM was trained on, defined once for capture and for the model's input.

LGM's rig lives in its own Y-up OpenGL world ("GL world", :data:`.frames.Y_UP_FROM_BLENDER`
away from Blender's): four cameras at elevation 0, azimuths 0/90/180/270°, radius 1.5, vertical
field of view 49.1°, looking at the origin, square images on a white background. In Blender's
world (Z up) view 0 is at −Y (the front view), view 1 at +X, view 2 at +Y, view 3 at −X, all at
z = 0. Camera matrices are camera-to-world with OpenGL camera axes.
"""

from __future__ import annotations

import numpy as np

from .frames import BLENDER_FROM_Y_UP, homogeneous

__all__ = [
    "LGM_AZIMUTHS_DEG",
    "LGM_ELEVATION_DEG",
    "LGM_RADIUS",
    "LGM_FOVY_DEG",
    "LGM_BACKGROUND",
    "lgm_rig_cameras_gl",
    "lgm_rig_cameras",
]

LGM_AZIMUTHS_DEG = (0.0, 90.0, 180.0, 270.0)  # in this order: front, +X, back, −X
LGM_ELEVATION_DEG = 0.0
LGM_RADIUS = 1.5
LGM_FOVY_DEG = 49.1
LGM_BACKGROUND = (1.0, 1.0, 1.0)


def _orbit_camera_gl(elevation_deg: float, azimuth_deg: float, radius: float) -> np.ndarray:
    """[4, 4] camera-to-world of a camera orbiting the origin in the y-up GL world.

    Azimuth 0 is on +z, 90 on +x; positive elevation is *below* the equator (the convention of
    the reference's camera helper, kept so angles mean the same).
    """
    e, a = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
    centre = radius * np.array([np.cos(e) * np.sin(a), -np.sin(e), np.cos(e) * np.cos(a)])
    backward = centre / np.linalg.norm(centre)  # camera +z points away from the target
    right = np.cross([0.0, 1.0, 0.0], backward)
    right /= np.linalg.norm(right)
    up = np.cross(backward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, up, backward], axis=1)
    pose[:3, 3] = centre
    return pose


def lgm_rig_cameras_gl() -> np.ndarray:
    """[4, 4, 4] camera-to-world matrices of the LGM rig in the GL (y-up) world."""
    return np.stack([_orbit_camera_gl(LGM_ELEVATION_DEG, a, LGM_RADIUS)
                     for a in LGM_AZIMUTHS_DEG])


def lgm_rig_cameras() -> np.ndarray:
    """[4, 4, 4] camera-to-world matrices of the LGM rig in Blender's world, OpenGL camera axes.

    Put these on the four capture cameras (vertical fov :data:`LGM_FOVY_DEG`, square renders)
    with the object normalised to about [−0.55, 0.55]³.
    """
    return homogeneous(BLENDER_FROM_Y_UP) @ lgm_rig_cameras_gl()
