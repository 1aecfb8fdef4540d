"""Dataset presets: the AID list is exactly the real AID class folders; names resolve loosely."""
import pytest

from remoteclip_jax.evaluate.classnames import readable_classnames
from remoteclip_jax.inference.inputs import InputError
from remoteclip_jax.inference.presets import DATASET_CLASSES, dataset_classes


def test_aid_preset_equals_the_class_folders_of_the_real_dataset(shared_data):
    root = shared_data / "aid_150px"
    if not root.is_dir():
        pytest.skip("AID images absent")
    assert dataset_classes("AID") == sorted(p.name for p in root.iterdir() if p.is_dir())


def test_class_counts_match_the_published_datasets():
    counts = {k: len(v) for k, v in DATASET_CLASSES.items()}
    assert counts == {"aid": 30, "ucm": 21, "resisc45": 45, "eurosat": 10, "whurs19": 19, "rsc11": 11}
    assert all(len(set(v)) == len(v) for v in DATASET_CLASSES.values())


def test_names_resolve_case_and_separator_insensitively_and_read_well():
    assert dataset_classes("WHU-RS19") == dataset_classes("whurs19")
    assert dataset_classes("UC Merced") == dataset_classes("ucm")
    assert "storage tanks" in readable_classnames(dataset_classes("rsc11"), "rsc11")
    with pytest.raises(InputError, match="known: aid"):
        dataset_classes("imagenet")
