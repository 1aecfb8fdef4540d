"""Dataset presets: the AID list is exactly the real AID class folders; names resolve loosely."""
import pytest

from remoteclip_jax.inference.inputs import InputError
from remoteclip_jax.inference.presets import SCENE_DATASETS, dataset_classes


def test_aid_preset_equals_the_class_folders_of_the_real_dataset(shared_data):
    root = shared_data / "aid_150px"
    if not root.is_dir():
        pytest.skip("AID images absent")
    assert dataset_classes("AID") == sorted(p.name for p in root.iterdir() if p.is_dir())


def test_class_counts_match_the_published_datasets():
    published = {"aid": 30, "eurosat": 10, "resisc45": 45, "ucmerced": 21, "whurs19": 19,
                 "rsc11": 11, "siriwhu": 12, "optimal31": 31, "patternnet": 38, "mlrsnet": 46,
                 "rs2800": 7, "rsicb128": 45, "rsicb256": 35}
    assert {k: len(dataset_classes(k)) for k in SCENE_DATASETS} == published


def test_names_resolve_case_and_separator_insensitively():
    assert dataset_classes("WHU-RS19") == dataset_classes("whurs19")
    assert dataset_classes("UCM") == dataset_classes("ucmerced")
    with pytest.raises(InputError, match="known: aid"):
        dataset_classes("imagenet")
    with pytest.raises(InputError):
        dataset_classes("dota")  # a detection label table, not a scene class list
