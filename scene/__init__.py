"""Blender-side logic (bpy): building splat objects, capture, binding. Operators call into here;
formats and maths stay in the bpy-free core (blender_gs_addon/)."""
