"""Readers on the real samples in ../shared/data (skipped when absent) and on files written here."""
import collections
import io
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from remoteclip_jax.data import readers
from remoteclip_jax.data.readers import AnnotationError
from remoteclip_jax.data.types import Box
from tests.helpers.archives import write_tar


def _write_image(path, size=(32, 24), colour=(10, 120, 200), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


# ---------------------------------------------------------------------------------------------
# Errors


def test_annotation_error_message_is_path_line_reason():
    assert str(AnnotationError("a/b.txt", 7, "bad flag")) == "a/b.txt:7: bad flag"
    assert str(AnnotationError("a/b.json", None, "images[3]: no filename")) \
        == "a/b.json: images[3]: no filename"
    import pickle
    restored = pickle.loads(pickle.dumps(AnnotationError("x", 1, "y")))
    assert (restored.path, restored.line, restored.reason) == ("x", 1, "y")


# ---------------------------------------------------------------------------------------------
# Caption files


def _karpathy(images):
    return {"dataset": "TestSet", "images": images}


def _entry(name, split, sentences, **extra):
    return {"filename": name, "split": split, "sentences": [{"raw": s} for s in sentences],
            **extra}


def test_caption_json_splits_blanks_and_duplicates(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(_karpathy([
        _entry("1.tif", "train", ["A plane .", "A plane .", "  ", "two  planes"]),
        _entry("2.tif", "test", ["A ship ."]),
    ])))
    _write_image(tmp_path / "images" / "1.tif", fmt="TIFF")
    train = readers.read_caption_json(path, split="train")
    assert len(train) == 1
    assert train[0].captions == ["A plane .", "A plane .", "two planes"]
    assert train[0].path == str(tmp_path / "images" / "1.tif")  # found under images/
    assert (train[0].source, train[0].image_id, train[0].split) == ("testset", "1.tif", "train")
    assert readers.read_caption_json(path, dedupe=True)[0].captions == ["A plane .", "two planes"]
    assert len(readers.read_caption_json(path)) == 2
    assert readers.read_caption_json(path, drop_blank=False)[0].captions[2] == ""


def test_caption_json_errors_name_file_and_entry(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [\n  {"filename": "a.jpg", "sentences": [{"raw": "x"}]},\n'
                    '  {"sentences": []}\n]}')
    with pytest.raises(AnnotationError, match=r"bad.json: images\[1\]: missing 'filename'"):
        readers.read_caption_json(path)
    skipped = []
    assert len(readers.read_caption_json(path, on_error=skipped.append)) == 1
    assert len(skipped) == 1
    path.write_text('{"images": [\n  {"filename": "a.jpg",,}\n]}')
    with pytest.raises(AnnotationError, match=r"bad.json:2: invalid JSON"):
        readers.read_caption_json(path)
    path.write_text('[1, 2]')
    with pytest.raises(AnnotationError, match="'images' list"):
        readers.read_caption_json(path)


def test_caption_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(json.dumps({"image": "img/a.jpg", "captions": ["a", "b"], "split": "train",
                                 "aid_class": "Airport"}) + "\n\n"
                     + json.dumps({"image": "img/b.jpg", "captions": ["c"], "split": "val"})
                     + "\n")
    items = readers.read_caption_jsonl(jsonl)
    assert [i.captions for i in items] == [["a", "b"], ["c"]]
    assert items[0].label == "Airport" and items[0].path == str(tmp_path / "img/a.jpg")
    assert len(readers.read_caption_jsonl(jsonl, split="val")) == 1
    jsonl.write_text(jsonl.read_text() + '{"image": 3}\n')
    with pytest.raises(AnnotationError, match=r"train.jsonl:4: expected an object"):
        readers.read_caption_jsonl(jsonl)

    csv_path = tmp_path / "rs5m.csv"
    csv_path.write_text('filename,title\na.jpg,"a plane, parked"\nb.jpg,a ship\na.jpg,'
                        '"two\nlines"\n,orphan\n')
    with pytest.raises(AnnotationError, match=r"rs5m.csv:6: row lacks an image path"):
        readers.read_caption_csv(csv_path)
    items = readers.read_caption_csv(csv_path, on_error=lambda e: None)
    assert [(i.image_id, i.captions) for i in items] == [
        ("a.jpg", ["a plane, parked", "two lines"]), ("b.jpg", ["a ship"])]
    (tmp_path / "nohead.csv").write_text("name,text\nx,y\n")
    with pytest.raises(AnnotationError, match=r"nohead.csv:1: header has no image column"):
        readers.read_captions(tmp_path / "nohead.csv")


def test_real_caption_jsons(shared_data):
    ucm = readers.read_caption_json(shared_data / "captions/ucm/dataset_ucm.json")
    assert len(ucm) == 2100 and sum(len(i.captions) for i in ucm) == 10500
    assert collections.Counter(i.split for i in ucm) == {"train": 1680, "val": 210, "test": 210}
    assert pathlib.Path(ucm[0].path).is_file()  # images/1.tif
    sydney = readers.read_caption_json(shared_data / "captions/sydney/dataset_sydney.json",
                                       split="test")
    assert len(sydney) == 58
    rsitmd_path = shared_data / "captions/rsitmd/dataset_rsitmd_text_only.json"
    rsitmd = readers.read_caption_json(rsitmd_path)
    assert len(rsitmd) == 4743
    assert sum(len(i.captions) for i in rsitmd) == 23715 - 20  # the 20 blank sentences dropped
    kept = readers.read_caption_json(rsitmd_path, drop_blank=False)
    assert sum(len(i.captions) for i in kept) == 23715
    rsicd = readers.read_caption_json(shared_data / "rsicd_aid/dataset_rsicd_aid_trainval.json",
                                      split="val")
    assert len(rsicd) == 1027 and all(len(i.captions) == 5 for i in rsicd)  # repeats kept
    assert pathlib.Path(rsicd[0].path).is_file() and rsicd[0].label
    tiny = readers.read_caption_jsonl(shared_data / "rsicd_aid/train_tiny.jsonl")
    assert len(tiny) == 300 and pathlib.Path(tiny[0].path).is_file()


# ---------------------------------------------------------------------------------------------
# Image folders


def test_image_folder_labels_and_errors(tmp_path):
    _write_image(tmp_path / "ds" / "Airport" / "a1.jpg")
    _write_image(tmp_path / "ds" / "Airport" / "a2.PNG")
    _write_image(tmp_path / "ds" / "BareLand" / "b1.jpg")
    (tmp_path / "ds" / "BareLand" / "notes.txt").write_text("not an image")
    items = readers.read_image_folder(tmp_path / "ds")
    assert [(i.label, i.image_id) for i in items] == [
        ("Airport", "Airport/a1.jpg"), ("Airport", "Airport/a2.PNG"),
        ("BareLand", "BareLand/b1.jpg")]
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(AnnotationError, match="no images found"):
        readers.read_image_folder(tmp_path / "empty")
    with pytest.raises(AnnotationError, match="not a directory"):
        readers.read_image_folder(tmp_path / "absent")


def test_real_aid_image_folder(shared_data):
    items = readers.read_image_folder(shared_data / "aid_150px")
    labels = collections.Counter(i.label for i in items)
    assert len(items) == 8973 and len(labels) == 30
    assert labels["Airport"] > 0 and "BaseballField" in labels


# ---------------------------------------------------------------------------------------------
# DOTA


def test_dota_header_boxes_difficult_and_missing_images(tmp_path):
    (tmp_path / "labelTxt").mkdir()
    (tmp_path / "labelTxt" / "P1.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.5\n"
        "10 20 30 20 30 40 10 40 small-vehicle 0\n"
        "5.5 5 15 0 20 10 10 15 ship 1\n"
        "\n"
        "1 1 1 1 1 9 1 9 small-vehicle 2\n"  # a zero-width object from chip splitting
        "0 0 8 0 8 8 0 8 plane 2\n")
    (tmp_path / "labelTxt" / "P2.txt").write_text("0 0 4 0 4 4 0 4 harbor 0\n")
    _write_image(tmp_path / "images" / "P1.png", size=(50, 60))
    items = readers.read_dota(tmp_path / "labelTxt")
    assert [i.image_id for i in items] == ["P1", "P2"]
    p1, p2 = items
    assert (p1.width, p1.height) == (50, 60) and p1.path.endswith("P1.png")
    assert p1.boxes == [Box("small-vehicle", 10, 20, 30, 40, False, "P1:3"),
                        Box("ship", 5.5, 0, 20, 15, True, "P1:4"),
                        Box("plane", 0, 0, 8, 8, True, "P1:7")]
    assert (p2.width, p2.height) == (0, 0) and not pathlib.Path(p2.path).exists()


@pytest.mark.parametrize("line, reason", [
    ("1 2 3 4 5 6 7 8", "got 8 fields"),
    ("1 2 3 4 5 6 7 x ship 0", "non-numeric"),
    ("1 2 3 4 5 6 7 8 ship 5", "difficult flag"),
    ("1 2 3 4 5 6 7 8 ship 0 extra", "got 11 fields"),
    ("nan 2 3 4 5 6 7 8 ship 0", "non-finite"),
])
def test_dota_malformed_line_names_file_and_line(tmp_path, line, reason):
    (tmp_path / "labelTxt").mkdir()
    path = tmp_path / "labelTxt" / "P9.txt"
    path.write_text(f"gsd:1\n0 0 4 0 4 4 0 4 ship 0\n{line}\n")
    with pytest.raises(AnnotationError, match=reason) as info:
        readers.read_dota(tmp_path / "labelTxt")
    assert str(info.value).startswith(f"{path}:3: ")
    errors = []
    items = readers.read_dota(tmp_path / "labelTxt", on_error=errors.append)
    assert len(items[0].boxes) == 1 and [e.line for e in errors] == [3]


def test_real_dota_labels(shared_data):
    items = readers.read_dota(shared_data / "detection/dota/labelTxt")
    assert len(items) == 11
    with_images = {i.image_id for i in items if pathlib.Path(i.path).is_file()}
    assert with_images == {"P0706", "P1888", "P0003", "P0004", "P0005", "P1478__1__853___962"}
    p0706 = next(i for i in items if i.image_id == "P0706")
    counts = collections.Counter(b.category for b in p0706.boxes)
    # 538 lines: 2 header lines + 536 objects.
    assert counts == {"ship": 531, "harbor": 5} and p0706.width > 0
    assert sum(b.difficult for b in p0706.boxes) == 6
    chip = next(i for i in items if i.image_id == "P1478__1__853___962")
    # A split chip: 295 object lines, two of them cut to zero width (dropped), five flagged 2.
    assert len(chip.boxes) == 293
    assert all(b.x1 > b.x0 and b.y1 > b.y0 for i in items for b in i.boxes)


# ---------------------------------------------------------------------------------------------
# VOC / DIOR


_VOC = """<?xml version="1.0"?>
<annotation>
  <filename>00042.jpg</filename>
  <size><width>800</width><height>600</height><depth>3</depth></size>
  <object><name>golffield</name><difficult>0</difficult>
    <bndbox><xmin>10</xmin><ymin>20</ymin><xmax>110</xmax><ymax>220</ymax></bndbox>
    <description>a golf field</description></object>
  <object><name>Expressway-Service-area</name><difficult>1</difficult>
    <robndbox><x_left_top>10</x_left_top><y_left_top>10</y_left_top>
      <x_right_top>50</x_right_top><y_right_top>0</y_right_top>
      <x_right_bottom>60</x_right_bottom><y_right_bottom>40</y_right_bottom>
      <x_left_bottom>20</x_left_bottom><y_left_bottom>50</y_left_bottom></robndbox></object>
  <object><name>ship</name>
    <robndbox><cx>100</cx><cy>100</cy><w>20</w><h>10</h><angle>1.5707963267948966</angle>
    </robndbox></object>
</annotation>
"""


def test_voc_horizontal_oriented_and_centre_angle_boxes(tmp_path):
    (tmp_path / "Annotations" / "HBB").mkdir(parents=True)
    (tmp_path / "Annotations" / "HBB" / "00042.xml").write_text(_VOC)
    _write_image(tmp_path / "JPEGImages" / "00042.jpg")
    (item,) = readers.read_voc(tmp_path / "Annotations" / "HBB")
    assert item.path == str(tmp_path / "JPEGImages" / "00042.jpg")
    assert (item.width, item.height, item.image_id) == (800, 600, "00042")
    assert item.boxes[0] == Box("golffield", 10, 20, 110, 220, False, "00042:0")
    assert item.boxes[1] == Box("Expressway-Service-area", 10, 0, 60, 50, True, "00042:1")
    ship = item.boxes[2]
    np.testing.assert_allclose([ship.x0, ship.y0, ship.x1, ship.y1], [95, 90, 105, 110],
                               atol=1e-9)
    assert item.captions == ["a golf field"]


def test_voc_finds_images_in_dior_split_folders(tmp_path):
    annotations = tmp_path / "Annotations" / "Horizontal Bounding Boxes"
    annotations.mkdir(parents=True)
    (annotations / "00042.xml").write_text(_VOC)
    (annotations / "12000.xml").write_text(_VOC.replace("00042", "12000"))
    _write_image(tmp_path / "JPEGImages-trainval" / "00042.jpg")
    _write_image(tmp_path / "JPEGImages-test" / "12000.jpg")
    first, second = readers.read_voc(annotations)
    assert first.path == str(tmp_path / "JPEGImages-trainval" / "00042.jpg")
    assert second.path == str(tmp_path / "JPEGImages-test" / "12000.jpg")


@pytest.mark.parametrize("broken, line, reason", [
    ("<xmin>10</xmin>", 6, "lacks <xmin>"),
    ("<xmin>ten</xmin>", 6, "<xmin> is not a number"),
    ("<name>golffield</name>", 5, "lacks a <name>"),
    ("</object>\n  <object>", None, "invalid XML"),
    ("<xmax>110</xmax>", 6, "degenerate box"),
])
def test_voc_errors_name_the_line(tmp_path, broken, line, reason):
    replacement = {"<xmin>10</xmin>": "", "<xmin>ten</xmin>": "<xmin>ten</xmin>",
                   "<name>golffield</name>": "", "</object>\n  <object>": "</objekt>",
                   "<xmax>110</xmax>": "<xmax>5</xmax>"}[broken]
    text = _VOC.replace("<xmin>10</xmin>" if broken == "<xmin>ten</xmin>" else broken,
                        replacement, 1)
    path = tmp_path / "x.xml"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=reason) as info:
        readers.read_voc_file(path)
    if line is not None:
        assert info.value.line == line and str(info.value).startswith(f"{path}:{line}: ")
    else:
        assert info.value.line is not None


def test_real_dior_hbb_and_obb(shared_data):
    root = shared_data / "detection/dior"
    (hbb,) = readers.read_voc(root / "Annotations/HBB")
    (obb,) = readers.read_voc(root / "Annotations/OBB")
    assert pathlib.Path(hbb.path).is_file() and hbb.path == obb.path
    assert [b.category for b in hbb.boxes] == [b.category for b in obb.boxes] == ["golffield"]
    assert [(b.x0, b.y0, b.x1, b.y1) for b in hbb.boxes] == \
        [(b.x0, b.y0, b.x1, b.y1) for b in obb.boxes] == [(133, 237, 684, 672)]
    assert hbb.captions == ["A green and brown golf field"]
    assert (hbb.width, hbb.height) == (800, 800)


# ---------------------------------------------------------------------------------------------
# COCO


def _coco(tmp_path, annotations, images=None):
    data = {"images": images or [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
                                 {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30}],
            "categories": [{"id": 7, "name": "storage_tank"}, {"id": 8, "name": "vehicle"}],
            "annotations": annotations}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_boxes_crowd_and_empty_images(tmp_path):
    path = _coco(tmp_path, [
        {"id": 11, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 5], "iscrowd": 0},
        {"id": 12, "image_id": 1, "category_id": 8, "bbox": [0, 0, 4, 4], "iscrowd": 1},
        {"id": 13, "image_id": 1, "category_id": 8, "bbox": [3, 3, 0, 4]},
    ])
    a, b = readers.read_coco(path)
    assert a.boxes == [Box("storage_tank", 1, 2, 11, 7, False, "11")]  # zero-area 13 dropped
    assert b.boxes == [] and (a.width, a.height) == (40, 30)
    assert a.path == str(tmp_path / "a.jpg") and a.image_id == "1"
    assert len(readers.read_coco(path, include_crowd=True)[0].boxes) == 2


@pytest.mark.parametrize("ann, reason", [
    ({"id": 5, "image_id": 9, "category_id": 7, "bbox": [0, 0, 1, 1]}, "unknown image_id 9"),
    ({"id": 5, "image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}, "unknown category_id 3"),
    ({"id": 5, "image_id": 1, "category_id": 7, "bbox": [0, 0, 1]}, "bbox must be 4"),
    ({"id": 5, "image_id": 1, "category_id": 7, "bbox": [0, 0, -1, 3]}, "bbox has negative size"),
    ({"id": 5, "image_id": [1], "category_id": 7, "bbox": [0, 0, 1, 1]}, "unknown image_id"),
])
def test_coco_malformed_annotation(tmp_path, ann, reason):
    path = _coco(tmp_path, [{"id": 4, "image_id": 1, "category_id": 7, "bbox": [0, 0, 2, 2]},
                            ann])
    with pytest.raises(AnnotationError, match=r"annotations\[1\] \(id 5\): " + reason):
        readers.read_coco(path)
    errors = []
    assert len(readers.read_coco(path, on_error=errors.append)[0].boxes) == 1
    assert len(errors) == 1


def test_real_coco_without_images(shared_data):
    nwpu = readers.read_coco(shared_data / "detection/nwpu_vhr10/instances_train2017.json")
    val = readers.read_coco(shared_data / "detection/nwpu_vhr10/instances_val2017.json")
    assert len(nwpu) + len(val) == 650
    assert sum(len(i.boxes) for i in nwpu + val) == 3921
    assert {b.category for i in nwpu for b in i.boxes} >= {"airplane", "ground_track_field"}
    ssdd = readers.read_coco(shared_data / "detection/ssdd/SSDD.json")
    assert len(ssdd) == 1160 and sum(len(i.boxes) for i in ssdd) == 2586
    assert not pathlib.Path(ssdd[0].path).exists()  # images are not shipped


# ---------------------------------------------------------------------------------------------
# Masks


def test_index_and_palette_masks_give_the_same_boxes(tmp_path):
    index = np.zeros((40, 40), np.uint8)
    index[2:12, 2:14] = 2            # building, 120 px
    index[20:31, 25:36] = 5          # car, 121 px
    index[35:38, 0:3] = 5            # car, 9 px: below the default min area
    index[30:40, 30:40] = 6          # clutter: ignored
    palette = np.zeros((40, 40, 3), np.uint8)
    table = readers.CLASS_TABLES["potsdam"]
    for rgb, i in table.palette.items():
        palette[index == i] = rgb
    (tmp_path / "ann_dir").mkdir()
    (tmp_path / "rgb").mkdir()
    Image.fromarray(index).save(tmp_path / "ann_dir" / "t1.png")
    Image.fromarray(palette).save(tmp_path / "rgb" / "t1.png")
    _write_image(tmp_path / "img_dir" / "t1.png", size=(40, 40))
    (from_index,) = readers.read_masks(tmp_path / "ann_dir", table="potsdam")
    (from_rgb,) = readers.read_masks(tmp_path / "rgb", tmp_path / "img_dir", table="potsdam")
    assert from_index.boxes == from_rgb.boxes
    # The car touches the clutter square, but classes are split before labelling.
    assert [(b.category, b.x0, b.y0, b.x1, b.y1) for b in from_index.boxes] == [
        ("building", 2, 2, 14, 12), ("car", 25, 20, 36, 31)]
    assert from_index.path == str(tmp_path / "img_dir" / "t1.png")
    assert (from_index.width, from_index.height, from_index.source) == (40, 40, "potsdam")


def test_mask_and_image_stems_may_differ(tmp_path):
    mask = np.zeros((20, 20), np.uint8)
    mask[2:14, 2:14] = 1
    (tmp_path / "Semantic_masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "Semantic_masks" / "P0001_instance_color_RGB.png")
    _write_image(tmp_path / "images" / "P0001.png")
    (item,) = readers.read_masks(tmp_path / "Semantic_masks", table="isaid",
                                 mask_suffix="_instance_color_RGB")
    assert item.path == str(tmp_path / "images" / "P0001.png") and item.image_id == "P0001"
    assert [b.category for b in item.boxes] == ["ship"]


def test_unknown_palette_colour_and_class_table_json(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[1, 2] = (1, 2, 3)
    (tmp_path / "m").mkdir()
    Image.fromarray(rgb).save(tmp_path / "m" / "x.png")
    with pytest.raises(AnnotationError, match=r"colour \(1, 2, 3\) at pixel \(x=2, y=1\)"):
        readers.read_masks(tmp_path / "m", table="isaid")
    with pytest.raises(AnnotationError, match="has no palette"):
        readers.read_masks(tmp_path / "m", table="loveda")
    assert readers.read_masks(tmp_path / "m", table="isaid", on_error=lambda e: None) == []
    table_path = tmp_path / "table.json"
    table_path.write_text(json.dumps({"dataset": "mine", "classes": {"0": "background",
                                                                     "1": "pond"},
                                      "palette": {"0": [0, 0, 0], "1": [1, 2, 3]}}))
    (item,) = readers.read_masks(tmp_path / "m", table=str(table_path), min_area=1)
    assert [(b.category, b.x0, b.y0) for b in item.boxes] == [("pond", 2, 1)]
    table_path.write_text('{"classes": [1, 2]}')
    with pytest.raises(AnnotationError, match="bad class table"):
        readers.load_class_table(table_path)


def test_real_masks(shared_data):
    seg = shared_data / "segmentation"
    loveda = readers.read_masks(seg / "loveda/ann_dir", table="loveda")
    assert len(loveda) == 3 and all(pathlib.Path(i.path).is_file() for i in loveda)
    assert {b.category for i in loveda for b in i.boxes} <= {
        "building", "road", "water", "barren", "forest", "agricultural"}
    (potsdam,) = readers.read_masks(seg / "potsdam/ann_dir", table="potsdam")
    counts = collections.Counter(b.category for b in potsdam.boxes)
    assert counts["car"] == 4 and counts["building"] == 2 and "impervious_surfaces" not in counts
    (vaihingen,) = readers.read_masks(seg / "vaihingen/ann_dir", table="vaihingen")
    assert vaihingen.boxes and pathlib.Path(vaihingen.path).is_file()


# ---------------------------------------------------------------------------------------------
# Webdataset


def _jpeg_bytes():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_webdataset_groups_members_by_key(tmp_path):
    jpg = _jpeg_bytes()
    write_tar(tmp_path / "shard-000.tar", [
        ("s/0001.jpg", jpg), ("s/0001.txt", b"a harbor  with ships\n"),
        ("s/0002.webp", b"webp-bytes"), ("s/0002.json", json.dumps(
            {"title": "a farm", "captions": ["fields", "a farm"]}).encode()),
        ("s/0003.tar.gz.png", b"png"), ("s/0003.tar.gz.txt", b"dotted key"),
    ])
    items = list(readers.iter_webdataset(tmp_path, source="rs5m"))
    assert [(i.image_id, i.captions) for i in items] == [
        ("s/0001", ["a harbor with ships"]), ("s/0002", ["a farm", "fields"]),
        ("s/0003", ["dotted key"])]
    assert items[0].data == jpg and items[0].path.endswith("shard-000.tar#s/0001.jpg")
    assert items[1].data == b"webp-bytes" and items[0].source == "rs5m"


def test_webdataset_bad_samples_and_shards(tmp_path):
    write_tar(tmp_path / "bad.tar", [("k1.jpg", b"x"), ("k2.txt", b"no image"),
                                ("k3.jpg", b"y"), ("k3.txt", b"ok")])
    with pytest.raises(AnnotationError, match="sample 'k1' has no caption"):
        list(readers.iter_webdataset(tmp_path / "bad.tar"))
    errors = []
    items = list(readers.iter_webdataset(tmp_path / "bad.tar", on_error=errors.append))
    assert [i.image_id for i in items] == ["k3"] and len(errors) == 2
    assert "sample 'k2' has no image" in str(errors[1])
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(AnnotationError, match="junk.tar: unreadable tar shard"):
        list(readers.iter_webdataset(tmp_path / "junk.tar"))
    with pytest.raises(AnnotationError, match="no .tar shards"):
        list(readers.iter_webdataset(tmp_path / "nothing-*.tar"))
