"""Rendering of Gaussian splats: the differentiable rasterizer, its reference, and exact stills.

``from blender_gs_addon.render.rasterize import rasterize`` (torch). :mod:`.rasterize_reference`
is the slow dense renderer the tests compare against; :mod:`.still` renders one exact frame (F12
and the worker's render job). Camera conventions live in :mod:`..conventions`.
"""
