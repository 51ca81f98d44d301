"""The display node group for this file: reused, appended from a per-version cache, or built.

Building the ~350-node group through the API costs about half a second (each node and link
updates the whole tree); the first build per Blender version is written to a cache .blend in the
extension's user folder, and later files append it in a few milliseconds. The cache is keyed by
the tree's version, a digest of the code that builds it and Blender's version, only read from a
folder that is the user's own, and rebuilt when unreadable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import bpy

from ...blender_gs_addon import mesh_layout as layout
from . import material as material_module
from . import nodes as nodes_module
from . import tree as tree_module
from .material import MATERIAL_NAME
from .tree import NODE_GROUP_NAME, TREE_VERSION, VERSION_PROP, build_display_tree

__all__ = ["display_node_group", "cache_path"]


def _source_digest() -> str:
    """Of the code the tree is built from, so an edited tree never meets an old cache even
    when nobody bumped ``TREE_VERSION``."""
    import hashlib

    digest = hashlib.sha256()
    for module in (tree_module.__file__, material_module.__file__, nodes_module.__file__,
                   layout.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:12]


def cache_path() -> Path | None:
    """Where a built display group is kept for the next file: the extension's user folder,
    else a folder of this user's in the temporary directory; named by the tree's version and
    Blender's. None when there is no safe place."""
    name = (f"display_v{TREE_VERSION}_{_source_digest()}_blender_"
            f"{'_'.join(map(str, bpy.app.version))}.blend")
    package = __package__.rsplit(".", 2)[0]  # the extension package
    try:
        return Path(bpy.utils.extension_path_user(package, path="cache", create=True)) / name
    except (ValueError, AttributeError, OSError):  # not installed as an extension
        pass
    uid = getattr(os, "getuid", None)  # POSIX; Windows' temporary folder is per user already
    folder = Path(tempfile.gettempdir()) / f"gs_display_cache_{uid() if uid else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    # Only a folder that is ours and private: someone else's file is never loaded.
    if uid is not None and (info.st_uid != uid() or info.st_mode & 0o077):
        return None
    return folder / name


def _group_from_cache() -> bpy.types.NodeTree | None:
    """Append the group (and its material) written by :func:`_group_to_cache`, or None.

    Building the ~350-node group through the Python API costs about half a second (every
    node and link change updates the whole tree); appending it costs a few milliseconds. Only
    used when the file has no splat material yet, so appending never makes a second one."""
    path = cache_path()
    if path is None or not path.is_file() or bpy.data.materials.get(MATERIAL_NAME) is not None:
        return None
    before = set(bpy.data.node_groups)
    try:
        with bpy.data.libraries.load(str(path), link=False) as (source, target):
            target.node_groups = [n for n in source.node_groups if n == NODE_GROUP_NAME]
    except (OSError, RuntimeError, ValueError):
        return None
    # Appending leaves an unused reference to the cache file behind: not part of the scene.
    for lib in list(bpy.data.libraries):
        if Path(bpy.path.abspath(lib.filepath)) == path and not getattr(lib, "users_id", ()):
            bpy.data.libraries.remove(lib)
    new = [g for g in bpy.data.node_groups if g not in before]
    tree = next((g for g in new if g.get(VERSION_PROP) == TREE_VERSION
                 and g.bl_idname == 'GeometryNodeTree'), None)
    if tree is None or len(new) != 1:  # not what this version writes: build instead
        for group in new:
            bpy.data.node_groups.remove(group)
        mat = bpy.data.materials.get(MATERIAL_NAME)
        if mat is not None and mat.users == 0:
            bpy.data.materials.remove(mat)
        return None
    tree.use_fake_user = False
    tree.name = NODE_GROUP_NAME
    return tree


def _group_to_cache(tree: bpy.types.NodeTree) -> None:
    path = cache_path()
    if path is None:
        return
    partial = path.with_name(path.name + ".partial")
    try:
        bpy.data.libraries.write(str(partial), {tree}, fake_user=True, compress=False)
        os.replace(partial, path)
        for old in path.parent.glob("display_v*.blend"):  # other versions' trees
            if old != path:
                old.unlink(missing_ok=True)
    except (OSError, RuntimeError):
        partial.unlink(missing_ok=True)  # no cache: the next file builds again


def display_node_group() -> bpy.types.NodeTree:
    """The shared display node group (made on first use; rebuilt when out of date)."""
    tree = bpy.data.node_groups.get(NODE_GROUP_NAME)
    if tree is not None and tree.get(VERSION_PROP) == TREE_VERSION:
        return tree
    if tree is not None:
        tree.name = NODE_GROUP_NAME + " (old)"
    new = _group_from_cache()
    if new is None:
        new = bpy.data.node_groups.new(NODE_GROUP_NAME, 'GeometryNodeTree')
        try:
            build_display_tree(new)
        except BaseException:
            bpy.data.node_groups.remove(new)
            if tree is not None:
                tree.name = NODE_GROUP_NAME
            raise
        new[VERSION_PROP] = TREE_VERSION
        _group_to_cache(new)
    if tree is not None:
        tree.user_remap(new)
        bpy.data.node_groups.remove(tree)
    return new
