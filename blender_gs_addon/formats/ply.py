"""INRIA 3DGS .ply: read (binary LE/BE, ascii; any numeric property type) and write.

The file holds one ``vertex`` element whose properties are the raw trained parameters::

    x y z [nx ny nz] f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2 rot_0..3 [extras]

``f_rest`` is channel-major in the file (index c·K + k: all red coefficients, then green, then
blue) and becomes ``sh_rest[N, K, 3]`` (coefficient-major, RGB inner). Readers find properties
by name, in any order; normals are ignored; other per-vertex properties are kept in
:attr:`SplatSet.extra` (or dropped with ``keep_extra=False``). Other elements are skipped.

Speed: binary data is read in cache-sized chunks straight into the SplatSet arrays (two threads,
numpy releases the GIL), so peak memory is about the size of the result, not twice the file.
Writing builds one [N, P] float32 block and writes it with a single ``tofile``.

Every round trip (binary little/big endian, ascii with 9 significant digits) is bit-exact.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import GSError, Report, log_report
from ..sh import degree_for_coeffs
from ..splats import SplatSet
from .ply_header import MAX_HEADER_BYTES, PlyElement, PlyHeader, read_ply_header
from .reader_contract import ReadLimits, splat_reader

__all__ = ["read_ply", "write_ply", "ply_property_names"]

_NORMALS = ("nx", "ny", "nz")
_REST_NAME = re.compile(r"f_rest_(\d+)")
_EXTRA_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_CHUNK_BYTES = 1 << 20  # per-thread read buffer: small enough to stay in cache while gathered


def _standard_groups(rest_count: int) -> dict[str, list[str]]:
    """SplatSet field → file property names, f_rest in file (channel-major) order."""
    return {
        "positions": ["x", "y", "z"],
        "sh_dc": [f"f_dc_{i}" for i in range(3)],
        "sh_rest": [f"f_rest_{i}" for i in range(3 * rest_count)],
        "opacity_logits": ["opacity"],
        "log_scales": [f"scale_{i}" for i in range(3)],
        "rotations": [f"rot_{i}" for i in range(4)],
    }


def ply_property_names(splats: SplatSet, *, include_normals: bool = False) -> list[str]:
    """Vertex property names in the order :func:`write_ply` writes them (extras last)."""
    k = splats.sh_rest.shape[1]
    groups = _standard_groups(k)
    names = ["x", "y", "z"]
    if include_normals:
        names += list(_NORMALS)
    names += groups["sh_dc"] + groups["sh_rest"] + ["opacity"]
    names += groups["log_scales"] + groups["rotations"]
    return names + list(splats.extra)


# ---------------------------------------------------------------------------------- reading
def _read_ply(source: str, *, limits: ReadLimits, report: Report,
              keep_extra: bool = True) -> tuple[SplatSet, bool]:
    """Read a 3DGS .ply file: ``read_ply(path, *, nonfinite="drop", limits=None,
    keep_extra=True, report=log_report)``.

    Args:
        path: the file.
        nonfinite: ``"drop"`` splats with NaN/Inf (reported) or ``"error"``; an opacity logit
            of ±inf is kept, clamped (see :mod:`.reader_contract`).
        limits: :class:`ReadLimits` (default: 50 M splats at most).
        keep_extra: keep unknown per-vertex properties in ``extra`` (reported as INFO); when
            False they are dropped with a WARNING.
    Returns:
        The splats, float32, in the file's order (minus dropped rows).
    Raises:
        GSError naming the file for anything that is not a readable 3DGS .ply, a file with no
        splats, or one declaring more than ``limits`` allow.
    """
    with open(source, "rb") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        header = read_ply_header(fh.read(MAX_HEADER_BYTES), source=source)
        vertex, before, after = _split_elements(header, source)
        if vertex.count == 0:
            follow = file_size - header.header_size
            raise GSError(f"{source}: the header declares no splats ('element vertex 0')"
                          + (f" although {follow:,} bytes of data follow it" if follow > 0
                             else ""))
        columns = _plan_columns(vertex, source, keep_extra=keep_extra, report=report)
        read_table = _read_ascii if header.format == "ascii" else _read_binary
        splats, suspicious = read_table(fh, header, vertex, before, after, columns,
                                        file_size, source=source, limits=limits, report=report)
    return splats, not suspicious


read_ply = splat_reader(_read_ply)


def _split_elements(header: PlyHeader, source: str
                    ) -> tuple[PlyElement, list[PlyElement], list[PlyElement]]:
    for i, el in enumerate(header.elements):
        if el.name == "vertex":
            return el, header.elements[:i], header.elements[i + 1:]
    names = ", ".join(el.name for el in header.elements) or "none"
    raise GSError(f"{source}: PLY file has no 'vertex' element (elements: {names}); this does "
                  "not look like a Gaussian splat file")


@dataclass
class _Columns:
    """Which vertex property (by index) feeds which SplatSet field."""

    fields: dict[str, np.ndarray]  # field name → [m] property indices, in the field's order
    rest_count: int  # K
    extra: list[str]  # extra property names kept
    extra_index: np.ndarray  # [E] their property indices


def _plan_columns(vertex: PlyElement, source: str, *, keep_extra: bool,
                  report: Report) -> _Columns:
    names = vertex.property_names()
    if vertex.has_list:
        lists = [n for n, code in vertex.properties if code == "list"]
        raise GSError(f"{source}: the vertex element has list properties ({', '.join(lists)}); "
                      "this does not look like a Gaussian splat file")
    position = {name: i for i, name in enumerate(names)}
    rest_ids = sorted(int(m.group(1)) for n in names if (m := _REST_NAME.fullmatch(n)))
    if rest_ids != list(range(len(rest_ids))):
        raise GSError(f"{source}: f_rest_* properties are not numbered 0..{len(rest_ids) - 1} "
                      f"without gaps ({len(rest_ids)} present)")
    if len(rest_ids) % 3 or degree_for_coeffs(len(rest_ids) // 3) is None:
        raise GSError(f"{source}: {len(rest_ids)} f_rest_* properties; expected 0, 9, 24 or 45 "
                      "(SH degree 0-3)")
    k = len(rest_ids) // 3
    groups = _standard_groups(k)
    missing = [n for group in groups.values() for n in group if n not in position]
    if missing:
        raise GSError(f"{source}: vertex element lacks {', '.join(missing)}; this does not look "
                      "like a Gaussian splat file")
    fields = {}
    for field, group in groups.items():
        index = [position[n] for n in group]
        if field == "sh_rest":
            # file order c·K + k → SplatSet order (k, c)
            index = [index[c * k + j] for j in range(k) for c in range(3)]
        fields[field] = np.asarray(index, dtype=np.intp)
    known = {n for group in groups.values() for n in group} | set(_NORMALS)
    extra = [n for n in names if n not in known]
    if extra and keep_extra:
        report({"INFO"}, f"{source}: kept extra per-splat properties {_name_list(extra)}")
    elif extra:
        report({"WARNING"}, f"{source}: dropped extra per-splat properties {_name_list(extra)}")
        extra = []
    return _Columns(fields, k, extra, np.asarray([position[n] for n in extra], np.intp))


def _name_list(names: Sequence[str], *, shown: int = 12) -> str:
    """'a, b, c' — or the first ``shown`` names and how many more (a header may have 20,000)."""
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f" … and {len(names) - shown:,} more"


def _empty_result(count: int, columns: _Columns) -> tuple[SplatSet, np.ndarray]:
    """The result to fill, and its extras as one [E, N] block (each ``extra`` is a row of it,
    so thousands of extra properties are filled by one copy per chunk, not one each)."""
    k = columns.rest_count
    extra_block = np.empty((len(columns.extra), count), np.float32)  # [E, N]
    out = SplatSet(
        positions=np.empty((count, 3), np.float32), log_scales=np.empty((count, 3), np.float32),
        rotations=np.empty((count, 4), np.float32), opacity_logits=np.empty(count, np.float32),
        sh_dc=np.empty((count, 3), np.float32), sh_rest=np.empty((count, k, 3), np.float32),
        extra=dict(zip(columns.extra, extra_block)),
    )
    return out, extra_block


def _destinations(out: SplatSet, extra_block: np.ndarray,
                  columns: _Columns) -> list[tuple[np.ndarray, np.ndarray]]:
    """(2-D destination [N, m], property indices [m]) for every field of ``out``."""
    count = out.count
    dests = [(getattr(out, f).reshape(count, idx.size), idx)
             for f, idx in columns.fields.items()]
    dests.append((extra_block.T, columns.extra_index))  # [N, E] view
    return [(d, i) for d, i in dests if i.size]


def _copy_plan(index: np.ndarray):
    """How to gather ``index`` columns from a [n, P] block: a slice, a transpose or a take."""
    start = int(index[0])
    if np.array_equal(index, np.arange(start, start + index.size)):
        return ("slice", start, start + index.size)
    if index.size % 3 == 0:
        k = index.size // 3
        channel_major = start + np.arange(3 * k).reshape(3, k).T.reshape(-1)
        if np.array_equal(index, channel_major):
            return ("transpose", start, k)
    return ("take", index)


def _gather(block: np.ndarray, dest: np.ndarray, plan) -> None:
    """dest[n, m] ← the planned columns of block[n, P] (both float32)."""
    if plan[0] == "slice":
        dest[...] = block[:, plan[1]:plan[2]]
    elif plan[0] == "transpose":
        start, k = plan[1], plan[2]
        # destination seen as [n, 3, K] so the inner copy loop runs over K, not 3
        dest.reshape(-1, k, 3).transpose(0, 2, 1)[...] = (
            block[:, start:start + 3 * k].reshape(-1, 3, k))
    else:
        np.take(block, plan[1], axis=1, out=dest)


def _element_bytes(el: PlyElement, byte_order: str) -> int:
    """Bytes of a binary element; callers rule out list properties unless the count is 0."""
    return el.count * el.dtype(byte_order).itemsize if el.count else 0


def _read_binary(fh, header: PlyHeader, vertex: PlyElement, before: list[PlyElement],
                 after: list[PlyElement], columns: _Columns, file_size: int, *, source: str,
                 limits: ReadLimits, report: Report) -> tuple[SplatSet, bool]:
    """The vertex table of a binary file, and whether it may hold non-finite rows."""
    order = header.byte_order
    offset = header.header_size
    for el in before:
        if el.has_list and el.count:
            raise GSError(f"{source}: element {el.name!r} before the vertex data has list "
                          "properties, so the vertex data cannot be located in this binary file")
        offset += _element_bytes(el, order)
    row = vertex.dtype(order)
    need = offset + vertex.count * row.itemsize
    if need > file_size:
        raise GSError(f"{source}: header claims {vertex.count:,} vertices ({row.itemsize} bytes "
                      f"each, data ending at byte {need:,}) but the file has only "
                      f"{file_size:,} bytes (truncated or a lying header)")
    limits.check_count(vertex.count, source=source)
    if not any(el.has_list and el.count for el in after):
        end = need + sum(_element_bytes(el, order) for el in after)
        if end < file_size:
            report({"WARNING"}, f"{source}: ignored {file_size - end:,} trailing bytes after "
                                "the PLY data")
        elif end > file_size:
            report({"WARNING"}, f"{source}: elements after the vertex data are truncated "
                                "(ignored; the splats are complete)")
    out, extra_block = _empty_result(vertex.count, columns)
    suspicious = _fill_binary(source, offset, vertex.count, row,
                              _destinations(out, extra_block, columns), out.rotations)
    return out, suspicious


def _fill_binary(source: str, offset: int, count: int, row: np.dtype,
                 dests: list[tuple[np.ndarray, np.ndarray]], rotations: np.ndarray) -> bool:
    """Read ``count`` rows at ``offset`` in chunks and scatter them into ``dests``.

    Returns False when every value read is finite and no quaternion is zero (so the caller
    can skip the full non-finite scan). Each worker thread has its own file handle (portable,
    unlike os.pread) and its own chunk buffer; readinto and the numpy copies release the GIL,
    so two cores share the work.
    """
    codes = {row.fields[n][0] for n in row.names}
    uniform = codes.pop() if len(codes) == 1 else None
    native_f4 = uniform is not None and uniform == np.dtype(np.float32)
    props = len(row.names)
    plans = [(d, _copy_plan(i)) for d, i in dests]
    rows_per_chunk = max(1, _CHUNK_BYTES // row.itemsize)
    chunks = [(s, min(rows_per_chunk, count - s)) for s in range(0, count, rows_per_chunk)]
    errors: list[BaseException] = []
    suspicious: list[bool] = []  # chunks that may hold NaN/Inf or a zero quaternion

    def read_chunks(fh, buffer: bytearray, my_chunks: list[tuple[int, int]]) -> None:
        for start, n in my_chunks:
            nbytes = n * row.itemsize
            fh.seek(offset + start * row.itemsize)
            if fh.readinto(memoryview(buffer)[:nbytes]) != nbytes:  # the file shrank under us
                raise GSError(f"{source}: file ended early while reading vertex {start:,}")
            if native_f4:
                block = np.frombuffer(buffer, np.float32, n * props).reshape(n, props)
            elif uniform is not None:
                block = np.frombuffer(buffer, uniform, n * props).reshape(n, props)
                block = block.astype(np.float32)
            else:
                records = np.frombuffer(buffer, row, n)
                block = np.empty((n, props), np.float32)
                for j, name in enumerate(row.names):
                    block[:, j] = records[name]
            for dest, plan in plans:
                _gather(block, dest[start:start + n], plan)
            # A sum is non-finite whenever any term is (NaN and ±inf propagate): one cheap
            # pass over a cache-hot block instead of SplatSet.finite_mask over all the data.
            bad = not np.isfinite(np.add.reduce(block, axis=None))
            bad |= not np.any(rotations[start:start + n], axis=1).all()
            if bad:
                suspicious.append(True)

    def work(my_chunks: list[tuple[int, int]]) -> None:
        try:
            # errstate is per thread; overflow in the finiteness sum is expected and harmless
            with open(source, "rb") as fh, np.errstate(over="ignore", invalid="ignore"):
                read_chunks(fh, bytearray(rows_per_chunk * row.itemsize), my_chunks)
        except BaseException as err:  # re-raised in the calling thread
            errors.append(err)

    workers = min(2, os.cpu_count() or 1, len(chunks))
    if workers > 1:
        threads = [threading.Thread(target=work, args=(chunks[i::workers],), daemon=True)
                   for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        work(chunks)
    if errors:
        raise errors[0]
    return bool(suspicious)


def _line_starts(data: bytes, start: int, lines: int, *, source: str, what: str) -> int:
    """Offset just after ``lines`` more newline-terminated lines from ``start``."""
    if lines == 0:
        return start
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8, offset=start) == 10)
    if newlines.size < lines:
        if newlines.size == lines - 1 and data[start:].strip():
            return len(data)  # last line without a final newline
        raise GSError(f"{source}: ascii PLY ends inside the {what} (needs {lines:,} lines, "
                      f"found {newlines.size:,})")
    return start + int(newlines[lines - 1]) + 1


def _read_ascii(fh, header: PlyHeader, vertex: PlyElement, before: list[PlyElement],
                after: list[PlyElement], columns: _Columns, file_size: int, *, source: str,
                limits: ReadLimits, report: Report) -> tuple[SplatSet, bool]:
    props = len(vertex.properties)
    # Each value needs at least one character and one separator: refuse lying counts before
    # reading or allocating anything.
    if vertex.count * max(props, 1) * 2 > file_size - header.header_size + 1:
        raise GSError(f"{source}: header claims {vertex.count:,} vertices with {props} values "
                      f"each but the file has only {file_size:,} bytes (truncated or a lying "
                      "header)")
    limits.check_count(vertex.count, source=source)
    fh.seek(0)
    data = fh.read()
    pos = header.header_size
    for el in before:
        if el.count > len(data):
            raise GSError(f"{source}: element {el.name!r} claims {el.count:,} lines but the "
                          f"file has only {file_size:,} bytes")
        pos = _line_starts(data, pos, el.count, source=source, what=f"element {el.name!r}")
    end = _line_starts(data, pos, vertex.count, source=source, what="vertex data")
    text = data[pos:end]
    _check_values_per_line(text, props, source=source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (instead of failing) on unparsable text
        try:
            values = np.fromstring(text, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            values = None
    if values is None or values.size != vertex.count * props:
        raise GSError(f"{source}: ascii vertex data is malformed (expected {props} numbers on "
                      f"each of {vertex.count:,} lines)")
    if not text.endswith(b"\n"):
        last = text.split()[-1].decode("ascii", errors="replace")[:40]
        report({"WARNING"}, f"{source}: the file ends inside the last line of the vertex data "
                            f"(no newline after {last!r}): it may be cut short, and that value "
                            "incomplete")
    table = values.reshape(vertex.count, props).astype(np.float32)
    out, extra_block = _empty_result(vertex.count, columns)
    for dest, index in _destinations(out, extra_block, columns):
        dest[...] = np.take(table, index, axis=1)
    trailing = len(data[end:].strip())
    if trailing and not any(el.count for el in after):
        report({"WARNING"}, f"{source}: ignored {trailing:,} trailing bytes after the PLY data")
    return out, True


def _check_values_per_line(text: bytes, props: int, *, source: str) -> None:
    """Every line of ascii vertex data must hold ``props`` values: a line with one too few and
    another with one too many would otherwise read as shifted rows. Works through the text in
    blocks of whole lines of about 4 MB, so its temporaries stay small."""
    raw = np.frombuffer(text, np.uint8)
    first_line, start = 0, 0
    while start < raw.size:
        cut = text.find(b"\n", start + (1 << 22))
        stop = raw.size if cut < 0 else cut + 1
        part = raw[start:stop]
        space = (part == 32) | (part == 9) | (part == 10) | (part == 13)
        newline = part == 10
        starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))  # tokens
        lines = int(np.count_nonzero(newline)) + (part[-1] != 10)
        per_line = np.bincount(np.cumsum(newline)[starts], minlength=lines)
        wrong = np.flatnonzero(per_line != props)
        if wrong.size:
            line = int(wrong[0])
            raise GSError(f"{source}: ascii vertex line {first_line + line + 1:,} holds "
                          f"{int(per_line[line])} values, expected {props} (corrupt or cut "
                          "file)")
        first_line += lines
        start = stop


# ---------------------------------------------------------------------------------- writing
def write_ply(path: str | os.PathLike, splats: SplatSet, *, include_normals: bool = False,
              ascii: bool = False, byte_order: str = "<", report: Report = log_report) -> None:
    """Write ``splats`` as an INRIA 3DGS .ply (float32 properties, extras after the standard).

    Args:
        include_normals: write zero ``nx ny nz`` after the position (old INRIA layout).
        ascii: text instead of binary; 9 significant digits so float32 round-trips exactly.
        byte_order: ``"<"`` (little endian, the usual) or ``">"`` for binary files.
    """
    target = os.fspath(path)
    if byte_order not in ("<", ">"):
        raise GSError(f"byte_order must be '<' or '>', got {byte_order!r}")
    splats.validate(name=target)
    if splats.count == 0:
        raise GSError(f"{target}: no splats to write (readers refuse a file without splats)")
    names = ply_property_names(splats, include_normals=include_normals)
    for name in splats.extra:
        if not _EXTRA_NAME.fullmatch(name) or name in names[:len(names) - len(splats.extra)] \
                or name in _NORMALS:
            raise GSError(f"{target}: extra property name {name!r} cannot be written to a PLY "
                          "header (use letters, digits, '_', '.', '-' and no standard name)")
    fmt = "ascii" if ascii else ("binary_little_endian" if byte_order == "<"
                                 else "binary_big_endian")
    header = [
        "ply", f"format {fmt} 1.0", f"element vertex {splats.count}",
        *(f"property float {n}" for n in names), "end_header",
    ]
    # Rows go out in blocks of about 1 MiB: cache-hot packing, no full-size second copy.
    rows_per_block = 4096 if ascii else max(1, _CHUNK_BYTES // (4 * len(names)))
    block = np.empty((min(rows_per_block, splats.count), len(names)), np.float32)
    try:
        with open(target, "wb") as fh:
            fh.write(("\n".join(header) + "\n").encode("ascii"))
            for start in range(0, splats.count, rows_per_block):
                stop = min(start + rows_per_block, splats.count)
                rows = block[:stop - start]
                _pack_rows(splats, start, stop, rows, include_normals=include_normals)
                if ascii:
                    _write_ascii_rows(fh, rows)
                else:
                    rows.astype(byte_order + "f4", copy=False).tofile(fh)
    except OSError as err:
        raise GSError.from_os_error(target, err, "write") from None


def _pack_rows(splats: SplatSet, start: int, stop: int, rows: np.ndarray, *,
               include_normals: bool) -> None:
    """rows[stop - start, P] ← splats[start:stop] in :func:`ply_property_names` order."""
    n, k = stop - start, splats.sh_rest.shape[1]
    col = 0

    def put(values: np.ndarray, m: int) -> None:
        nonlocal col
        rows[:, col:col + m] = values[start:stop].reshape(n, m)
        col += m

    put(splats.positions, 3)
    if include_normals:
        rows[:, col:col + 3] = 0.0
        col += 3
    put(splats.sh_dc, 3)
    if k:
        # [n, K, 3] → channel-major [n, 3, K]
        rows[:, col:col + 3 * k].reshape(n, 3, k).transpose(0, 2, 1)[...] = (
            splats.sh_rest[start:stop])
        col += 3 * k
    put(splats.opacity_logits, 1)
    put(splats.log_scales, 3)
    put(splats.rotations, 4)
    for values in splats.extra.values():
        put(values, 1)


def _write_ascii_rows(fh, rows: np.ndarray) -> None:
    """One line per splat, '%.9g' (enough digits for float32 to round-trip exactly)."""
    line = " ".join(["%.9g"] * rows.shape[1]) + "\n"
    fh.write(((line * rows.shape[0]) % tuple(rows.ravel().tolist())).encode("ascii"))
