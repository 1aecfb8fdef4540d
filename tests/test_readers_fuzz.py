"""Parsers fuzzed with hypothesis: any input gives records or an AnnotationError, never a crash.

Bounded (40 examples each, small inputs) to keep the default suite fast.
"""
import json
import os
import pathlib
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remoteclip_jax.data import readers
from remoteclip_jax.data.readers import AnnotationError
from remoteclip_jax.data.readers.voc import parse_xml

# FUZZ_EXAMPLES=600 for a deeper local search; the default keeps the suite fast.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

_tokens = st.one_of(st.sampled_from(["ship", "small-vehicle", "0", "1", "2", "3", "nan", "inf",
                                     "-1e9", "gsd:0.5", "imagesource:GF", "x", ""]),
                    st.floats(allow_nan=True).map(repr), st.integers(-10, 1000).map(str),
                    st.text(max_size=5))
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["images", "annotations", "categories", "id", "image_id", "category_id",
                         "bbox", "file_name", "filename", "name", "sentences", "raw", "split",
                         "width", "height", "iscrowd", "image", "captions"]), inner, max_size=5),
    max_leaves=20)


def _tmp_file(name, data):
    directory = pathlib.Path(tempfile.mkdtemp(prefix="fuzz-"))
    path = directory / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return path


@FUZZ
@given(st.lists(_tokens, max_size=12).map(" ".join))
def test_dota_line_gives_box_none_or_annotation_error(line):
    try:
        box = readers.parse_dota_line(line, "f.txt", 3)
    except AnnotationError as e:
        assert str(e).startswith("f.txt:3: ")
        return
    if box is not None:
        assert box.x1 > box.x0 and box.y1 > box.y0 and box.ann_id == "3"


@FUZZ
@given(st.lists(st.lists(_tokens, max_size=11).map(" ".join), max_size=6))
def test_dota_file_with_skipping_never_raises(lines):
    text = "\n".join(lines)
    path = _tmp_file("P1.txt", text)
    errors = []
    boxes = readers.read_dota_file(path, on_error=errors.append)
    n_lines = len(text.split("\n"))
    assert all(isinstance(e, AnnotationError) and 1 <= e.line <= n_lines for e in errors)
    assert len(boxes) + len(errors) <= n_lines


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.lists(st.sampled_from(["<annotation>", "</annotation>", "<object>",
                                           "</object>", "<name>ship</name>", "<bndbox>",
                                           "</bndbox>", "<xmin>1</xmin>", "<ymin>2</ymin>",
                                           "<xmax>9</xmax>", "<ymax>x</ymax>", "<robndbox>",
                                           "</robndbox>", "<cx>4</cx>", "<angle>1</angle>",
                                           "<size><width>a</width></size>", "\n"]),
                          max_size=25).map(lambda t: "".join(t).encode())))
def test_voc_any_bytes_give_image_or_annotation_error(data):
    path = _tmp_file("x.xml", data)
    try:
        item = readers.read_voc_file(path)
    except AnnotationError as e:
        assert str(e).startswith(str(path))
        return
    assert all(b.x1 > b.x0 and b.y1 > b.y0 for b in item.boxes)


@FUZZ
@given(_json)
def test_coco_any_json_gives_images_or_annotation_error(data):
    path = _tmp_file("instances.json", json.dumps(data))
    try:
        items = readers.read_coco(path)
    except AnnotationError as e:
        assert str(e).startswith(str(path))
        return
    assert all(b.x1 > b.x0 for i in items for b in i.boxes)


@FUZZ
@given(st.fixed_dictionaries({"images": st.lists(st.fixed_dictionaries(
    {"id": st.integers(0, 3), "file_name": st.text(min_size=1, max_size=4)}), max_size=3),
    "categories": st.lists(st.fixed_dictionaries(
        {"id": st.integers(0, 3), "name": st.text(max_size=4)}), max_size=3),
    "annotations": st.lists(st.dictionaries(
        st.sampled_from(["id", "image_id", "category_id", "bbox", "iscrowd"]),
        st.one_of(st.integers(-2, 3), st.lists(st.floats(allow_nan=True), max_size=5),
                  st.text(max_size=3))), max_size=5)}))
def test_coco_near_valid_json_skips_cleanly(data):
    path = _tmp_file("instances.json", json.dumps(data))
    errors = []
    items = readers.read_coco(path, on_error=errors.append)
    assert sum(len(i.boxes) for i in items) + len(errors) <= len(data["annotations"])


@FUZZ
@given(_json)
def test_caption_json_any_json_gives_images_or_annotation_error(data):
    path = _tmp_file("captions.json", json.dumps(data))
    try:
        items = readers.read_caption_json(path)
    except AnnotationError as e:
        assert str(e).startswith(str(path))
        return
    assert all(isinstance(c, str) and c for i in items for c in i.captions)


@FUZZ
@given(st.lists(st.one_of(_json.map(json.dumps), st.text(max_size=20)), max_size=5))
def test_caption_jsonl_lines_skip_with_line_numbers(lines):
    path = _tmp_file("data.jsonl", "\n".join(line.replace("\n", " ") for line in lines))
    errors = []
    items = readers.read_caption_jsonl(path, on_error=errors.append)
    assert all(1 <= e.line <= len(lines) for e in errors)
    assert len(items) + len(errors) <= len(lines)


@FUZZ
@given(st.text(alphabet=st.sampled_from('ab,"\n\r x'), max_size=60))
def test_caption_csv_any_text_gives_images_or_annotation_error(body):
    path = _tmp_file("rs.csv", "filename,title\n" + body)
    try:
        items = readers.read_caption_csv(path)
    except AnnotationError as e:
        assert e.line is not None and str(e).startswith(f"{path}:")
        return
    assert all(i.image_id for i in items)


@FUZZ
@given(st.binary(max_size=600))
def test_webdataset_any_bytes_give_samples_or_annotation_error(data):
    path = _tmp_file("shard.tar", data)
    try:
        list(readers.iter_webdataset(path))
    except AnnotationError as e:
        assert str(e).startswith(str(path))


@FUZZ
@given(st.binary(max_size=300))
def test_mask_file_any_bytes_give_mask_or_annotation_error(data):
    path = _tmp_file("m.png", data)
    try:
        mask = readers.load_mask(path, readers.CLASS_TABLES["potsdam"])
    except AnnotationError as e:
        assert str(e).startswith(str(path))
        return
    assert mask.ndim == 2 and mask.dtype == np.int32


@FUZZ
@given(st.text(max_size=80))
def test_xml_parser_reports_lines(text):
    try:
        parse_xml(text.encode("utf-8", "surrogatepass"), "t.xml")
    except AnnotationError as e:
        assert str(e).startswith("t.xml")
