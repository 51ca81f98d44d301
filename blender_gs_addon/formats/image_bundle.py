"""A JSON file plus lossless 8-bit RGBA images, as a zip archive or as files in a folder.

This is the container of PlayCanvas SOG (``.sog`` = the zip, ``meta.json`` = the folder form),
kept apart from the format so the safety checks live in one place:

* Nothing is decompressed before its size is known and checked against a budget the caller
  derives from the splat count: zip members by the size their central directory declares
  (zipfile then stops at that size and verifies the CRC, so a member that inflates further is
  an error, not a bomb), and by that size against their compressed size with the
  decompression-ratio guard of :class:`~.reader_contract.ReadLimits`; images by the width ×
  height in their header (Pillow reads only the header on open; its own bomb warning is
  turned into the same error).
* Member names come from the JSON; they must be relative paths inside the bundle.
* Images must be WebP or PNG, 8 bits per channel; they are always returned as [H, W, 4].
* Writing: WebP lossless with ``exact`` (RGB under alpha 0 kept: SOG stores opacity in alpha);
  a zip is written to a temporary file and renamed, so a failed write leaves no partial file.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import posixpath
import tempfile
import warnings
import zipfile
import zlib

import numpy as np

from ..errors import GSError
from .reader_contract import ReadLimits, resolve_limits

__all__ = ["ImageBundle", "encode_webp", "write_bundle"]

_IMAGE_FORMATS = ("WEBP", "PNG")
_MAX_JSON_BYTES = 16 << 20  # a SOG meta.json is a few tens of KB


class ImageBundle:
    """Read access to the files of a bundle: ``ImageBundle(path)`` for a zip archive or for a
    JSON file whose images lie beside it (told apart by content). ``json_name`` is the JSON
    file inside a zip; with ``expect_zip`` anything but a zip archive is refused; ``limits``
    bounds how far a zip member may inflate."""

    def __init__(self, path: str | os.PathLike, *, json_name: str = "meta.json",
                 expect_zip: bool = False, limits: ReadLimits | None = None):
        self.source = os.fspath(path)
        self.limits = resolve_limits(limits)
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        with open(self.source, "rb") as fh:  # an OSError is the reader's to name
            is_zip = zipfile.is_zipfile(fh)
        if expect_zip and not is_zip:
            raise GSError(f"{self.source}: not a zip archive (a bundled file must be a zip of "
                          f"{json_name} and its images)")
        if is_zip:
            try:
                self._zip = zipfile.ZipFile(self.source)
            except (zipfile.BadZipFile, OSError, ValueError) as err:
                raise GSError(f"{self.source}: not a readable zip archive ({err})") from None
            self._prefix = self._json_folder(json_name)
            self.json_name = self._prefix + json_name
        else:
            self._folder = os.path.dirname(os.path.abspath(self.source))
            self.json_name = os.path.basename(self.source)

    def _json_folder(self, json_name: str) -> str:
        names = self._zip.namelist()
        if json_name in names:
            return ""
        nested = [n for n in names if posixpath.basename(n) == json_name]
        if len(nested) != 1:
            raise GSError(f"{self.source}: the archive has no {json_name} at its root"
                          + (" (several in subfolders)" if nested else ""))
        return posixpath.dirname(nested[0]) + "/"

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> ImageBundle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------ members
    def _member(self, name: str) -> str:
        if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
            raise GSError(f"{self.source}: bad file name {name!r} in {self.json_name}")
        clean = posixpath.normpath(name)
        if clean.startswith(("/", "../")) or clean == ".." or ":" in clean.split("/")[0]:
            raise GSError(f"{self.source}: file name {name!r} points outside the bundle")
        return clean

    def size(self, name: str) -> int:
        """Declared size in bytes of a member (the zip's central directory, or the file's)."""
        member = self._member(name)
        if self._zip is not None:
            try:
                return self._zip.getinfo(self._prefix + member).file_size
            except KeyError:
                raise GSError(f"{self.source}: the archive lacks {member}") from None
        try:
            return os.path.getsize(os.path.join(self._folder, member))
        except OSError:
            raise GSError(f"{self.source}: {member} is missing next to "
                          f"{self.json_name}") from None

    def stored_size(self, names: list[str]) -> int:
        """Bytes on disk behind the bundle: the archive, or the JSON file and the named files
        beside it (missing ones count 0: reading them fails later, by name)."""
        total = os.path.getsize(self.source)
        if self._zip is None:
            for name in dict.fromkeys(names):
                try:
                    total += self.size(name)
                except GSError:
                    pass
        return total

    def read(self, name: str, limit: int) -> bytes:
        """A member's bytes, refusing (before reading) one that declares more than ``limit``
        or, in a zip, one that would inflate beyond the limits' expansion ratio."""
        member = self._member(name)
        size = self.size(member)
        if size > limit:
            raise GSError(f"{self.source}: {member} declares {size:,} bytes, more than the "
                          f"{limit:,} this file can need (corrupt or a decompression bomb)")
        if self._zip is not None:
            packed = self._zip.getinfo(self._prefix + member).compress_size
            if size > self.limits.expansion_allowance and \
                    size > self.limits.max_expansion * max(packed, 1):
                raise GSError(f"{self.source}: {member} declares {size:,} bytes from {packed:,} "
                              f"compressed, an expansion of {size / max(packed, 1):,.0f}:1; "
                              "refused as a likely decompression bomb")
        wanted = min(size, limit) + 1  # never a buffer for more than the member declares
        try:
            if self._zip is not None:
                with self._zip.open(self._prefix + member) as fh:
                    data = fh.read(wanted)
            else:
                with open(os.path.join(self._folder, member), "rb") as fh:
                    data = fh.read(wanted)
        except OSError as err:
            if self._zip is None and member == self.json_name:
                raise  # the file itself: the reader names it
            raise GSError(f"{self.source}: cannot read {member} ({err.strerror or err})") from None
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, NotImplementedError,
                RuntimeError, EOFError, ValueError) as err:  # what a damaged member raises
            raise GSError(f"{self.source}: cannot read {member} ({err})") from None
        if len(data) > limit:
            raise GSError(f"{self.source}: {member} is larger than {limit:,} bytes")
        return data

    def read_json(self) -> dict:
        data = self.read(self.json_name[len(self._prefix):], _MAX_JSON_BYTES)
        try:
            value = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise GSError(f"{self.source}: {self.json_name} is not valid JSON ({err})") from None
        if not isinstance(value, dict):
            raise GSError(f"{self.source}: {self.json_name} must hold a JSON object")
        return value

    # ------------------------------------------------------------------------------- images
    def image(self, name: str, *, byte_limit: int, max_pixels: int) -> np.ndarray:
        """[H, W, 4] uint8 pixels of a WebP/PNG member; its header's W·H must be ≤
        ``max_pixels`` (checked before anything is decoded)."""
        from PIL import Image

        data = self.read(name, byte_limit)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
            with im:
                width, height = im.size
                if im.format not in _IMAGE_FORMATS:
                    raise GSError(f"{self.source}: {name} is a {im.format} image; expected "
                                  "lossless WebP (or PNG)")
                if width * height > max_pixels:
                    raise GSError(f"{self.source}: {name} declares {width}x{height} pixels, "
                                  f"more than the {max_pixels:,} this file can need "
                                  "(corrupt or an image bomb)")
                if im.mode not in ("RGBA", "RGB"):
                    raise GSError(f"{self.source}: {name} has pixel mode {im.mode}; expected "
                                  "8-bit RGB or RGBA")
                im.load()
                rgba = np.asarray(im.convert("RGBA") if im.mode != "RGBA" else im)
        except GSError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise GSError(f"{self.source}: {name} declares too many pixels ({err})") from None
        except (OSError, ValueError, SyntaxError) as err:
            raise GSError(f"{self.source}: {name} is not a readable image ({err})") from None
        return rgba


def encode_webp(pixels: np.ndarray, *, effort: int = 1) -> bytes:
    """[H, W, 4] uint8 → lossless WebP bytes. ``effort`` 0–6 trades speed for size (libwebp's
    method; the encoder's quality, which means effort in lossless mode, follows it)."""
    from PIL import Image

    if not 0 <= effort <= 6:
        raise GSError(f"WebP effort must be 0-6, got {effort}")
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGBA").save(
        out, "WEBP", lossless=True, exact=True, method=effort, quality=min(100, effort * 20))
    return out.getvalue()


def write_bundle(path: str | os.PathLike, files: dict[str, bytes], *, zipped: bool,
                 json_name: str) -> None:
    """Write ``files`` (name → bytes): a zip at ``path`` (images stored, JSON deflated), or the
    JSON at ``path`` with the other files beside it."""
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    try:
        if not zipped:
            for name, data in files.items():
                with open(target if name == json_name else os.path.join(folder, name), "wb") as fh:
                    fh.write(data)
            return
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
                for name, data in files.items():
                    # A fixed date keeps the archive a function of its content (reproducible).
                    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = (zipfile.ZIP_DEFLATED if name.endswith(".json")
                                          else zipfile.ZIP_STORED)
                    info.external_attr = 0o644 << 16
                    archive.writestr(info, data)
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(temp, 0o666 & ~mask)  # mkstemp makes it private; give it the usual mode
            os.replace(temp, target)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
    except OSError as err:
        raise GSError(f"{target}: cannot write file ({err.strerror or err})") from None
