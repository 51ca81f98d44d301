"""Frames from a video for pose recovery: evenly in time, the sharpest frame of each window.

The video's duration is cut into ``count`` equal windows; every frame is decoded once (PyAV,
whose wheels ship their own FFmpeg) and scored by the variance of its Laplacian on a small grey
copy (blurred frames — motion blur, focus hunting — score low); the best frame of each window
is written as ``frame_NNNN.png`` at the working size, turned upright by the stream's display
rotation (phone videos). Windows without any frame (a very short video) are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GSError
from .packages import require_av
from .photos import working_size

__all__ = ["VIDEO_SUFFIXES", "sharpness", "sample_video_frames"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".mts")
# Sharpness is judged on a copy this wide: enough for edges, cheap for every frame.
_SCORE_WIDTH = 320


def sharpness(grey) -> float:
    """Variance of the 4-neighbour Laplacian of a [H, W] grey image (higher is sharper)."""
    g = np.asarray(grey, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1])
    return float(lap.var())


def _open(path: Path):
    av = require_av()

    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except (av.FFmpegError, OSError, IndexError, ValueError) as err:
        reason = "it has no video stream" if isinstance(err, IndexError) else err
        raise GSError(f"{path}: the video decoder cannot read this file ({reason})") from None
    stream.thread_type = "AUTO"
    return container, stream


def _length(path: Path, container, stream) -> tuple[float | None, int | None]:
    """(duration in seconds, None) from the headers, else (None, packet count) by demuxing."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base), None
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000.0, None  # in av.time_base units
    total = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return None, total


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Undo a display rotation (degrees counter-clockwise, as FFmpeg's display matrix says)."""
    turns = (round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def sample_video_frames(path, images_dir, *, count: int, max_size: int,
                        should_stop=None) -> list[Path] | None:
    """Write the sharpest frame of each of ``count`` equal time windows; their paths, in time
    order (None when stopped). GSError when the file cannot be decoded or has no frames."""
    from PIL import Image

    av = require_av()
    path, images_dir = Path(path), Path(images_dir)
    if count < 1:
        raise GSError(f"frames to sample must be at least 1, got {count}")
    images_dir.mkdir(parents=True, exist_ok=True)
    container, stream = _open(path)
    written: list[Path] = []
    best: dict = {"window": None, "score": -1.0, "frame": None}

    def flush() -> None:
        if best["frame"] is None:
            return
        frame = best["frame"]
        rotation = int(getattr(frame, "rotation", 0) or 0)
        w, h = working_size(frame.width, frame.height, max_size)
        rgb = _upright(frame.to_ndarray(width=w, height=h, format="rgb24"), rotation)
        out = images_dir / f"frame_{len(written) + 1:04d}.png"
        Image.fromarray(rgb).save(out, compress_level=1)
        written.append(out)

    try:
        duration, total = _length(path, container, stream)
        start = None
        for index, frame in enumerate(container.decode(stream)):
            if should_stop is not None and index % 10 == 0 and should_stop():
                return None
            if duration and frame.time is not None:
                start = frame.time if start is None else start
                position = (frame.time - start) / duration
            else:
                position = index / max(total or 1, 1)
            window = min(count - 1, max(0, int(count * position)))
            if window != best["window"]:
                flush()
                best.update(window=window, score=-1.0, frame=None)
            h = max(3, round(frame.height * _SCORE_WIDTH / max(frame.width, 1)))
            score = sharpness(frame.to_ndarray(width=_SCORE_WIDTH, height=h, format="gray"))
            if score > best["score"]:
                best.update(score=score, frame=frame)
        flush()
    except av.FFmpegError as err:
        raise GSError(f"{path}: the video decoder failed after {len(written)} frames "
                      f"({err})") from None
    finally:
        container.close()
    if not written:
        raise GSError(f"{path}: the video has no frames the decoder could read")
    return written
