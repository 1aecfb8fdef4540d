"""Caption CSVs: RemoteCLIP/ITRA TAB files, GeoRSCLIP comma files, RSICD's GB18030, grouping."""
import csv
import io

import pytest

from remoteclip_jax.data import readers
from remoteclip_jax.data.readers import AnnotationError
from remoteclip_jax.data.readers.captions import decode_text, read_caption_csv, sniff_separator


def test_itra_tab_separated_filepath_title(tmp_path):
    # ITRA's layout: TAB-separated, `filepath` and `title` columns, one caption per row.
    path = tmp_path / "Ret-3_train.csv"
    path.write_text("filepath\ttitle\nRSICD/airport_1.jpg\tmany planes, parked .\n"
                    "RSITMD/boat_2.jpg\ta boat\n", encoding="utf-8")
    items = read_caption_csv(path, image_root=tmp_path / "imgs")
    assert [(i.image_id, i.captions) for i in items] == [
        ("RSICD/airport_1.jpg", ["many planes, parked ."]), ("RSITMD/boat_2.jpg", ["a boat"])]
    assert items[0].path == str(tmp_path / "imgs" / "RSICD" / "airport_1.jpg")
    assert items[0].source == "Ret-3_train"


def test_georsclip_comma_separated_filename_title_with_quoted_separators(tmp_path):
    path = tmp_path / "rsitmd_test.csv"
    path.write_text('filename,title\nx.jpg,"a plane, a runway\tand grass"\n'
                    'y.jpg,"he said ""hi"""\n', encoding="utf-8")
    items = read_caption_csv(path)
    assert [i.captions for i in items] == [["a plane, a runway and grass"], ['he said "hi"']]


def test_gb18030_file_with_chinese_text_is_detected(tmp_path):
    path = tmp_path / "rsicd_test.csv"
    rows = [("filepath", "title"), ("00001.jpg", "飞机停在机场 planes"), ("00002.jpg", "河流")]
    path.write_bytes("\n".join("\t".join(r) for r in rows).encode("gb18030") + b"\n")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")  # the fixture really is not UTF-8
    assert decode_text(path.read_bytes(), path)[1] == "gb18030"
    items = read_caption_csv(path)
    assert [i.captions for i in items] == [["飞机停在机场 planes"], ["河流"]]


def test_utf8_with_byte_order_mark_keeps_the_first_column_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "filepath,title\na.jpg,über\n".encode("utf-8"))
    assert decode_text(path.read_bytes(), path)[1] == "utf-8-sig"
    assert read_caption_csv(path)[0].captions == ["über"]


def test_explicit_encoding_separator_and_columns_override_detection(tmp_path):
    path = tmp_path / "odd.txt.csv"
    path.write_bytes("img;Caption;split\na.png;été;train\nb.png;hiver;test\n".encode("latin-1"))
    items = read_caption_csv(path, encoding="latin-1", separator=";", image_column="img",
                             caption_column="Caption")
    assert [(i.image_id, i.captions, i.split) for i in items] == [
        ("a.png", ["été"], "train"), ("b.png", ["hiver"], "test")]
    assert [i.image_id for i in read_caption_csv(path, "test", encoding="latin-1")] == ["b.png"]


def test_missing_column_error_names_the_columns_found(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("image_name\tsentence_text\na.jpg\tx\n")
    with pytest.raises(AnnotationError, match=r"bad.csv:1: header has no image column .*"
                                              r"columns found: 'image_name', 'sentence_text'"):
        read_caption_csv(path)
    with pytest.raises(AnnotationError, match=r"no caption column 'title' .*--csv-caption-key"):
        read_caption_csv(path, image_column="image_name", caption_column="title")


def test_rows_of_one_image_are_grouped_in_file_order(tmp_path):
    path = tmp_path / "dup.csv"
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t")
    writer.writerow(["filepath", "title"])
    for name, caption in [("a.jpg", "one"), ("b.jpg", "two"), ("a.jpg", "three"),
                          ("a.jpg", "one"), ("b.jpg", "  ")]:
        writer.writerow([name, caption])
    path.write_text(buf.getvalue())
    items = read_caption_csv(path)
    assert [(i.image_id, i.captions) for i in items] == [("a.jpg", ["one", "three", "one"]),
                                                         ("b.jpg", ["two"])]
    assert read_caption_csv(path, dedupe=True)[0].captions == ["one", "three"]


def test_short_row_reports_its_physical_line(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text('filepath,title\na.jpg,"multi\nline"\nlonely\n')
    with pytest.raises(AnnotationError, match=r"short.csv:4: row lacks an image path"):
        read_caption_csv(path)
    errors = []
    assert len(read_caption_csv(path, on_error=errors.append)) == 1 and errors[0].line == 4


@pytest.mark.parametrize("header, separator", [
    ("filepath\ttitle", "\t"), ("filename,title", ","), ('"a,b"\tc', "\t"), ("one", ","),
    ("a;b;c", ";"), ("a,b\tc", "\t"),
])
def test_separator_is_sniffed_from_the_header(header, separator):
    assert sniff_separator(header) == separator


def test_read_captions_dispatches_tsv_and_csv(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("filepath\ttitle\na.jpg\tcap\n")
    assert readers.read_captions(path)[0].captions == ["cap"]


def test_real_aid_label_csv_reads_as_path_and_class(shared_data):
    # The shared AID index is a comma CSV of `path,class`: every row one distinct image.
    items = read_caption_csv(shared_data / "aid_150px/labels.csv", caption_column="class")
    assert len(items) == 8973
    assert all(i.captions and i.path.endswith(".jpg") for i in items)
    assert items[0].image_id == "Airport/airport_1.jpg" and items[0].captions == ["Airport"]
