"""Evaluation dataset loading: GeoRSCLIP CSV, Karpathy JSON splits, image-folder subsets."""
import numpy as np
import pytest
from PIL import Image

from remoteclip_jax.evaluate.datasets import load_image_folder, load_retrieval
from remoteclip_jax.evaluate.features import EvalDataError


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)


def test_georsclip_csv_groups_captions_per_image(tmp_path):
    for n in ("a.jpg", "b.jpg"):
        _img(tmp_path / "imgs" / n)
    csv = tmp_path / "rsitmd_test.csv"
    csv.write_text("filename,title\na.jpg,one\nb.jpg,two\na.jpg,three\n")
    paths, caps, t2i = load_retrieval(str(csv), images=str(tmp_path / "imgs"), split="all")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["a.jpg", "b.jpg"]
    assert list(zip(caps, t2i)) == [("one", 0), ("three", 0), ("two", 1)]


def test_karpathy_json_split_and_missing_image(tmp_path):
    _img(tmp_path / "1.tif")
    js = tmp_path / "dataset.json"
    js.write_text('{"images": [{"filename": "1.tif", "split": "test", "sentences": [{"raw": "x ."}, {"raw": " "}]},'
                  ' {"filename": "2.tif", "split": "test", "sentences": [{"raw": "y ."}]}]}')
    with pytest.raises(EvalDataError, match=r"2.tif: image not found \(listed in .*dataset.json\)"):
        load_retrieval(str(js))
    paths, caps, t2i = load_retrieval(str(js), skip_missing=True)
    assert len(paths) == 1 and caps == ["x ."] and t2i == [0]      # blank caption dropped
    with pytest.raises(EvalDataError, match="no images in split 'val'"):
        load_retrieval(str(js), split="val")


def test_image_folder_subset_and_order(tmp_path):
    for c in ("B", "A"):
        for i in (1, 10, 2):
            _img(tmp_path / c / f"{c.lower()}_{i}.png")
    paths, labels, classes = load_image_folder(str(tmp_path), classes=["B"], max_per_class=2)
    assert classes == ["B"] and labels == [0, 0]
    assert [p.rsplit("/", 1)[1] for p in paths] == ["b_1.png", "b_10.png"]
    with pytest.raises(EvalDataError, match="class folders not found: C"):
        load_image_folder(str(tmp_path), classes=["C"])
