"""PLY header parsing shared by the INRIA and the compressed (PlayCanvas) .ply readers.

Only what splat files need: ``format`` ascii / binary_little_endian / binary_big_endian, any
number of elements with scalar properties, ``comment``/``obj_info`` lines. Elements with list
properties are recorded (``has_list``) so readers can refuse them where a byte size is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import GSError

__all__ = ["PlyElement", "PlyHeader", "read_ply_header", "PLY_TYPES", "MAX_HEADER_BYTES"]

MAX_HEADER_BYTES = 1 << 20  # no sane splat header is larger; guards against binary garbage

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


@dataclass
class PlyElement:
    name: str
    count: int
    properties: list[tuple[str, str]] = field(default_factory=list)  # (name, numpy code)
    has_list: bool = False

    def dtype(self, byte_order: str) -> np.dtype:
        """Structured dtype of one row in a binary file ('<' or '>')."""
        return np.dtype([(name, byte_order + code) for name, code in self.properties])

    def property_names(self) -> list[str]:
        return [name for name, _ in self.properties]


@dataclass
class PlyHeader:
    format: str  # "ascii", "binary_little_endian", "binary_big_endian"
    elements: list[PlyElement]
    header_size: int  # bytes up to and including the end_header line
    comments: list[str]

    @property
    def byte_order(self) -> str:
        return ">" if self.format == "binary_big_endian" else "<"

    def element(self, name: str) -> PlyElement | None:
        for el in self.elements:
            if el.name == name:
                return el
        return None


_END_HEADER = re.compile(rb"(?:^|\n)end_header[ \t\r]*\n")
_COUNT = re.compile(r"[0-9]{1,19}")  # ASCII digits only; 19 digits keep int() cheap and bounded


def _header_lines(head: bytes, source: str) -> tuple[list[str], int]:
    """The header's lines after the magic, and the size of the header in bytes."""
    if head[:16].split(b"\n", 1)[0].strip() != b"ply":
        raise GSError(f"{source}: not a PLY file (missing 'ply' magic)")
    # The end_header line must be a line of its own: a comment may contain the word.
    match = _END_HEADER.search(head)
    if match is None:
        if b"end_header" in head:
            raise GSError(f"{source}: PLY header ends without a newline after end_header")
        raise GSError(f"{source}: PLY header has no end_header line (truncated or not a PLY)")
    # Comments in real files are sometimes UTF-8; keywords are checked word by word below.
    lines = head[:match.start()].decode("utf-8", errors="replace").replace("\r", "").split("\n")
    return lines[1:], match.end()


def _format_of(words: list[str], line: str, source: str) -> str:
    if len(words) != 3 or words[1] not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise GSError(f"{source}: unsupported PLY format line {line!r}")
    if words[2] != "1.0":
        raise GSError(f"{source}: unsupported PLY version {words[2]!r}")
    return words[1]


def _add_property(element: PlyElement, words: list[str], line: str, number: int, seen: set,
                  source: str) -> None:
    if len(words) == 5 and words[1] == "list":
        name, code = words[4], "list"
        element.has_list = True
    elif len(words) == 3 and words[1] in PLY_TYPES:
        name, code = words[2], PLY_TYPES[words[1]]
    else:
        raise GSError(f"{source}: unsupported property on line {number}: {line[:200]!r}")
    if name in seen:
        raise GSError(f"{source}: property {name!r} appears twice in element {element.name!r}")
    seen.add(name)
    element.properties.append((name, code))


def read_ply_header(data: bytes | memoryview, *, source: str) -> PlyHeader:
    """Parse the header at the start of ``data`` (the whole file or its first MiB)."""
    lines, header_size = _header_lines(bytes(data[:MAX_HEADER_BYTES]), source)
    fmt = None
    elements: list[PlyElement] = []
    comments: list[str] = []
    seen: set[str] = set()  # property names of the current element (a set: headers can be long)
    for number, line in enumerate(lines, start=2):
        words = line.split()
        if not words:
            continue
        key = words[0]
        if key in ("comment", "obj_info"):
            comments.append(line[len(key):].strip())
        elif key == "format":
            fmt = _format_of(words, line, source)
        elif key == "element":
            if len(words) != 3 or not _COUNT.fullmatch(words[2]):
                raise GSError(f"{source}: bad element line {number}: {line[:200]!r}")
            elements.append(PlyElement(words[1], int(words[2])))
            seen = set()
        elif key == "property":
            if not elements:
                raise GSError(f"{source}: property before any element on line {number}")
            _add_property(elements[-1], words, line, number, seen, source)
        else:
            raise GSError(f"{source}: unknown PLY header keyword {key[:40]!r} on line {number}")
    if fmt is None:
        raise GSError(f"{source}: PLY header has no format line")
    return PlyHeader(format=fmt, elements=elements, header_size=header_size, comments=comments)
