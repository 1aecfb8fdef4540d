"""VOC-style XML annotations, as DIOR ships them (horizontal and oriented boxes).

One XML file per image::

    <annotation><filename>00001.jpg</filename><size><width>800</width><height>800</height></size>
      <object><name>golffield</name><difficult>0</difficult>
        <bndbox><xmin>133</xmin><ymin>237</ymin><xmax>684</xmax><ymax>672</ymax></bndbox>
      </object>
    </annotation>

Oriented boxes come as `<robndbox>` with four corners (`x_left_top`, `y_left_top`, ...; DIOR's
OBB files) or as centre, size and angle (`cx cy w h angle` in radians; roLabelImg); both become
the axis-aligned box that encloses them. Some objects carry a `<description>` (DIOR-RSVG's
referring expressions): these are returned as the image's `captions`.

The XML is parsed with expat directly so that errors can name the line of the faulty element.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Sequence
from xml.parsers import expat

from remoteclip_jax.files import as_path
from remoteclip_jax.data.readers._paths import find_image
from remoteclip_jax.data.readers.errors import AnnotationError, OnError, report
from remoteclip_jax.data.types import AnnotatedImage, Box

_CORNERS = ("left_top", "right_top", "right_bottom", "left_bottom")
_IMAGE_DIR_NAMES = ("JPEGImages", "JPEGImages-trainval", "JPEGImages-test")


@dataclasses.dataclass
class XmlNode:
    """A parsed XML element with the line it starts on."""
    tag: str
    line: int
    text: str = ""
    children: list["XmlNode"] = dataclasses.field(default_factory=list)

    def find(self, tag: str) -> "XmlNode | None":
        """The first child with this tag."""
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list["XmlNode"]:
        """All children with this tag."""
        return [c for c in self.children if c.tag == tag]

    def findtext(self, tag: str, default: str | None = None) -> str | None:
        """Stripped text of the first child with this tag, or `default`."""
        child = self.find(tag)
        return child.text.strip() if child is not None else default


def parse_xml(data: bytes, path: str | os.PathLike) -> XmlNode:
    """Parses XML bytes into XmlNodes (line numbers kept); errors name `path:line`."""
    parser = expat.ParserCreate()
    stack: list[XmlNode] = []
    root: list[XmlNode] = []

    def start(tag, _attrs):
        node = XmlNode(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else root).append(node)
        stack.append(node)

    def end(_tag):
        stack.pop()

    def text(chunk):
        if stack:
            stack[-1].text += chunk

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise AnnotationError(path, e.lineno, f"invalid XML ({expat.errors.messages[e.code]})"
                              ) from None
    if not root:
        raise AnnotationError(path, None, "empty XML document")
    return root[0]


def _number(node: XmlNode, tag: str, path: pathlib.Path) -> float:
    text = node.findtext(tag)
    if text is None:
        raise AnnotationError(path, node.line, f"<{node.tag}> lacks <{tag}>")
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(path, node.find(tag).line, f"<{tag}> is not a number: {text!r}"
                              ) from None
    if not math.isfinite(value):
        raise AnnotationError(path, node.find(tag).line, f"<{tag}> is not finite: {text!r}")
    return value


def _object_box(obj: XmlNode, path: pathlib.Path, index: int, stem: str) -> Box:
    name = obj.findtext("name")
    if not name:
        raise AnnotationError(path, obj.line, "<object> lacks a <name>")
    difficult = obj.findtext("difficult", "0")
    if difficult not in ("0", "1"):
        raise AnnotationError(path, obj.find("difficult").line,
                              f"<difficult> must be 0 or 1, got {difficult!r}")
    if (node := obj.find("bndbox")) is not None:
        x0, y0, x1, y1 = (_number(node, t, path) for t in ("xmin", "ymin", "xmax", "ymax"))
    elif (node := obj.find("robndbox")) is not None:
        if node.find("cx") is not None:
            cx, cy, w, h, angle = (_number(node, t, path) for t in ("cx", "cy", "w", "h", "angle"))
            c, s = abs(math.cos(angle)), abs(math.sin(angle))
            half_w, half_h = (w * c + h * s) / 2, (w * s + h * c) / 2
            x0, y0, x1, y1 = cx - half_w, cy - half_h, cx + half_w, cy + half_h
        else:
            xs = [_number(node, f"x_{corner}", path) for corner in _CORNERS]
            ys = [_number(node, f"y_{corner}", path) for corner in _CORNERS]
            x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    else:
        raise AnnotationError(path, obj.line, f"<object> '{name}' has no <bndbox> or <robndbox>")
    if x1 <= x0 or y1 <= y0:
        raise AnnotationError(path, node.line, f"degenerate box ({x0}, {y0}, {x1}, {y1})")
    return Box(name, x0, y0, x1, y1, difficult=difficult == "1", ann_id=f"{stem}:{index}")


def _as_list(dirs) -> list:
    if dirs is None:
        return []
    return [dirs] if isinstance(dirs, (str, os.PathLike)) else list(dirs)


def read_voc_file(path: str | os.PathLike,
                  image_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None, *,
                  source: str = "dior", on_error: OnError | None = None) -> AnnotatedImage:
    """Reads one VOC/DIOR XML file (see the module docstring).

    Args:
        path: the XML file.
        image_dir: directory (or directories, searched in order) holding the image named by
            `<filename>` (default: the XML's directory).
        source: dataset name for provenance.
        on_error: None raises on a malformed object; a callable receives the error and the
            object is skipped. A file that is not XML always raises.

    Returns:
        The image with `boxes` (ann_id "<image id>:<object index>"), `width`/`height` from
        `<size>`, and any object `<description>`s as `captions`.
    """
    path = as_path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AnnotationError(path, None, f"cannot read ({e.strerror or e})") from None
    root = parse_xml(data, path)
    if root.tag != "annotation":
        raise AnnotationError(path, root.line, f"root element is <{root.tag}>, not <annotation>")
    filename = root.findtext("filename") or ""
    # DIOR-RSVG names its files "00001_rsvg.xml"; the image id comes from <filename>.
    stem = pathlib.Path(filename).stem if filename else path.stem
    width = height = 0
    if (size := root.find("size")) is not None:
        try:
            width, height = int(_number(size, "width", path)), int(_number(size, "height", path))
        except AnnotationError as e:
            report(e, on_error)
    boxes, captions = [], []
    for index, obj in enumerate(root.findall("object")):
        try:
            boxes.append(_object_box(obj, path, index, stem))
        except AnnotationError as e:
            report(e, on_error)
            continue
        if description := obj.findtext("description"):
            captions.append(description)
    image_dirs = [as_path(d) for d in _as_list(image_dir)] or [path.parent]
    image_path = None
    for directory in image_dirs:
        image_path = (find_image(directory, pathlib.Path(filename).stem) if filename else None) \
            or find_image(directory, stem)
        if image_path is not None:
            break
    image_path = image_path or image_dirs[0] / (filename or f"{stem}.jpg")
    return AnnotatedImage(path=str(image_path), width=width, height=height, boxes=boxes,
                          captions=captions, source=source, image_id=stem)


def read_voc(annotation_dir: str | os.PathLike,
             image_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None, *,
             source: str = "dior", on_error: OnError | None = None) -> list[AnnotatedImage]:
    """Reads every `*.xml` in a VOC/DIOR annotation directory (`Annotations/HBB`, `.../OBB`).

    Args:
        annotation_dir: the directory of XML files.
        image_dir: the image directory, or several searched in order (default: every
            `JPEGImages/`, `JPEGImages-trainval/` and `JPEGImages-test/` found next to the
            directory or one or two levels up, as in DIOR's `Annotations/HBB` layout).
        source: dataset name for provenance.
        on_error: as for `read_voc_file`.

    Returns:
        One AnnotatedImage per XML file, sorted by file name.
    """
    annotation_dir = as_path(annotation_dir)
    if not annotation_dir.is_dir():
        raise AnnotationError(annotation_dir, None, "not a directory of VOC XML files")
    if image_dir is None:
        # DIOR's release splits its images into JPEGImages-trainval and JPEGImages-test.
        up = [annotation_dir, annotation_dir.parent, annotation_dir.parent.parent]
        image_dir = [p / name for p in up for name in _IMAGE_DIR_NAMES
                     if (p / name).is_dir()] or [annotation_dir]
    return [read_voc_file(p, image_dir, source=source, on_error=on_error)
            for p in sorted(annotation_dir.glob("*.xml"))]
