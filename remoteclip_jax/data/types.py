"""Plain records that flow from readers to captioning and storage. numpy/PIL only (no jax)."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Box:
    """One annotated object, axis-aligned, in pixel coordinates (x0 < x1, y0 < y1)."""
    category: str          # dataset's raw class name ("small-vehicle", "golffield")
    x0: float
    y0: float
    x1: float
    y1: float
    difficult: bool = False
    ann_id: str = ""       # provenance: original annotation id / line number
    # A region of a segmentation mask (Mask-to-Box) rather than an annotated object: B2C
    # describes regions as quantities of places ("lots of buildings"), not counted objects.
    region: bool = False


@dataclasses.dataclass
class AnnotatedImage:
    """An image path with whatever annotations its dataset gives."""
    path: str
    width: int = 0
    height: int = 0
    boxes: list[Box] = dataclasses.field(default_factory=list)
    captions: list[str] = dataclasses.field(default_factory=list)
    label: str = ""        # scene class for image-folder datasets
    split: str = ""        # train | val | test | "" (unknown)
    source: str = ""       # dataset name
    image_id: str = ""     # provenance: id in the source dataset
    # Encoded image bytes when the image lives inside an archive (webdataset tar) rather than at
    # `path` on disk; empty otherwise.
    data: bytes = b""
    counts: dict[str, int] = dataclasses.field(default_factory=dict)  # objects per category
