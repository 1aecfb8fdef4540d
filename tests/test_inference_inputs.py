"""Image sources and class names resolve as documented; bad input is one clear UserError."""
import pytest

from remoteclip_jax.errors import ConfigError, DataError, UserError
from remoteclip_jax.inference.inputs import list_images, parse_class_names
from tests.helpers.inference import random_images


def test_folder_is_searched_recursively_in_sorted_order_skipping_hidden(tmp_path):
    b = random_images(tmp_path / "b", 2)
    a = random_images(tmp_path / "a" / "deep", 2)
    random_images(tmp_path / ".hidden", 1)
    (tmp_path / "notes.txt").write_text("not an image")
    assert list_images(tmp_path) == sorted(a + b)


def test_list_file_paths_are_relative_to_the_list_file(tmp_path):
    paths = random_images(tmp_path / "imgs", 2)
    listing = tmp_path / "list.txt"
    listing.write_text("# images\nimgs/img_001.png\n\n" + paths[0] + "\nimgs/missing.png\n")
    assert list_images(listing) == [paths[1], paths[0], str(tmp_path / "imgs" / "missing.png")]


def test_single_image_and_lists_of_sources(tmp_path):
    paths = random_images(tmp_path, 3)
    assert list_images(paths[1]) == [paths[1]]
    assert list_images([paths[2], paths[0]]) == [paths[2], paths[0]]


def test_empty_folder_and_missing_path_raise_one_line_user_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images found") as e:
        list_images(tmp_path / "empty")
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="no such file or folder"):
        list_images(tmp_path / "absent")


def test_class_names_from_string_file_and_folder(tmp_path):
    assert parse_class_names(" forest, river ,airport") == ["forest", "river", "airport"]
    names = tmp_path / "classes.txt"
    names.write_text("storage tanks\n\n# comment\nharbour\n")
    assert parse_class_names(str(names)) == ["storage tanks", "harbour"]
    for c in ("River", "Beach"):
        (tmp_path / "ds" / c).mkdir(parents=True)
    assert parse_class_names(str(tmp_path / "ds")) == ["Beach", "River"]


@pytest.mark.parametrize("spec, message", [("forest", "at least two"), ("a,,b", "empty class"),
                                           ("a,b,a", "given twice")])
def test_bad_class_lists_are_rejected(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_class_names(spec)
