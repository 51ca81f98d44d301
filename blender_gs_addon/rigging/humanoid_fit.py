"""Joint estimates of a standing person from a splat cloud (no body-model data).

Input: splat centres in a Z-up frame with the figure upright and facing −Y (Blender's front
view; what a 3DGS avatar .ply shows after import with its up axis). Heuristics, all in units
of the figure's height H (robust extents: the 0.1 % and 99.9 % percentiles, so floaters do not
stretch the figure):

* **Height and axis.** Floor z₀ and top z₁ from the z percentiles; the body axis (cx, cy) is the
  median of the points in the pelvis/belly band z ∈ [0.45, 0.6] H.
* **Head.** Top at (cx, cy_head, z₁) with cy_head the median y of the top 5 % of H; the neck
  base at 0.84 H (adult proportions, ~7.5 heads tall, the same as Rigify's metarig).
* **Shoulders** at 0.80 H, ±0.10 H to the side (metarig proportions).
* **Hands.** Among points above 0.35 H (legs excluded), the lateral extremes on each side
  (the points within 0.02 H of the 99.9 % percentile of x − cx) are the finger tips; the wrist
  lies 0.09 H back towards the shoulder, the elbow half way between shoulder and wrist.
* **Pose.** The arm's angle below horizontal (shoulder → wrist): under 15° is a T-pose (LHM's
  exported .ply), otherwise an A-pose (Rigify's metarig rest pose is an A-pose, ≈ 28°).
* **Legs.** Points below 0.3 H split by side; each side's median x is the leg's line. Hip
  joints at 0.54 H, knees at 0.27 H, ankles at 0.045 H above the floor (at the foot's median
  y plus a quarter of its length back), toes at the foot's front (1 % percentile of y).

The user can edit the resulting bones and re-bind; nothing here needs more than a cloud of
points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import GSError

__all__ = ["HumanoidFit", "fit_humanoid", "T_POSE_MAX_DEGREES"]

T_POSE_MAX_DEGREES = 15.0


@dataclass
class HumanoidFit:
    """``joints``: name → [3] position (same frame as the input). Names: head_top, neck,
    hips, shoulder.L/R, elbow.L/R, wrist.L/R, hand_tip.L/R, hip.L/R, knee.L/R, ankle.L/R,
    toe.L/R (L = +x, the figure's left when it faces −Y). ``pose``: "T" or "A"."""

    height: float
    floor: float
    pose: str
    arm_angle: float  # degrees below horizontal, mean of both arms
    joints: dict[str, np.ndarray] = field(default_factory=dict)


def fit_humanoid(points: np.ndarray, *, source: str = "splats") -> HumanoidFit:
    """Estimate the joints of an upright figure facing −Y (module docstring)."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) < 100:
        raise GSError(f"{source}: too few splats ({len(pts)}) to fit a humanoid rig")
    z0, z1 = np.percentile(pts[:, 2], [0.1, 99.9])
    h = float(z1 - z0)
    widths = np.percentile(pts[:, :2], 99.9, axis=0) - np.percentile(pts[:, :2], 0.1, axis=0)
    if h <= 0 or h < 0.3 * widths.min():
        raise GSError(f"{source}: the splats do not look like an upright figure (height "
                      f"{h:.3g}, footprint {widths[0]:.3g} × {widths[1]:.3g}); import with the "
                      "right up axis so the person stands along +Z")
    rel = pts[:, 2] - z0

    def band(lo, hi):
        return pts[(rel >= lo * h) & (rel <= hi * h)]

    torso = band(0.45, 0.6)
    if len(torso) == 0:
        torso = pts
    cx, cy = np.median(torso[:, 0]), np.median(torso[:, 1])
    head = band(0.95, 1.01)
    head_y = np.median(head[:, 1]) if len(head) else cy
    joints: dict[str, np.ndarray] = {
        "head_top": np.array([cx, head_y, z1]),
        "neck": np.array([cx, head_y, z0 + 0.84 * h]),
        "hips": np.array([cx, cy, z0 + 0.54 * h]),
    }
    upper = pts[rel > 0.35 * h]
    angles = []
    for side, sign in (("L", 1.0), ("R", -1.0)):
        u = sign * (upper[:, 0] - cx)
        edge = np.percentile(u, 99.9)
        tip = upper[u >= edge - 0.02 * h].mean(0)
        shoulder = np.array([cx + sign * 0.10 * h, cy, z0 + 0.80 * h])
        direction = tip - shoulder
        length = np.linalg.norm(direction)
        if length < 0.15 * h:
            raise GSError(f"{source}: no arm found on the figure's {side} side")
        direction /= length
        wrist = tip - 0.09 * h * direction
        joints[f"shoulder.{side}"] = shoulder
        joints[f"elbow.{side}"] = 0.5 * (shoulder + wrist)
        joints[f"wrist.{side}"] = wrist
        joints[f"hand_tip.{side}"] = tip
        horizontal = np.linalg.norm(wrist[:2] - shoulder[:2])
        angles.append(np.degrees(np.arctan2(shoulder[2] - wrist[2], horizontal)))

        legs = pts[rel < 0.3 * h]
        mine = legs[sign * (legs[:, 0] - cx) > 0]
        if len(mine) == 0:
            raise GSError(f"{source}: no leg found on the figure's {side} side")
        leg_x = np.median(mine[:, 0])
        foot = mine[(mine[:, 2] - z0) < 0.06 * h]
        if len(foot) == 0:
            foot = mine
        front, back = np.percentile(foot[:, 1], [1, 99])
        ankle_y = np.median(foot[:, 1]) + 0.25 * (back - front)
        joints[f"hip.{side}"] = np.array([leg_x, cy, z0 + 0.54 * h])
        joints[f"knee.{side}"] = np.array([leg_x, np.median(mine[:, 1]), z0 + 0.27 * h])
        joints[f"ankle.{side}"] = np.array([np.median(foot[:, 0]), ankle_y, z0 + 0.045 * h])
        joints[f"toe.{side}"] = np.array([np.median(foot[:, 0]), front, z0 + 0.01 * h])
    arm_angle = float(np.mean(angles))
    pose = "T" if arm_angle < T_POSE_MAX_DEGREES else "A"
    return HumanoidFit(height=h, floor=float(z0), pose=pose, arm_angle=arm_angle,
                       joints=joints)
