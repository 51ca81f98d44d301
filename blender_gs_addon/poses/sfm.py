"""Structure from motion with pycolmap (CPU SIFT, matching, incremental mapping).

pycolmap is imported only here and only inside functions: Blender's Python never runs this
(pose recovery is a worker job). Defaults that register small objects — measured on rendered
views of a textured object: COLMAP's stock settings placed 0–36 of 40–120 views, these place
all or all but one (see docs/benchmarks.md):

* one camera shared by every image (:attr:`SfmConfig.camera_model`, principal point fixed at
  the centre); per-image cameras let focal lengths drift apart;
* SIFT with affine shape and domain-size pooling, peak threshold 0.002 (more, steadier
  features on small, soft textures), guided matching;
* a mapper that accepts a weaker start: initial pair ≥ 30 inliers and ≥ 8° triangulation
  angle, images added from ≥ 15 inliers.

When fewer than :attr:`SfmConfig.min_registered_fraction` of the images register, the run
escalates (:data:`ESCALATION`): a looser mapper on the same matches, then denser features
(re-extracted and re-matched) with the looser mapper; the run that placed the most images is
kept. COLMAP can return several disconnected models: the largest is kept, and the images only
the others hold are reported as left out.

pycolmap 4.x API notes: SIFT options live in ``FeatureExtractionOptions(sift=…)``, the camera
model in ``ImageReaderOptions.camera_model``, ``Image.cam_from_world()`` is a method,
``has_pose`` replaces ``registered``, ``num_threads=-1`` means all cores. Multi-threaded runs
are not bit-repeatable (``threads=1`` with a fixed seed is).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import GSError, Report, log_report
from .packages import require_pycolmap
from .photos import name_list

__all__ = ["SfmConfig", "SfmResult", "ESCALATION", "run_sfm", "SfmCancelled"]

Progress = Callable[[str, float, str], None]
# COLMAP's pair id: image_id1 · 2147483647 + image_id2 (image_id1 < image_id2).
_MAX_IMAGE_ID = 2147483647


@dataclass(frozen=True)
class SfmConfig:
    """Settings of one SfM run (defaults: the ones that register small objects)."""

    camera_model: Literal["SIMPLE_PINHOLE", "PINHOLE"] = "SIMPLE_PINHOLE"
    """One camera for all images; SIMPLE_PINHOLE keeps pixels square (one focal length)."""
    focal_prior: float | None = None
    """Initial focal length in pixels (from EXIF); None: COLMAP's 1.2 × the longer side."""
    max_image_size: int = 1600
    """SIFT runs on images scaled down to this longer side (keypoints are scaled back)."""
    max_features: int = 8192
    """Most SIFT features kept per image."""
    peak_threshold: float = 0.002
    """SIFT's contrast threshold: lower finds more features in soft textures."""
    affine_shape: bool = True
    """Estimate affine feature shape (better matches under viewpoint change; slower)."""
    domain_size_pooling: bool = True
    """Pool descriptors over several scales (DSP-SIFT: more distinctive)."""
    guided_matching: bool = True
    """Re-match each verified pair guided by its epipolar geometry (more inliers)."""
    matcher: Literal["auto", "exhaustive", "sequential"] = "auto"
    """auto: every pair up to :attr:`exhaustive_max_images` images, else neighbours in order."""
    exhaustive_max_images: int = 200
    """Largest image count matched pair by pair with matcher auto."""
    sequential_overlap: int = 20
    """Sequential matcher: each image is matched with this many following ones."""
    init_min_inliers: int = 30
    """Verified matches the initial image pair needs."""
    init_min_tri_angle: float = 8.0
    """Degrees of triangulation angle the initial pair needs."""
    abs_pose_min_inliers: int = 15
    """2D–3D inliers an image needs to be added to the model."""
    min_registered_fraction: float = 0.9
    """Escalate to looser settings while fewer images than this fraction are placed."""
    escalate: bool = True
    """Try the :data:`ESCALATION` steps when too few images are placed."""
    threads: int = -1
    """CPU threads (−1: all cores; 1 with a fixed seed repeats bit for bit)."""
    seed: int = 0
    """Random seed of RANSAC and the mapper."""


# (name, overrides) tried in turn after the given settings when too few images register.
ESCALATION: tuple[tuple[str, dict], ...] = (
    ("looser mapper", {"init_min_inliers": 15, "init_min_tri_angle": 4.0,
                       "abs_pose_min_inliers": 8}),
    ("denser features", {"init_min_inliers": 15, "init_min_tri_angle": 4.0,
                         "abs_pose_min_inliers": 8, "peak_threshold": 0.001,
                         "max_features": 16384, "max_image_size": 3200}),
)
_FEATURE_FIELDS = ("max_image_size", "max_features", "peak_threshold", "affine_shape",
                   "domain_size_pooling", "camera_model", "focal_prior")
_MATCH_FIELDS = ("guided_matching", "matcher", "exhaustive_max_images", "sequential_overlap")


class SfmCancelled(GSError):
    """should_stop() said yes during SfM."""


@dataclass
class SfmResult:
    """The kept model, in COLMAP's world (arbitrary orientation, origin and scale)."""

    names: list[str]  # every input image, input order
    registered: list[str]  # the placed ones, input order
    world_from_camera: np.ndarray  # [R, 4, 4] OpenCV camera → world, registered order
    image_size: tuple[int, int]  # (width, height) of every image
    focal: tuple[float, float]  # (fx, fy) pixels of the shared camera
    principal_point: tuple[float, float]  # (cx, cy) pixels
    points: np.ndarray  # [P, 3] float64 sparse points
    colours: np.ndarray  # [P, 3] uint8
    reprojection_error: float  # mean, pixels
    models: int  # how many models COLMAP returned
    settings: str  # which ESCALATION step placed them ("default" for the given settings)
    sparse_dir: Path  # the kept model (cameras, images, points3D .bin)
    left_out_reasons: dict[str, str] = field(default_factory=dict)  # name → why
    seconds: dict[str, float] = field(default_factory=dict)  # extract, match, map

    @property
    def left_out(self) -> list[str]:
        placed = set(self.registered)
        return [n for n in self.names if n not in placed]


# ------------------------------------------------------------------------------- options
def _assign(target, values: dict):
    for name, value in values.items():
        setattr(target, name, value)
    return target


def _extraction_options(pycolmap, config: SfmConfig):
    options = _assign(pycolmap.FeatureExtractionOptions(), {
        "num_threads": config.threads, "max_image_size": config.max_image_size})
    _assign(options.sift, {
        "max_num_features": config.max_features, "peak_threshold": config.peak_threshold,
        "estimate_affine_shape": config.affine_shape,
        "domain_size_pooling": config.domain_size_pooling})
    return options


def _reader_options(pycolmap, config: SfmConfig, size: tuple[int, int], mask_dir):
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = config.camera_model
    if config.focal_prior:
        centre = f"{size[0] / 2.0!r},{size[1] / 2.0!r}"
        f = repr(float(config.focal_prior))
        reader.camera_params = f"{f},{centre}" if config.camera_model == "SIMPLE_PINHOLE" \
            else f"{f},{f},{centre}"
    if mask_dir is not None:
        reader.mask_path = str(mask_dir)
    return reader


def _mapping_options(pycolmap, config: SfmConfig):
    options = _assign(pycolmap.IncrementalPipelineOptions(), {
        "num_threads": config.threads, "random_seed": config.seed,
        "ba_refine_principal_point": False, "min_model_size": 3})
    _assign(options.mapper, {
        "init_min_num_inliers": config.init_min_inliers,
        "init_min_tri_angle": config.init_min_tri_angle,
        "abs_pose_min_num_inliers": config.abs_pose_min_inliers, "random_seed": config.seed})
    return options


# ------------------------------------------------------------------------------- stages
@contextmanager
def _cancellable(pycolmap, should_stop):
    """A CancellationToken that a watcher thread trips once should_stop() says yes."""
    if should_stop():
        raise SfmCancelled("pose recovery cancelled")
    token = pycolmap.CancellationToken()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            if should_stop():
                token.cancel()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield token
    except InterruptedError:
        raise SfmCancelled("pose recovery cancelled") from None
    finally:
        done.set()
        watcher.join()
    if token.is_cancelled:
        raise SfmCancelled("pose recovery cancelled")


def _extract(pycolmap, database: Path, images_dir, names, config, size, mask_dir, should_stop):
    if database.exists():
        database.unlink()
    with _cancellable(pycolmap, should_stop) as token:
        pycolmap.extract_features(
            database, images_dir, image_names=list(names),
            camera_mode=pycolmap.CameraMode.SINGLE,
            reader_options=_reader_options(pycolmap, config, size, mask_dir),
            extraction_options=_extraction_options(pycolmap, config),
            device=pycolmap.Device.cpu, cancellation_token=token)


def _match(pycolmap, database: Path, count: int, config: SfmConfig, should_stop) -> None:
    options = _assign(pycolmap.FeatureMatchingOptions(), {
        "num_threads": config.threads, "guided_matching": config.guided_matching})
    exhaustive = config.matcher == "exhaustive" or (
        config.matcher == "auto" and count <= config.exhaustive_max_images)
    with _cancellable(pycolmap, should_stop) as token:
        if exhaustive:
            pycolmap.match_exhaustive(database, matching_options=options,
                                      device=pycolmap.Device.cpu, cancellation_token=token)
        else:
            pairing = _assign(pycolmap.SequentialPairingOptions(), {
                "overlap": config.sequential_overlap, "quadratic_overlap": True,
                "loop_detection": False})  # loop detection needs a vocabulary tree file
            pycolmap.match_sequential(database, matching_options=options,
                                      pairing_options=pairing, device=pycolmap.Device.cpu,
                                      cancellation_token=token)


def _match_diagnosis(pycolmap, database: Path, names) -> dict[str, str]:
    """Why images cannot be placed, from the database: no features, or no verified match."""
    db = pycolmap.Database.open(str(database))
    try:
        ids = {im.image_id: im.name for im in db.read_all_images()}
        no_features = {name for image_id, name in ids.items()
                       if db.num_keypoints_for_image(image_id) == 0}
        pair_ids, inliers = db.read_two_view_geometry_num_inliers()
    finally:
        db.close()
    pairs = np.asarray(pair_ids, dtype=np.int64)[np.asarray(inliers) > 0]
    second = pairs % _MAX_IMAGE_ID
    matched = {ids.get(int(i)) for i in np.concatenate([(pairs - second) // _MAX_IMAGE_ID,
                                                        second])}
    reasons = {}
    for name in names:
        if name in no_features:
            reasons[name] = "no features found (textureless, blurred or too small)"
        elif name not in matched:
            reasons[name] = "shares no features with any other image"
    return reasons


def _map(pycolmap, database: Path, images_dir, out_dir: Path, config, count: int,
         progress: Progress, should_stop):
    out_dir.mkdir(parents=True, exist_ok=True)
    placed = [0]

    def next_image() -> None:
        placed[0] += 1
        progress("map", min(1.0, placed[0] / count), f"placed {placed[0]} of {count} images")

    with _cancellable(pycolmap, should_stop) as token:
        models = pycolmap.incremental_mapping(
            database, images_dir, out_dir, options=_mapping_options(pycolmap, config),
            next_image_callback=next_image, cancellation_token=token)
    return dict(models)


def _largest_model(models: dict):
    if not models:
        return None
    return max(models.values(), key=lambda rec: (rec.num_reg_images(), rec.num_points3D()))


def _levels(config: SfmConfig) -> list[tuple[str, SfmConfig]]:
    levels = [("default", config)]
    if config.escalate:
        levels += [(name, replace(config, **changes)) for name, changes in ESCALATION]
    return levels


def run_sfm(images_dir, names: list[str], work_dir, *, size: tuple[int, int],
            config: SfmConfig | None = None, mask_dir=None, progress: Progress | None = None,
            should_stop: Callable[[], bool] | None = None,
            report: Report = log_report) -> SfmResult:
    """Recover the poses of ``names`` (files in ``images_dir``, all ``size`` = (w, h)).

    ``work_dir`` holds the database and the models (``sparse/<level>/<model>``). Raises
    GSError when the images share no features or no model can be started, naming the images
    at fault; :class:`SfmCancelled` when ``should_stop`` says yes.
    """
    pycolmap = require_pycolmap()

    config = config or SfmConfig()
    progress = progress or (lambda stage, fraction, message: None)
    should_stop = should_stop or (lambda: False)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    database = work_dir / "database.db"
    seconds = {"extract": 0.0, "match": 0.0, "map": 0.0}
    best, best_name, reasons, previous = None, "", {}, None
    quiet = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2  # its INFO/WARNING lines would drown our progress
    try:
        for level, (name, level_config) in enumerate(_levels(config)):
            features_changed = previous is None or any(
                getattr(previous, f) != getattr(level_config, f)
                for f in _FEATURE_FIELDS + _MATCH_FIELDS)
            if features_changed:
                found = _features_and_matches(pycolmap, database, images_dir, names,
                                              level_config, size, mask_dir, seconds,
                                              progress, should_stop, refuse=best is None)
                if found is None:  # these features match nothing: keep the earlier model
                    break
                reasons = found
            previous = level_config
            start = time.perf_counter()
            progress("map", 0.0, f"mapping ({name} settings)")
            models = _map(pycolmap, database, images_dir, work_dir / "sparse" / str(level),
                          level_config, len(names), progress, should_stop)
            seconds["map"] += time.perf_counter() - start
            model = _largest_model(models)
            if model is not None and (best is None
                                      or model.num_reg_images() > best[0].num_reg_images()):
                best, best_name = (model, models), name
            placed = 0 if best is None else best[0].num_reg_images()
            if placed >= config.min_registered_fraction * len(names):
                break
            if level + 1 < len(_levels(config)):
                report({"INFO"}, f"{placed} of {len(names)} images placed with the {name} "
                                 "settings; trying looser ones")
    finally:
        pycolmap.logging.minloglevel = quiet
    if best is None:
        raise GSError(_no_model_message(names, reasons))
    return _result(pycolmap, best[0], best[1], best_name, names, reasons, work_dir, seconds)


def _features_and_matches(pycolmap, database, images_dir, names, config, size, mask_dir,
                          seconds, progress, should_stop, *, refuse: bool = True
                          ) -> dict[str, str] | None:
    """Extract and match; why images are unmatched. When nothing matches: GSError with
    ``refuse``, else None."""
    start = time.perf_counter()
    progress("extract", 0.0, f"finding features in {len(names)} images")
    _extract(pycolmap, database, images_dir, names, config, size, mask_dir, should_stop)
    seconds["extract"] += time.perf_counter() - start
    progress("extract", 1.0, "features found")
    start = time.perf_counter()
    progress("match", 0.0, f"matching {len(names)} images")
    _match(pycolmap, database, len(names), config, should_stop)
    seconds["match"] += time.perf_counter() - start
    reasons = _match_diagnosis(pycolmap, database, names)
    progress("match", 1.0, f"{len(names) - len(reasons)} images matched")
    if len(reasons) == len(names) and not refuse:
        return None
    if len(reasons) == len(names):
        raise GSError("the photos share no features: no two of them could be matched ("
                      + name_list(f"{n}: {r}" for n, r in reasons.items())
                      + "). Use overlapping photos of a textured subject, taken a few steps "
                        "apart")
    return reasons


def _no_model_message(names, reasons) -> str:
    detail = f"; {name_list(f'{n}: {r}' for n, r in reasons.items())}" if reasons else ""
    return (f"no 3D model could be started from the {len(names)} images: no pair of them "
            "overlaps enough with a wide enough baseline (take more photos, a few steps apart, "
            f"of a textured subject){detail}")


def _left_out_reasons(model, models: dict, names, reasons) -> dict[str, str]:
    """Why each image outside ``model`` is out: the match diagnosis, or another model."""
    placed = {im.name for im in model.images.values() if im.has_pose}
    elsewhere = {}
    for other in models.values():
        if other is not model:
            size = other.num_reg_images()
            for im in other.images.values():
                if im.has_pose:
                    elsewhere[im.name] = size
    out = {}
    for name in names:
        if name in placed:
            continue
        if name in reasons:
            out[name] = reasons[name]
        elif name in elsewhere:
            out[name] = (f"placed only in a separate model of {elsewhere[name]} images that "
                         "overlaps too little with the main one")
        else:
            out[name] = "could not be placed in the model"
    return out


def _result(pycolmap, model, models: dict, settings: str, names, reasons, work_dir: Path,
            seconds) -> SfmResult:
    from ..datasets.point_cloud import read_point_cloud

    sparse_dir = work_dir / "model"
    if sparse_dir.exists():
        shutil.rmtree(sparse_dir)
    sparse_dir.mkdir(parents=True)
    model.write(sparse_dir)
    model.export_PLY(str(work_dir / "points.ply"))  # vectorised read below, no loop per point
    points, colours = read_point_cloud(work_dir / "points.ply")
    by_name = {im.name: im for im in model.images.values() if im.has_pose}
    registered = [n for n in names if n in by_name]
    poses = np.tile(np.eye(4), (len(registered), 1, 1))  # [R, 4, 4]
    for i, name in enumerate(registered):
        cam_from_world = np.asarray(by_name[name].cam_from_world().matrix())  # [3, 4]
        rot, t = cam_from_world[:, :3], cam_from_world[:, 3]
        poses[i, :3, :3] = rot.T
        poses[i, :3, 3] = -rot.T @ t
    camera = model.cameras[by_name[registered[0]].camera_id]
    return SfmResult(
        names=list(names), registered=registered, world_from_camera=poses,
        image_size=(int(camera.width), int(camera.height)),
        focal=(float(camera.focal_length_x), float(camera.focal_length_y)),
        principal_point=(float(camera.principal_point_x), float(camera.principal_point_y)),
        points=points, colours=colours,
        reprojection_error=float(model.compute_mean_reprojection_error()),
        models=len(models), settings=settings, sparse_dir=sparse_dir,
        left_out_reasons=_left_out_reasons(model, models, names, reasons),
        seconds=dict(seconds))
