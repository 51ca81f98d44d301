"""Load the Blender side of the extension (the repository root) from plain Python.

Blender loads the extension as ``bl_ext.<repo>.<id>``; its modules reach the core with relative
imports (``from ..blender_gs_addon import formats``). The command line and the tests already have
the core imported as the top-level ``blender_gs_addon``; loading the extension package next to it
would otherwise give a second copy of every core module (two ``GSError`` classes, two
``SplatSet`` classes). :func:`load_extension` therefore loads the root ``__init__.py`` under
:data:`EXTENSION_ID` and makes ``<id>.blender_gs_addon[.x]`` resolve to the already imported
``blender_gs_addon[.x]`` modules. This file does not import bpy; the extension it loads does.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .errors import GSError

__all__ = ["EXTENSION_ID", "extension_root", "load_extension", "extension_module"]

EXTENSION_ID = "gaussian_splats"
_CORE = __name__.rpartition(".")[0]  # "blender_gs_addon" when imported top-level


def extension_root() -> Path:
    """The folder holding blender_manifest.toml and the extension's ``__init__.py``."""
    return Path(__file__).resolve().parent.parent


class _CoreAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve ``<id>.blender_gs_addon.*`` to the top-level core modules."""

    def __init__(self, package: str):
        self.prefix = f"{package}.{_CORE}"

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.prefix or fullname.startswith(self.prefix + "."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(_CORE + spec.name[len(self.prefix):])

    def exec_module(self, module):
        pass  # already executed under its top-level name


def load_extension(name: str = EXTENSION_ID) -> ModuleType:
    """Import the extension package (needs bpy importable) and return it; idempotent."""
    if name in sys.modules:
        return sys.modules[name]
    root = extension_root()
    init = root / "__init__.py"
    if not (root / "blender_manifest.toml").is_file() or not init.is_file():
        raise GSError(f"the Blender side of the extension is not installed next to the core "
                      f"({root}); Blender commands need the full extension folder")
    if _CORE == "blender_gs_addon":
        sys.meta_path.insert(0, _CoreAlias(name))
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[
        str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def extension_module(relative: str, *, name: str = EXTENSION_ID) -> ModuleType:
    """A module of the Blender side, e.g. ``extension_module("scene.splat_object")``."""
    package = load_extension(name)
    return importlib.import_module(f"{package.__name__}.{relative}")
