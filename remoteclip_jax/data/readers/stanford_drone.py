"""Stanford Drone Dataset annotations: `annotations/<scene>/video<N>/annotations.txt`.

Format (the dataset's README, Robicquet et al., "Learning Social Etiquette", ECCV 2016), one box
per track and frame, space-separated::

    track_id xmin ymin xmax ymax frame lost occluded generated "label"

`lost` 1: the object is outside the view (no box); `occluded` 1: hidden; `generated` 1: the box
was interpolated. Labels: "Pedestrian", "Biker", "Skateboarder", "Cart", "Car", "Bus".

The dataset is video: captions need still frames, extracted by the user (e.g. with ffmpeg) into
a folder, named by `frame_pattern`. Consecutive frames are nearly identical, so only every
`frame_step`-th frame is returned (default 30, one per second at 30 fps); lost boxes are dropped
and occluded ones flagged difficult.
"""
from __future__ import annotations

import collections
import os
import shlex

from remoteclip_jax.files import as_path
from remoteclip_jax.data.readers._paths import image_size
from remoteclip_jax.data.readers._text import check_box, parse_numbers, read_lines
from remoteclip_jax.data.readers.errors import AnnotationError, OnError, report
from remoteclip_jax.data.types import AnnotatedImage, Box

LABELS = ("Pedestrian", "Biker", "Skateboarder", "Cart", "Car", "Bus")


def parse_stanford_drone_line(text: str, path: str | os.PathLike, number: int
                              ) -> tuple[int, Box] | None:
    """One line: (frame, Box), or None for a blank line or a lost (out of view) object.

    Raises:
        AnnotationError: `path:number: reason` for a malformed line.
    """
    try:
        fields = shlex.split(text)
    except ValueError as e:
        raise AnnotationError(path, number, f"unbalanced quotes ({e})") from None
    if not fields:
        return None
    if len(fields) != 10:
        raise AnnotationError(path, number, "expected 'track_id xmin ymin xmax ymax frame lost "
                                            f"occluded generated label', got {len(fields)} fields")
    track, x0, y0, x1, y1, frame, lost, occluded, _generated = parse_numbers(
        fields[:9], path, number, "field")
    flags = {"lost": lost, "occluded": occluded, "generated": _generated}
    for name, value in flags.items():
        if value not in (0, 1):
            raise AnnotationError(path, number, f"'{name}' must be 0 or 1, got {value:g}")
    if lost:
        return None
    check_box(x0, y0, x1, y1, path, number)
    return int(frame), Box(fields[9], x0, y0, x1, y1, difficult=bool(occluded),
                           ann_id=f"{int(track)}:{int(frame)}")


def read_stanford_drone(annotations: str | os.PathLike, frame_dir: str | os.PathLike | None = None,
                        *, frame_step: int = 30, frame_pattern: str = "{frame:05d}.jpg",
                        source: str = "stanford_drone", on_error: OnError | None = None
                        ) -> list[AnnotatedImage]:
    """Reads one video's `annotations.txt` into one AnnotatedImage per sampled frame.

    Args:
        annotations: the `annotations.txt` file (or its video directory).
        frame_dir: folder of extracted frames (default: `frames/` beside the file).
        frame_step: keep frames whose number is a multiple of this (1: every frame).
        frame_pattern: frame file name, formatted with `frame` (an int).
        source: dataset name for provenance.
        on_error: None raises on the first malformed line; a callable receives each error and
            the line is skipped.

    Returns:
        Frames with at least one visible box, by frame number; `image_id` is
        "<scene>/<video>/<frame>".
    """
    path = as_path(annotations)
    if path.is_dir():
        path = path / "annotations.txt"
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    frame_dir = as_path(frame_dir) if frame_dir is not None else path.parent / "frames"
    by_frame: dict[int, list[Box]] = collections.defaultdict(list)
    for number, text in enumerate(read_lines(path), start=1):
        try:
            parsed = parse_stanford_drone_line(text, path, number)
        except AnnotationError as e:
            report(e, on_error)
            continue
        if parsed is not None and parsed[0] % frame_step == 0:
            by_frame[parsed[0]].append(parsed[1])
    video = f"{path.parent.parent.name}/{path.parent.name}"
    images = []
    for frame in sorted(by_frame):
        image_path = frame_dir / frame_pattern.format(frame=frame)
        width, height = image_size(image_path) if image_path.is_file() else (0, 0)
        images.append(AnnotatedImage(path=str(image_path), width=width, height=height,
                                     boxes=by_frame[frame], source=source,
                                     image_id=f"{video}/{frame}"))
    return images
