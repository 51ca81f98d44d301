"""Skinning splats to an armature without Blender: automatic weights and the humanoid fit."""
