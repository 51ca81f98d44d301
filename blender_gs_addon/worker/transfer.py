"""Files carried in-band over the worker protocol: bundles.

A :class:`Bundle` is a list of files, each named by a relative POSIX path, sent as one byte
stream (the files one after another) in base64 ``data`` lines of
:data:`~.protocol.CHUNK_BYTES`, closed by ``data_end`` with the stream's size and SHA-256
(:func:`bundle_messages`). The receiving side (:class:`BundleReceiver`) writes each file under
its own private folder, refuses paths that would leave it (absolute, ``..``, backslashes,
empty parts), refuses more bytes than announced, and checks size and checksum at the end;
:meth:`BundleReceiver.abort` removes whatever a failed or cancelled transfer wrote, so nothing
half-written is ever taken for a result.

:func:`dataset_bundle` packs exactly what a transforms.json data set needs (its json files and
the image of every frame), so the worker never reads the Blender side's folders.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import GSError, Report, log_report
from .protocol import CHUNK_BYTES

__all__ = ["BundleFile", "Bundle", "dataset_bundle", "photos_bundle", "folder_files",
           "bundle_messages", "BundleReceiver", "check_bundle_path", "MAX_BUNDLE_FILES",
           "format_megabytes"]

MAX_BUNDLE_FILES = 5000  # the manifest travels in one protocol line


@dataclass(frozen=True)
class BundleFile:
    path: str           # relative POSIX path inside the bundle
    size: int           # bytes
    source: Path | None = None  # where the sending side reads it from


@dataclass(frozen=True)
class Bundle:
    files: tuple[BundleFile, ...]

    @classmethod
    def of_files(cls, root, paths) -> Bundle:
        """The files ``root/p`` for each relative path ``p`` (sizes read now)."""
        root = Path(root)
        files = []
        for path in paths:
            check_bundle_path(path)
            source = root / path
            try:
                size = source.stat().st_size
            except OSError as err:
                raise GSError(f"{source}: cannot be sent to the worker ({err})") from None
            files.append(BundleFile(path=str(path), size=size, source=source))
        return cls(tuple(files))

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self) -> list[dict]:
        return [{"path": f.path, "size": f.size} for f in self.files]

    def chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The files' bytes, one after another, in pieces of ``chunk_bytes``."""
        pending = bytearray()
        for entry in self.files:
            sent = 0
            with open(entry.source, "rb") as fh:
                while block := fh.read(chunk_bytes):
                    sent += len(block)
                    pending += block
                    while len(pending) >= chunk_bytes:
                        yield bytes(pending[:chunk_bytes])
                        del pending[:chunk_bytes]
            if sent != entry.size:
                raise GSError(f"{entry.source} changed size while it was being sent "
                              f"({entry.size:,} → {sent:,} bytes)")
        if pending:
            yield bytes(pending)


def check_bundle_path(path) -> str:
    """``path`` if it is a plain relative POSIX path inside a bundle, else GSError."""
    text = str(path)
    parts = PurePosixPath(text).parts
    if (not text or "\\" in text or "\0" in text or text.startswith("/") or ":" in parts[0]
            or any(p in ("", ".", "..") for p in text.split("/"))):
        raise GSError(f"bundle path {text[:200]!r} is not a plain relative path")
    return text


def dataset_bundle(folder, *, prefix: str = "capture", report: Report = log_report) -> Bundle:
    """The transforms json files of data set ``folder`` and every frame's image, under
    ``prefix/`` with their paths relative to the folder. GSError when a frame's image lies
    outside the folder (the worker on the far side could not see it)."""
    from ..datasets.nerf_synthetic import read_transforms

    dataset = read_transforms(folder, check_images=True, report=report)
    root = Path(dataset.root).resolve()
    wanted: dict[str, Path] = {}
    sources = [Path(f) for f in dataset.metadata.get("source_files", [])]
    for source in sources + [v.file_path for v in dataset.views if v.file_path is not None]:
        resolved = Path(os.path.abspath(source))
        try:
            relative = resolved.relative_to(root).as_posix()
        except ValueError:
            raise GSError(f"{folder}: {source} lies outside the data set folder; only files "
                          "inside it are sent to the worker") from None
        wanted[f"{prefix}/{relative}"] = resolved
    if len(wanted) > MAX_BUNDLE_FILES:
        raise GSError(f"{folder}: {len(wanted):,} files are more than the worker protocol "
                      f"sends in one job ({MAX_BUNDLE_FILES:,})")
    return Bundle(tuple(BundleFile(path=check_bundle_path(p), size=s.stat().st_size, source=s)
                        for p, s in sorted(wanted.items())))


def folder_files(root, relative: str) -> list[str]:
    """The files under ``root/relative`` (recursively, sorted), as bundle paths relative to
    ``root``: what an output named ``relative/`` (a folder) sends."""
    root = Path(root)
    base = root / check_bundle_path(relative.rstrip("/"))
    return sorted(p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file())


def _files_of(folder: Path, suffixes) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))


def photos_bundle(source, *, masks=None) -> tuple[Bundle, str]:
    """What a ``photos`` job needs of a folder of photos (its photos under ``photos/``, the
    masks folder's images under ``masks/``) or of a video (``photos/<name>``), and the job's
    ``source`` parameter. GSError naming what is wrong with ``source`` (missing, no photos in
    the folder, not a video file) before anything is sent."""
    from ..poses.photos import PHOTO_SUFFIXES, list_photos
    from ..poses.recover import source_kind

    source = Path(source)
    wanted: dict[str, Path] = {}
    if source_kind(source, masks=masks) == "video":
        wanted[f"photos/{source.name}"] = source
        kind = f"photos/{source.name}"
    else:
        wanted.update((f"photos/{p.name}", p) for p in list_photos(source))
        kind = "photos"
    if masks:
        masks = Path(masks)
        if not masks.is_dir():
            raise GSError(f"{masks}: no such masks folder")
        wanted.update((f"masks/{p.name}", p) for p in _files_of(masks, PHOTO_SUFFIXES))
    if len(wanted) > MAX_BUNDLE_FILES:
        raise GSError(f"{source}: {len(wanted):,} files are more than the worker protocol "
                      f"sends in one job ({MAX_BUNDLE_FILES:,})")
    files = []
    for path, file in wanted.items():
        try:
            files.append(BundleFile(path=check_bundle_path(path), size=file.stat().st_size,
                                    source=file))
        except OSError as err:
            raise GSError(f"{file}: cannot be read ({err})") from None
    return Bundle(tuple(files)), kind


def bundle_messages(job_id: str, bundle: Bundle, *,
                    should_stop: Callable[[], bool] | None = None) -> Iterator[dict]:
    """The ``data`` lines of ``bundle`` and its closing ``data_end``; stops early (no
    ``data_end``) once ``should_stop()`` says so."""
    digest = hashlib.sha256()
    size = 0
    for chunk in bundle.chunks():
        if should_stop is not None and should_stop():
            return
        digest.update(chunk)
        size += len(chunk)
        yield {"type": "data", "id": job_id, "data": base64.b64encode(chunk).decode("ascii")}
    yield {"type": "data_end", "id": job_id, "size": size, "sha256": digest.hexdigest()}


def format_megabytes(done: int, total: int) -> str:
    """'1.2 of 3.4 MB' (kB below a megabyte)."""
    if total < 1e6:
        return f"{done / 1e3:.0f} of {total / 1e3:.0f} kB"
    return f"{done / 1e6:.1f} of {total / 1e6:.1f} MB"


class BundleReceiver:
    """Writes an incoming bundle under ``root`` (created private) as its data lines arrive.

    Args:
        root: the folder to write into (made with mode 0700 if missing).
        manifest: [{"path", "size"}] as announced; checked here.
    """

    def __init__(self, root, manifest, *, size=None):
        self.root = Path(root)
        self.files = _checked_manifest(manifest)
        self.total = sum(size for _, size in self.files)
        if size is not None and size != self.total:
            raise GSError(f"bundle announces {size} bytes but its files hold {self.total}")
        self.received = 0
        self.started = time.monotonic()
        self.seconds = 0.0
        self._digest = hashlib.sha256()
        self._index, self._left, self._handle = 0, 0, None
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._open_next()

    def path(self, relative: str) -> Path:
        return self.root / check_bundle_path(relative)

    def _open_next(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        while self._index < len(self.files):
            relative, size = self.files[self._index]
            self._index += 1
            target = self.path(relative)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._handle, self._left = open(target, "xb"), size
            if size:
                return
            self._handle.close()
            self._handle = None

    def write_base64(self, text) -> None:
        """Decode one ``data`` line's payload and write it."""
        if not isinstance(text, str):
            raise GSError("a data line without base64 text")
        try:
            self.write(base64.b64decode(text, validate=True))
        except binascii.Error as err:
            raise GSError(f"a data line is not valid base64 ({err})") from None

    def write(self, data: bytes) -> None:
        if self.received + len(data) > self.total:
            raise GSError(f"more data than the {self.total:,} bytes announced")
        self._digest.update(data)
        self.received += len(data)
        view = memoryview(data)
        while view:
            take = min(self._left, len(view))
            self._handle.write(view[:take])
            view, self._left = view[take:], self._left - take
            if self._left == 0:
                self._open_next()

    def finish(self, size, sha256) -> None:
        """Check the closing ``data_end``: all bytes there, the checksum right."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.seconds = time.monotonic() - self.started
        if size != self.total or self.received != self.total:
            raise GSError(f"the transfer ended after {self.received:,} of {self.total:,} bytes")
        if sha256 != self._digest.hexdigest():
            raise GSError("the transfer arrived corrupted (SHA-256 mismatch)")

    def abort(self) -> None:
        """Close and remove every file this receiver wrote."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        for relative, _ in self.files[:self._index]:
            try:
                self.path(relative).unlink()
            except OSError:
                pass


def _checked_manifest(manifest) -> list[tuple[str, int]]:
    if not isinstance(manifest, list) or len(manifest) > MAX_BUNDLE_FILES:
        raise GSError("a bundle manifest must be a list of at most "
                      f"{MAX_BUNDLE_FILES:,} files")
    files, seen = [], set()
    for entry in manifest:
        if not isinstance(entry, dict):
            raise GSError("a bundle manifest entry is not an object")
        path, size = entry.get("path"), entry.get("size")
        if not isinstance(path, str):
            raise GSError("a bundle manifest entry has no path")
        check_bundle_path(path)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise GSError(f"bundle file {path!r}: size must be a whole number ≥ 0")
        if path in seen:
            raise GSError(f"bundle file {path!r} is listed twice")
        seen.add(path)
        files.append((path, size))
    return files
