"""Show splat meshes in EEVEE and Cycles as the Gaussians they are (a Geometry Nodes modifier and
a material, built entirely in Python); how it works, and its limits: docs/architecture.md,
"The splat display".

Modules: :mod:`.nodes` (the node-tree builder), :mod:`.tree` (the display group in named
stages), :mod:`.material`, :mod:`.cache` (the group per file, appended from a per-version
cache), :mod:`.modifier` (the display on an object: modifier, inputs, options),
:mod:`.scene_settings` (node support, camera, Cycles bounces, view transform).
"""

from .cache import display_node_group
from .material import MATERIAL_NAME, display_material
from .modifier import (
    MODIFIER_NAME,
    add_display,
    display_modifier,
    display_options,
    input_property,
    remove_display,
    set_display_options,
    set_modifier_input,
)
from .scene_settings import (
    CYCLES_TRANSPARENT_BOUNCES,
    camera_problem,
    display_support_problem,
    ensure_transparent_bounces,
    use_standard_view_transform,
)
from .tree import NODE_GROUP_NAME, OPTION_NAMES

__all__ = [
    "MODIFIER_NAME", "NODE_GROUP_NAME", "MATERIAL_NAME", "OPTION_NAMES", "add_display",
    "remove_display", "display_modifier", "set_display_options", "display_options",
    "use_standard_view_transform", "display_node_group", "display_material", "input_property",
    "set_modifier_input", "display_support_problem", "camera_problem",
    "ensure_transparent_bounces", "CYCLES_TRANSPARENT_BOUNCES",
]
