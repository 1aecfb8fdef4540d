"""Detection readers (VisDrone, AU-AIR, CARPK, HRSC2016, LEVIR, RSOD, HRRSD, Stanford Drone) on
files written from each format's documentation: boxes, class names, skipped entries, errors."""
import json
import pathlib

import pytest
from PIL import Image

from remoteclip_jax.data import convert_annotations as convert
from remoteclip_jax.data import readers
from remoteclip_jax.data.readers import AnnotationError
from remoteclip_jax.data.records import RecordSource


def _image(path, size=(64, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 60)).save(path)


def _boxes(item):
    return [(b.category, b.x0, b.y0, b.x1, b.y1, b.difficult) for b in item.boxes]


def test_visdrone_skips_ignored_regions_others_and_score_zero(tmp_path):
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "0000001_0.txt").write_text(
        "10,20,30,40,1,4,0,0\n"      # car
        "0,0,5,5,0,0,0,0\n"          # ignored region
        "1,1,5,5,1,11,0,0\n"         # others
        "3,3,4,4,0,1,0,0\n"          # score 0: not evaluated
        "50,60,10,20,1,10,1,2,\n")   # motor, heavily occluded, trailing comma
    _image(tmp_path / "images" / "0000001_0.jpg")
    [item] = readers.read_visdrone(ann)
    assert _boxes(item) == [("car", 10, 20, 40, 60, False), ("motor", 50, 60, 60, 80, True)]
    assert (item.width, item.height) == (64, 48) and item.path.endswith("images/0000001_0.jpg")
    (ann / "0000001_0.txt").write_text("10,20,30,40,1,4,0\n1,1,2,2,1,12,0,0\n")
    with pytest.raises(AnnotationError, match=r"0000001_0.txt:1: expected 8 comma-separated"):
        readers.read_visdrone(ann)
    errors = []
    readers.read_visdrone(ann, on_error=errors.append)
    assert [e.line for e in errors] == [1, 2] and "unknown category 12" in str(errors[1])


def test_auair_json_with_the_released_width_key(tmp_path):
    data = {"categories": ["Human", "Car", "Truck", "Van", "Motorbike", "Bicycle", "Bus",
                           "Trailer"],
            "annotations": [
                {"image_name": "frame_1.jpg", "image_width:": 1920, "image_height": 1080,
                 "bbox": [{"top": 10, "left": 20, "height": 30, "width": 40, "class": 1},
                          {"top": 0, "left": 0, "height": 5, "width": 5, "class": 7}]},
                {"image_name": "frame_2.jpg", "image_width": 100, "image_height": 50,
                 "bbox": [{"top": 1, "left": 1, "height": 1, "width": 1, "class": 9}]}]}
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"annotations\[1\]\.bbox\[0\]: class 9"):
        readers.read_auair(path)
    [item] = readers.read_auair(path, on_error=lambda e: None)
    assert _boxes(item) == [("Car", 20, 10, 60, 40, False), ("Trailer", 0, 0, 5, 5, False)]
    assert (item.width, item.height, item.image_id) == (1920, 1080, "frame_1")


def test_carpk_lines_are_corner_boxes_of_cars(tmp_path):
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "20160331_NTU_00001.txt").write_text("1 2 11 12 1\n\n30 30 40 45 1\n")
    _image(tmp_path / "Images" / "20160331_NTU_00001.png")
    [item] = readers.read_carpk(ann)
    assert _boxes(item) == [("car", 1, 2, 11, 12, False), ("car", 30, 30, 40, 45, False)]
    assert item.path.endswith("Images/20160331_NTU_00001.png")
    (ann / "20160331_NTU_00001.txt").write_text("1 2 11 12 2\n5 5 5 9 1\n")
    errors = []
    readers.read_carpk(ann, on_error=errors.append)
    assert "unknown class '2'" in str(errors[0]) and "degenerate box" in str(errors[1])
    assert str(errors[1]).startswith(f"{ann / '20160331_NTU_00001.txt'}:2:")


HRSC_XML = """<?xml version="1.0" encoding="utf-8"?>
<HRSC_Image>
  <Img_ID>100000001</Img_ID>
  <Img_FileName>100000001</Img_FileName>
  <Img_FileFmt>bmp</Img_FileFmt>
  <Img_SizeWidth>1166</Img_SizeWidth>
  <Img_SizeHeight>753</Img_SizeHeight>
  <HRSC_Objects>
    <HRSC_Object>
      <Object_ID>100000001</Object_ID>
      <Class_ID>100000013</Class_ID>
      <difficult>0</difficult>
      <box_xmin>10</box_xmin><box_ymin>20</box_ymin><box_xmax>110</box_xmax><box_ymax>60</box_ymax>
    </HRSC_Object>
    <HRSC_Object>
      <Class_ID>100000005</Class_ID>
      <difficult>1</difficult>
      <mbox_cx>200</mbox_cx><mbox_cy>100</mbox_cy><mbox_w>40</mbox_w><mbox_h>10</mbox_h>
      <mbox_ang>1.5707963267948966</mbox_ang>
    </HRSC_Object>
    <HRSC_Object>
      <Class_ID>100000005</Class_ID>
      <box_xmin>5</box_xmin><box_ymin>x</box_ymin><box_xmax>9</box_xmax><box_ymax>9</box_ymax>
    </HRSC_Object>
  </HRSC_Objects>
</HRSC_Image>
"""


def test_hrsc_horizontal_and_rotated_boxes_and_type_names(tmp_path):
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "100000001.xml").write_text(HRSC_XML)
    _image(tmp_path / "AllImages" / "100000001.bmp")
    with pytest.raises(AnnotationError, match=r"100000001.xml:23: <box_ymin> is not a number"):
        readers.read_hrsc(ann)
    [item] = readers.read_hrsc(ann, on_error=lambda e: None)
    assert item.path.endswith("AllImages/100000001.bmp") and (item.width, item.height) == \
        (1166, 753)
    # The rotated 40x10 box turned by 90 degrees encloses 10 wide, 40 high.
    assert [(c, round(x0, 6), round(y0, 6), round(x1, 6), round(y1, 6), d)
            for c, x0, y0, x1, y1, d in _boxes(item)] == [
        ("ship", 10, 20, 110, 60, False), ("ship", 195, 80, 205, 120, True)]
    sysdata = tmp_path / "sysdata.xml"
    sysdata.write_text("<HRSC_Sys><HRSC_Classes><HRSC_Class><Class_ID>100000013</Class_ID>"
                       "<Class_EngName>aircraft carrier</Class_EngName></HRSC_Class>"
                       "</HRSC_Classes></HRSC_Sys>")
    [typed] = readers.read_hrsc(ann, class_names=sysdata, on_error=lambda e: None)
    assert [b.category for b in typed.boxes] == ["aircraft carrier", "ship"]


def test_levir_class_ids_and_names(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "train_1.txt").write_text("1 10 10 50 40\n2,5,5,9,9\noiltank 0 0 8 8\n")
    [item] = readers.read_levir(tmp_path / "labels")
    assert [b.category for b in item.boxes] == ["airplane", "ship", "oil tank"]
    assert item.boxes[1].x1 == 9
    (tmp_path / "labels" / "train_1.txt").write_text("4 1 1 2 2\n")
    with pytest.raises(AnnotationError, match=r"train_1.txt:1: unknown class '4'"):
        readers.read_levir(tmp_path / "labels")


VOC = """<annotation><filename>{name}.jpg</filename><size><width>64</width><height>48</height>
</size><object><name>{cls}</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>2</ymin>
<xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>"""


def test_rsod_reads_every_class_folder(tmp_path):
    for cls, images in (("aircraft", "JPEGImages"), ("playground", "JPEGimages")):
        (tmp_path / cls / "Annotation" / "xml").mkdir(parents=True)
        (tmp_path / cls / "Annotation" / "xml" / f"{cls}_1.xml").write_text(
            VOC.format(name=f"{cls}_1", cls=cls))
        _image(tmp_path / cls / images / f"{cls}_1.jpg")
    items = readers.read_rsod(tmp_path)
    assert [(i.image_id, i.boxes[0].category, i.source) for i in items] == [
        ("aircraft_1", "aircraft", "rsod"), ("playground_1", "playground", "rsod")]
    assert all(pathlib.Path(i.path).is_file() for i in items)
    with pytest.raises(AnnotationError, match="no RSOD class folder"):
        readers.read_rsod(tmp_path / "aircraft" / "JPEGImages")


def test_stanford_drone_samples_frames_and_drops_lost_boxes(tmp_path):
    video = tmp_path / "annotations" / "bookstore" / "video0"
    video.mkdir(parents=True)
    (video / "annotations.txt").write_text(
        '0 10 20 30 40 0 0 0 0 "Pedestrian"\n'
        '1 50 50 60 70 0 0 1 1 "Biker"\n'
        '0 11 21 31 41 1 0 0 1 "Pedestrian"\n'       # frame 1: not sampled
        '0 12 22 32 42 30 1 0 0 "Pedestrian"\n'      # lost: out of view
        '2 5 5 9 9 30 0 0 0 "Car"\n')
    items = readers.read_stanford_drone(video / "annotations.txt")
    assert [(i.image_id, _boxes(i)) for i in items] == [
        ("bookstore/video0/0", [("Pedestrian", 10, 20, 30, 40, False),
                                ("Biker", 50, 50, 60, 70, True)]),
        ("bookstore/video0/30", [("Car", 5, 5, 9, 9, False)])]
    assert items[1].path == str(video / "frames" / "00030.jpg")
    assert len(readers.read_stanford_drone(video, frame_step=1)) == 3
    (video / "annotations.txt").write_text('0 10 20 30 40 0 2 0 0 "Pedestrian"\n')
    with pytest.raises(AnnotationError, match=r"annotations.txt:1: 'lost' must be 0 or 1"):
        readers.read_stanford_drone(video)


def test_new_kinds_convert_to_records(tmp_path):
    ann = tmp_path / "vd" / "annotations"
    ann.mkdir(parents=True)
    (ann / "a.txt").write_text("10,10,20,20,1,4,0,0\n30,5,10,10,1,4,0,0\n")
    _image(tmp_path / "vd" / "images" / "a.jpg")
    summary = convert.convert_dataset("visdrone", str(ann), str(tmp_path / "out"),
                                      progress=False)
    assert summary.kept == 1 and summary.source == "visdrone"
    record = RecordSource(tmp_path / "out")[0]
    assert record["counts"] == {"car": 2} and len(record["captions"]) == 5
    hrrsd = tmp_path / "hrrsd"
    (hrrsd / "Annotations").mkdir(parents=True)
    (hrrsd / "Annotations" / "b.xml").write_text(VOC.format(name="b", cls="T junction"))
    _image(hrrsd / "JPEGImages" / "b.jpg")
    convert.convert_dataset("hrrsd", str(hrrsd / "Annotations"), str(tmp_path / "o2"),
                            progress=False)
    record = RecordSource(tmp_path / "o2")[0]
    assert record["source"] == "hrrsd" and record["counts"] == {"t junction": 1}


def test_csv_kind_uses_the_csv_options(tmp_path):
    _image(tmp_path / "imgs" / "RSICD" / "a.jpg")
    (tmp_path / "Ret-3.csv").write_text("img|text\nRSICD/a.jpg|a plane\nRSICD/a.jpg|a field\n")
    code = convert.main(["csv", "--input", str(tmp_path / "Ret-3.csv"), "--images",
                         str(tmp_path / "imgs"), "--out", str(tmp_path / "out"),
                         "--csv-img-key", "img", "--csv-caption-key", "text",
                         "--csv-separator", "|", "--no-progress"])
    assert code == 0
    assert RecordSource(tmp_path / "out")[0]["captions"] == ["a plane", "a field"]
    tab = tmp_path / "tab.csv"
    tab.write_text("filepath\ttitle\nRSICD/a.jpg\tx\n")
    assert convert.main(["csv", "--input", str(tab), "--images", str(tmp_path / "imgs"),
                         "--out", str(tmp_path / "o2"), "--csv-separator", "\\t",
                         "--no-progress"]) == 0
