"""Photos for pose recovery: listing, reading (EXIF orientation applied), size and camera checks,
masks, and the working copies SfM and the fit read.

SfM here assumes one camera shared by every photo (one lens, one zoom, one image size), which is
what makes small captures register. So a folder is checked before any work: at least
:data:`MIN_PHOTOS` readable photos; one camera make/model where the EXIF says; one aspect ratio
after EXIF orientation (a portrait among landscapes is refused, naming it). Photos of one aspect
but different pixel sizes are all scaled to the smallest one's working size.

Working copies are PNGs named ``<stem>.png`` (``<stem>_<suffix>.png`` when two photos share a
stem), at most ``max_size`` pixels on the longer side, RGB, or RGBA with the mask as alpha. For
COLMAP the mask of each image goes to ``<mask folder>/<image name>.png`` (its convention:
features where the mask is 0 are ignored). HEIC/HEIF photos are read when the ``pillow-heif``
package is installed (pillow alone does not read them).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GSError
from .packages import register_heif

__all__ = ["PHOTO_SUFFIXES", "MIN_PHOTOS", "PhotoInfo", "PreparedImage", "list_photos",
           "inspect_photo", "check_photo_set", "working_size", "read_photo", "find_masks",
           "prepare_images", "name_list", "focal_prior"]

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".heic", ".heif", ".tif", ".tiff", ".webp", ".bmp")
MIN_PHOTOS = 3
# Aspect ratios closer than this are one camera's (crops round to whole pixels differently).
_ASPECT_TOLERANCE = 0.01
_EXIF_MAKE, _EXIF_MODEL, _EXIF_ORIENTATION, _EXIF_IFD, _FOCAL_35MM = 271, 272, 274, 0x8769, 0xA405
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class PhotoInfo:
    """What the header of one photo says (sizes after EXIF orientation)."""

    path: Path
    width: int
    height: int
    camera: str  # EXIF "make model", "" when the file does not say
    focal_35mm: float | None  # EXIF 35 mm-equivalent focal length in mm


@dataclass(frozen=True)
class PreparedImage:
    """A working copy: ``name`` is its file name in the images folder."""

    name: str
    source: Path
    width: int
    height: int


def name_list(names, limit: int = 8) -> str:
    """'a, b, c' or 'a, b, … and 12 more' for messages."""
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def list_photos(folder) -> list[Path]:
    """The photos in ``folder`` (not recursive), in name order; GSError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GSError(f"{folder}: no such folder")
    photos = sorted(p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
                    and not p.name.startswith("."))
    if not photos:
        raise GSError(f"{folder}: no photos in this folder (looked for "
                      f"{', '.join(s.lstrip('.') for s in PHOTO_SUFFIXES)})")
    return photos


def _open(path: Path):
    from PIL import Image

    if path.suffix.lower() in (".heic", ".heif") and not register_heif():
        raise GSError(f"{path}: HEIC/HEIF photos need the pillow-heif package "
                      "(pip install pillow-heif), or convert them to JPEG")
    try:
        return Image.open(path)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise GSError(f"{path}: cannot read this photo ({err})") from None


def inspect_photo(path) -> PhotoInfo:
    """Size (after EXIF orientation), camera and focal length from the header of ``path``."""
    path = Path(path)
    with _open(path) as im:
        width, height = im.size
        try:
            exif = im.getexif()
            orientation = exif.get(_EXIF_ORIENTATION, 1)
            make, model = (str(exif.get(t, "")).strip("\x00 ") for t in (_EXIF_MAKE, _EXIF_MODEL))
            focal = exif.get_ifd(_EXIF_IFD).get(_FOCAL_35MM)
        except (OSError, ValueError, TypeError, SyntaxError):
            orientation, make, model, focal = 1, "", "", None
    if orientation in _TRANSPOSED:
        width, height = height, width
    camera = " ".join(part for part in (make, model) if part)
    try:
        focal = float(focal) if focal else None
    except (TypeError, ValueError):
        focal = None
    return PhotoInfo(path=path, width=width, height=height, camera=camera, focal_35mm=focal)


def check_photo_set(infos: list[PhotoInfo], *, source) -> None:
    """Refuse a set SfM with one shared camera cannot use: too few photos, several cameras,
    several aspect ratios. Messages name the photos concerned."""
    if len(infos) == 1:
        raise GSError(f"{source}: only one photo ({infos[0].path.name}); poses need at least "
                      f"{MIN_PHOTOS} overlapping photos of the subject from different positions "
                      "(20 or more work best)")
    if len(infos) < MIN_PHOTOS:
        raise GSError(f"{source}: too few photos ({len(infos)}: "
                      f"{name_list(i.path.name for i in infos)}); poses need at least "
                      f"{MIN_PHOTOS} overlapping photos (20 or more work best)")
    cameras = Counter(i.camera for i in infos if i.camera)
    if len(cameras) > 1:
        main = cameras.most_common(1)[0][0]
        others = [i.path.name for i in infos if i.camera and i.camera != main]
        raise GSError(
            f"{source}: the photos come from {len(cameras)} cameras ("
            + "; ".join(f"{cam}: {n}" for cam, n in cameras.most_common())
            + f"); poses are recovered for one camera at a time. Not from {main}: "
            + name_list(others))
    aspects = [i.width / i.height for i in infos]
    common = Counter(round(a, 2) for a in aspects).most_common(1)[0][0]
    odd = [i for i, a in zip(infos, aspects) if abs(a / common - 1.0) > _ASPECT_TOLERANCE]
    if odd:
        main = next(i for i, a in zip(infos, aspects) if abs(a / common - 1.0) <= _ASPECT_TOLERANCE)
        raise GSError(
            f"{source}: the photos have different shapes: most are {main.width}×{main.height}, "
            f"but {name_list(f'{i.path.name} ({i.width}×{i.height})' for i in odd)} differ; "
            "poses need one camera at one image shape (rotate or crop them alike, or leave "
            "them out)")


def working_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    """(w, h) scaled down so the longer side is at most ``max_size`` (0: unchanged)."""
    longer = max(width, height)
    if not max_size or longer <= max_size:
        return width, height
    f = max_size / longer
    return max(1, round(width * f)), max(1, round(height * f))


def read_photo(path, size: tuple[int, int] | None = None, *, mode: str = "RGB") -> np.ndarray:
    """Read a photo (EXIF orientation applied) as uint8 [H, W, C] in ``mode`` ("RGB", "L",
    or "A": the alpha channel, else the luminance), resized to ``size`` = (w, h) when given."""
    from PIL import Image, ImageOps

    path = Path(path)
    with _open(path) as im:
        try:
            im = ImageOps.exif_transpose(im)
            if mode == "A":
                im = im.getchannel("A") if "A" in im.getbands() else im.convert("L")
            else:
                im = im.convert(mode)
            if size is not None and im.size != tuple(size):
                im = im.resize(tuple(size), Image.Resampling.LANCZOS)
            data = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise GSError(f"{path}: cannot read this photo; the file is damaged or not an "
                          f"image ({err})") from None
    return data if data.ndim == 3 else data[..., None]


def find_masks(masks_dir, photos: list[Path]) -> dict[Path, Path]:
    """The mask of each photo in ``masks_dir``: ``<photo name>.png`` (COLMAP's naming) or any
    image with the photo's stem. GSError naming the photos that have none."""
    masks_dir = Path(masks_dir)
    if not masks_dir.is_dir():
        raise GSError(f"{masks_dir}: no such masks folder")
    by_stem: dict[str, Path] = {}
    for p in sorted(masks_dir.iterdir()):
        if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES:
            by_stem.setdefault(p.stem, p)
    found, missing = {}, []
    for photo in photos:
        mask = masks_dir / f"{photo.name}.png"
        mask = mask if mask.is_file() else by_stem.get(photo.stem)
        if mask is None:
            missing.append(photo.name)
        else:
            found[photo] = mask
    if missing:
        raise GSError(f"{masks_dir}: no mask for {name_list(missing)} (expected "
                      "<photo name>.png or an image with the photo's name)")
    return found


def _unique_names(paths: list[Path]) -> list[str]:
    stems = Counter(p.stem for p in paths)
    return [f"{p.stem}.png" if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.')}.png"
            for p in paths]


def prepare_images(infos: list[PhotoInfo], images_dir, *, max_size: int, masks=None,
                   colmap_masks_dir=None, should_stop=None) -> list[PreparedImage] | None:
    """Write the working copies (and COLMAP masks) of ``infos``; None when stopped.

    ``masks``: {photo path: mask path} (:func:`find_masks`); a mask must have its photo's size.
    """
    from PIL import Image

    images_dir = Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    smallest = min(infos, key=lambda i: i.width * i.height)
    size = working_size(smallest.width, smallest.height, max_size)
    prepared = []
    for info, name in zip(infos, _unique_names([i.path for i in infos])):
        if should_stop is not None and should_stop():
            return None
        rgb = read_photo(info.path, size)
        if masks:
            alpha = _mask_for(masks[info.path], info, size)
            rgb = np.concatenate([rgb, alpha], axis=-1)
            if colmap_masks_dir is not None:
                Path(colmap_masks_dir).mkdir(parents=True, exist_ok=True)
                Image.fromarray(alpha[..., 0]).save(Path(colmap_masks_dir) / f"{name}.png")
        Image.fromarray(rgb).save(images_dir / name, compress_level=1)
        prepared.append(PreparedImage(name=name, source=info.path, width=size[0],
                                      height=size[1]))
    return prepared


def _mask_for(mask_path: Path, info: PhotoInfo, size) -> np.ndarray:
    mask = inspect_photo(mask_path)
    if (mask.width, mask.height) != (info.width, info.height):
        raise GSError(f"{mask_path}: the mask is {mask.width}×{mask.height} but its photo "
                      f"{info.path.name} is {info.width}×{info.height}")
    return read_photo(mask_path, size, mode="A")


def focal_prior(infos: list[PhotoInfo], size: tuple[int, int]) -> float | None:
    """Focal length in working pixels from a shared EXIF 35 mm-equivalent focal, else None."""
    focals = {i.focal_35mm for i in infos}
    if len(focals) != 1 or None in focals:
        return None
    f35 = focals.pop()
    if not (math.isfinite(f35) and f35 > 0):
        return None
    # 35 mm equivalents refer to the 36 mm side of a full frame; the diagonal rule (43.3 mm)
    # is what the standard means, and matches phones' 4:3 images to within a few percent.
    return f35 / 43.27 * math.hypot(*size)
