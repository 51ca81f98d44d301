"""PLY header parsing shared by the INRIA and the compressed (PlayCanvas) .ply readers.

Only what splat files need: ``format`` ascii / binary_little_endian / binary_big_endian, any
number of elements with scalar properties, ``comment``/``obj_info`` lines. Elements with list
properties are recorded (``has_list``) so readers can refuse them where a byte size is needed.
"""

from __future__ import annotations

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


def read_ply_header(data: bytes | memoryview, *, source: str) -> PlyHeader:
    """Parse the header at the start of ``data`` (the whole file or its first MiB)."""
    head = bytes(data[:MAX_HEADER_BYTES])
    if not head.startswith(b"ply"):
        raise GSError(f"{source}: not a PLY file (missing 'ply' magic)")
    end = head.find(b"end_header")
    if end < 0:
        raise GSError(f"{source}: PLY header has no end_header line (truncated or not a PLY)")
    stop = head.find(b"\n", end)
    if stop < 0:
        raise GSError(f"{source}: PLY header ends without a newline after end_header")
    try:
        lines = head[:end].decode("ascii").replace("\r", "").split("\n")
    except UnicodeDecodeError:
        raise GSError(f"{source}: PLY header contains non-ASCII bytes") from None
    fmt = None
    elements: list[PlyElement] = []
    comments: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words:
            continue
        key = words[0]
        if key in ("comment", "obj_info"):
            comments.append(line[len(key):].strip())
        elif key == "format":
            if len(words) != 3 or words[1] not in (
                "ascii", "binary_little_endian", "binary_big_endian"
            ):
                raise GSError(f"{source}: unsupported PLY format line {line!r}")
            if words[2] != "1.0":
                raise GSError(f"{source}: unsupported PLY version {words[2]!r}")
            fmt = words[1]
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise GSError(f"{source}: bad element line {number}: {line!r}")
            elements.append(PlyElement(words[1], int(words[2])))
        elif key == "property":
            if not elements:
                raise GSError(f"{source}: property before any element on line {number}")
            if len(words) == 5 and words[1] == "list":
                elements[-1].has_list = True
                elements[-1].properties.append((words[4], "list"))
                continue
            if len(words) != 3 or words[1] not in PLY_TYPES:
                raise GSError(f"{source}: unsupported property on line {number}: {line!r}")
            names = [n for n, _ in elements[-1].properties]
            if words[2] in names:
                raise GSError(f"{source}: property {words[2]!r} appears twice in element "
                              f"{elements[-1].name!r}")
            elements[-1].properties.append((words[2], PLY_TYPES[words[1]]))
        else:
            raise GSError(f"{source}: unknown PLY header keyword {key!r} on line {number}")
    if fmt is None:
        raise GSError(f"{source}: PLY header has no format line")
    return PlyHeader(format=fmt, elements=elements, header_size=stop + 1, comments=comments)
