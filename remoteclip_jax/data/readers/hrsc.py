"""HRSC2016 ship annotations: one `Annotations/<image id>.xml` per image in `AllImages/`.

Format (the HRSC2016 release, Liu et al., ICPRAM 2017; element names as in its XML)::

    <HRSC_Image><Img_ID>100000001</Img_ID><Img_FileName>100000001</Img_FileName>
      <Img_FileFmt>bmp</Img_FileFmt><Img_SizeWidth>1166</Img_SizeWidth>
      <Img_SizeHeight>753</Img_SizeHeight>
      <HRSC_Objects><HRSC_Object><Object_ID>...</Object_ID><Class_ID>100000013</Class_ID>
        <difficult>0</difficult><box_xmin>..</box_xmin><box_ymin>..</box_ymin>
        <box_xmax>..</box_xmax><box_ymax>..</box_ymax>
        <mbox_cx>..</mbox_cx><mbox_cy>..</mbox_cy><mbox_w>..</mbox_w><mbox_h>..</mbox_h>
        <mbox_ang>..</mbox_ang></HRSC_Object>...</HRSC_Objects></HRSC_Image>

The horizontal box (`box_*`) is used; an object with only the rotated box (`mbox_*`, angle in
radians) gets the box enclosing it. Every object is a ship; `Class_ID` names a ship type through
the release's `sysdata.xml` (`HRSC_Class` entries with `Class_ID` and `Class_EngName`). Captions
say "ship" by default, as B2C counts objects, not types; pass `class_names` (or a sysdata.xml
path) to use the type names instead.
"""
from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping

from remoteclip_jax.files import as_path
from remoteclip_jax.data.readers._paths import find_image, first_dir
from remoteclip_jax.data.readers._text import check_box
from remoteclip_jax.data.readers.errors import AnnotationError, OnError, report
from remoteclip_jax.data.readers.voc import XmlNode, parse_xml
from remoteclip_jax.data.types import AnnotatedImage, Box

_HBOX = ("box_xmin", "box_ymin", "box_xmax", "box_ymax")
_MBOX = ("mbox_cx", "mbox_cy", "mbox_w", "mbox_h", "mbox_ang")


def _read_xml(path: pathlib.Path) -> XmlNode:
    try:
        return parse_xml(path.read_bytes(), path)
    except OSError as e:
        raise AnnotationError(path, None, f"cannot read ({e.strerror or e})") from None


def _value(node: XmlNode, tag: str, path: pathlib.Path) -> float:
    child = node.find(tag)
    text = child.text.strip() if child is not None else ""
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(path, child.line if child is not None else node.line,
                              f"<{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(path, child.line, f"<{tag}> is not finite: {text!r}")
    return value


def load_hrsc_class_names(sysdata: str | os.PathLike) -> dict[str, str]:
    """Class_ID -> English type name from HRSC2016's `sysdata.xml`."""
    path = as_path(sysdata)
    names = {}

    def visit(node: XmlNode) -> None:
        if node.tag == "HRSC_Class" and node.findtext("Class_ID"):
            names[node.findtext("Class_ID")] = node.findtext("Class_EngName") or \
                node.findtext("Class_Name") or "ship"
        for child in node.children:
            visit(child)

    visit(_read_xml(path))
    return names


def _object_box(obj: XmlNode, path: pathlib.Path, stem: str, index: int,
                class_names: Mapping[str, str] | None) -> Box:
    if all(obj.find(t) is not None and obj.findtext(t) for t in _HBOX):
        x0, y0, x1, y1 = (_value(obj, t, path) for t in _HBOX)
    elif all(obj.find(t) is not None and obj.findtext(t) for t in _MBOX):
        cx, cy, w, h, angle = (_value(obj, t, path) for t in _MBOX)
        c, s = abs(math.cos(angle)), abs(math.sin(angle))
        half_w, half_h = (w * c + h * s) / 2, (w * s + h * c) / 2
        x0, y0, x1, y1 = cx - half_w, cy - half_h, cx + half_w, cy + half_h
    else:
        raise AnnotationError(path, obj.line, "<HRSC_Object> has neither box_xmin/ymin/xmax/"
                                              "ymax nor mbox_cx/cy/w/h/ang")
    check_box(x0, y0, x1, y1, path, obj.line)
    difficult = obj.findtext("difficult", "0")
    if difficult not in ("0", "1"):
        raise AnnotationError(path, obj.find("difficult").line,
                              f"<difficult> must be 0 or 1, got {difficult!r}")
    class_id = obj.findtext("Class_ID", "") or ""
    category = class_names.get(class_id, "ship") if class_names is not None else "ship"
    return Box(category, x0, y0, x1, y1, difficult=difficult == "1", ann_id=f"{stem}:{index}")


def read_hrsc_file(path: str | os.PathLike, image_dir: str | os.PathLike | None = None, *,
                   class_names: Mapping[str, str] | None = None, source: str = "hrsc2016",
                   on_error: OnError | None = None) -> AnnotatedImage:
    """Reads one HRSC2016 XML file (see the module docstring)."""
    path = as_path(path)
    root = _read_xml(path)
    if root.tag != "HRSC_Image":
        raise AnnotationError(path, root.line, f"root element is <{root.tag}>, not <HRSC_Image>")
    stem = root.findtext("Img_FileName") or root.findtext("Img_ID") or path.stem
    width = height = 0
    try:
        if root.findtext("Img_SizeWidth"):
            width = int(_value(root, "Img_SizeWidth", path))
            height = int(_value(root, "Img_SizeHeight", path))
    except AnnotationError as e:
        report(e, on_error)
    boxes = []
    objects = root.find("HRSC_Objects")
    for index, obj in enumerate(objects.findall("HRSC_Object") if objects is not None else []):
        try:
            boxes.append(_object_box(obj, path, stem, index, class_names))
        except AnnotationError as e:
            report(e, on_error)
    image_dir = as_path(image_dir) if image_dir is not None else path.parent
    suffix = "." + (root.findtext("Img_FileFmt") or "bmp").lstrip(".")
    image_path = find_image(image_dir, stem) or image_dir / f"{stem}{suffix}"
    return AnnotatedImage(path=str(image_path), width=width, height=height, boxes=boxes,
                          source=source, image_id=stem)


def read_hrsc(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike | None = None, *,
              class_names: Mapping[str, str] | str | os.PathLike | None = None,
              source: str = "hrsc2016", on_error: OnError | None = None
              ) -> list[AnnotatedImage]:
    """Reads every `*.xml` of an HRSC2016 `Annotations/` directory.

    Args:
        annotation_dir: the XML directory.
        image_dir: the images (default: `AllImages/` or `Images/` next to it).
        class_names: Class_ID -> name, or a `sysdata.xml` path; None names every object "ship".
        source: dataset name for provenance.
        on_error: None raises on the first malformed object; a callable receives each error and
            the object is skipped.
    """
    annotation_dir = as_path(annotation_dir)
    if not annotation_dir.is_dir():
        raise AnnotationError(annotation_dir, None, "not a directory of HRSC2016 XML files")
    if isinstance(class_names, (str, os.PathLike)):
        class_names = load_hrsc_class_names(class_names)
    if image_dir is None:
        image_dir = first_dir([annotation_dir.parent / n for n in ("AllImages", "Images",
                                                                   "images")]) or annotation_dir
    return [read_hrsc_file(p, image_dir, class_names=class_names, source=source,
                           on_error=on_error) for p in sorted(annotation_dir.glob("*.xml"))]
