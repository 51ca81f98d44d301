"""What a batch reconstructs: each command-line input classified, named and checked.

An input is one of:

- a transforms.json data set: a folder with ``transforms_train.json`` (NeRF-synthetic, as our
  captures write) or ``transforms.json`` (nerfstudio), or such a ``.json`` file itself;
- a COLMAP sparse model: a folder holding ``cameras`` + ``images`` (``.bin`` or ``.txt``)
  itself, or in ``sparse/0`` or ``sparse`` below it (photos in the usual ``images`` folder);
- a ``.blend`` file whose objects are captured first: ``scene.blend`` (the file's selection,
  else every render-visible geometry object) or ``scene.blend:Chair,Table``.

Each input is named for its results' folder under the batch output: the data set's folder
name (the scene folder for ``scene/sparse/0``), the .blend's stem (plus the object names when
given), or ``NAME=PATH`` to choose it. Names must differ (case-insensitively: macOS and Windows
folders do not tell ``Chair`` from ``chair``); an input that is none of the above is kept as
``kind == "invalid"`` with its one-line ``problem``, so that it fails alone in the summary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import GSError

__all__ = ["InputKind", "BatchInput", "RESERVED_NAMES", "parse_input", "resolve_inputs",
           "colmap_sparse_dir"]

InputKind = Literal["transforms", "colmap", "blend", "invalid"]

# Names taken by the batch's own files and folders in the output folder.
RESERVED_NAMES = ("_failed", "summary.csv", "summary.json")

_NAMED = re.compile(r"^([\w.+-]+)=(.+)$")
_BLEND_OBJECTS = re.compile(r"^(.*\.blend):([^/\\]+)$", re.IGNORECASE)
_SPARSE_FILES = ("cameras", "images")


@dataclass(frozen=True)
class BatchInput:
    """One input of a batch, resolved."""

    name: str  # the item's folder name in the batch output
    source: str  # the argument as the user gave it
    path: Path  # absolute: data set folder or file, COLMAP sparse folder, or .blend file
    kind: InputKind
    objects: tuple[str, ...] = ()  # .blend: the objects to capture (empty: the file's choice)
    problem: str = ""  # kind "invalid": why, in one line


def colmap_sparse_dir(folder: Path) -> Path | None:
    """The COLMAP sparse model folder at or below ``folder`` (itself, sparse/0, sparse)."""
    for candidate in (folder, folder / "sparse" / "0", folder / "sparse"):
        for ext in (".bin", ".txt"):
            if all((candidate / f"{stem}{ext}").is_file() for stem in _SPARSE_FILES):
                return candidate
    return None


def _scene_name(path: Path) -> str:
    """``scene`` for ``scene``, ``scene/sparse`` and ``scene/sparse/0``."""
    if path.name == "sparse":
        return path.parent.name
    if path.name.isdigit() and path.parent.name == "sparse":
        return path.parent.parent.name
    return path.name


def _clean_name(raw: str) -> str:
    name = re.sub(r"[^\w.+-]+", "_", raw).strip(".")
    return name or "item"


def _classify(path: Path) -> tuple[InputKind, Path, str, str]:
    """(kind, model path, default name, problem) of an existing or missing path."""
    if not path.exists():
        return "invalid", path, path.stem, f"{path}: no such file or folder"
    if path.is_file():
        if path.suffix.lower() == ".blend":
            return "blend", path, path.stem, ""
        if path.suffix.lower() == ".json":
            name = path.parent.name if path.stem.startswith("transforms") else path.stem
            return "transforms", path, name, ""
        return "invalid", path, path.stem, (f"{path}: not a data set or a .blend file (give a "
                                            "data set folder, a transforms .json or a .blend)")
    if (path / "transforms_train.json").is_file() or (path / "transforms.json").is_file():
        return "transforms", path, path.name, ""
    sparse = colmap_sparse_dir(path)
    if sparse is not None:
        return "colmap", sparse, _scene_name(path), ""
    return "invalid", path, _scene_name(path), (
        f"{path}: not a data set (no transforms_train.json or transforms.json, and no COLMAP "
        "cameras + images in it, in sparse/0 or in sparse)")


def parse_input(spec: str) -> BatchInput:
    """Classify one command-line input (see the module docstring); never raises for a bad
    path: that becomes an ``invalid`` input with its problem."""
    chosen = None
    named = _NAMED.match(spec)
    text = spec
    if named and not Path(spec).exists():
        chosen, text = named.group(1), named.group(2)
    objects: tuple[str, ...] = ()
    with_objects = _BLEND_OBJECTS.match(text)
    if with_objects and not Path(text).exists():
        text = with_objects.group(1)
        objects = tuple(o.strip() for o in with_objects.group(2).split(",") if o.strip())
    path = Path(text).expanduser().absolute()
    kind, model, name, problem = _classify(path)
    if objects:
        name = f"{name}-{'-'.join(objects)}"
    return BatchInput(name=_clean_name(chosen or name), source=spec, path=model, kind=kind,
                      objects=objects, problem=problem)


def resolve_inputs(specs) -> list[BatchInput]:
    """Every input classified and named; GSError when there are none, when two get the same
    name or when a name is one the batch keeps for itself."""
    inputs = [parse_input(str(spec)) for spec in specs]
    if not inputs:
        raise GSError("no inputs: give data set folders, COLMAP folders or .blend files")
    seen: dict[str, BatchInput] = {}
    for item in inputs:
        if item.name in RESERVED_NAMES:
            raise GSError(f"input {item.source!r} would be named {item.name!r}, a name the batch "
                          "uses for its own files; name it with NAME=PATH")
        other = seen.get(item.name.casefold())
        if other is not None:
            raise GSError(f"two inputs are named {item.name!r}: {other.source} and "
                          f"{item.source}; name one with NAME=PATH (e.g. {item.name}-2="
                          f"{item.source})")
        seen[item.name.casefold()] = item
    return inputs
