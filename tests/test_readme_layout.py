"""The README's layout table matches the tree: every path it names exists, and every package of
the core and every module of the Blender side is named (a new module joins the table)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _table_paths() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Layout"):]
    paths = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        first = row.split("|")[1]
        names = re.findall(r"`([^`]+)`", first)
        folder = names[0].rsplit("/", 1)[0] + "/" if "/" in names[0].rstrip("/") else ""
        paths.add(names[0])
        # Later names in a cell are siblings of the first: `scene/a.py`, `b.py`.
        paths.update(folder + name if "/" not in name else name for name in names[1:])
    return paths


def _product_entries() -> set[str]:
    wanted = set()
    core = ROOT / "blender_gs_addon"
    for path in core.iterdir():
        if path.is_dir() and (path / "__init__.py").is_file():
            wanted.add(f"blender_gs_addon/{path.name}/")
        elif path.suffix == ".py" and path.name not in ("__init__.py", "__main__.py"):
            wanted.add(f"blender_gs_addon/{path.name}")
    for path in (ROOT / "scene").iterdir():
        if path.is_dir() and (path / "__init__.py").is_file():
            wanted.add(f"scene/{path.name}/")
        elif path.suffix == ".py" and path.name != "__init__.py":
            wanted.add(f"scene/{path.name}")
    return wanted


def test_every_path_in_the_layout_table_exists():
    missing = sorted(p for p in _table_paths() if not (ROOT / p).exists())
    assert missing == []


def test_every_core_package_and_scene_module_is_in_the_layout_table():
    assert sorted(_product_entries() - _table_paths()) == []
