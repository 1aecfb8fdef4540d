"""The class-name table against names transcribed from the reference code, and the rules."""
import json
import pathlib

import pytest

from remoteclip_jax.errors import ConfigError

from remoteclip_jax.data.classnames import (CLASS_NAMES, SCENE_DATASETS, dataset_classes,
                                            dataset_key, normalize_class_name,
                                            readable_classnames, resolve_classnames, rule_name)

# Transcribed from ChenDelong1999/ITRA branch test (f8b26c9), itra/data/classname_and_prompt/*.py,
# and om-ai-lab/RS5M inference/classname_and_prompt/RSAID.py; each entry names its file.
REFERENCE = json.loads((pathlib.Path(__file__).parent / "data" / "reference_zeroshot_tables.json").read_text())
ITRA = REFERENCE["itra"]

# The paper's 12 zero-shot datasets under the names configs use for them.
PAPER_DATASETS = {"AID": "aid", "EuroSAT": "eurosat", "MLRSNet": "mlrsnet", "RESISC45": "resisc45",
                  "OPTIMAL-31": "optimal31", "PatternNet": "patternnet", "RSC11": "rsc11",
                  "RS2800": "rs2800", "RSI-CB128": "rsicb128", "RSI-CB256": "rsicb256",
                  "SIRI-WHU": "siriwhu", "WHU-RS19": "whurs19"}


@pytest.mark.parametrize("dataset,key", sorted(PAPER_DATASETS.items()))
def test_zeroshot_names_equal_the_reference_tables(dataset, key):
    folders = [f for f, _ in ITRA[key]["classes"]]
    want = [name for _, name in ITRA[key]["classes"]]
    assert readable_classnames(folders, dataset) == want
    assert resolve_classnames(folders, dataset)[1] == ["reference"] * len(folders)
    # Folder order does not matter: names are looked up by folder.
    assert readable_classnames(folders[::-1], dataset) == want[::-1]


def test_names_that_used_to_differ_from_the_reference():
    # Values taken from the transcribed reference (the JSON), not from our table.
    ref = {key: dict(entry["classes"]) for key, entry in ITRA.items()}
    assert readable_classnames(["SeaLake"], "EuroSAT") == [ref["eurosat"]["SeaLake"]] == ["lake or sea"]
    assert readable_classnames(["BareLand"], "AID") == [ref["aid"]["BareLand"]]
    assert readable_classnames(["footballField"], "WHU-RS19") == [ref["whurs19"]["footballField"]]
    assert readable_classnames(["snowberg"], "MLRSNet") == [ref["mlrsnet"]["snowberg"]]
    assert readable_classnames(["lakeshore"], "RSI-CB128") == [ref["rsicb128"]["lakeshore"]]
    assert readable_classnames(["RiverLake"], "RS2800") == [ref["rs2800"]["RiverLake"]]


def test_table_holds_exactly_the_reference_entries():
    for key, entry in ITRA.items():
        assert list(CLASS_NAMES[key].items()) == [tuple(c) for c in entry["classes"]], key


def test_lookup_survives_other_spellings_of_folders_and_datasets():
    ref = dict(ITRA["rs2800"]["classes"])
    assert readable_classnames(["dRiverLake"], "rs2800") == [ref["RiverLake"]]   # prefixed copy
    assert readable_classnames(["Storage_Tank"], "NWPU-RESISC45") == [dict(ITRA["resisc45"]["classes"])["storage_tank"]]
    assert dataset_key("WHUearth") == dataset_key("SIRI-WHU") == "siriwhu"


def test_overrides_win_and_unknown_names_use_the_rules():
    names, sources = resolve_classnames(["SeaLake", "WindFarm"], "EuroSAT", {"SeaLake": "sea"})
    assert names == ["sea", "wind farm"] and sources == ["override", "rule"]
    assert readable_classnames(["golffield", "BaseballField"], "my-dataset") == ["golf field", "baseball field"]


def test_rules_for_caption_nouns():
    assert rule_name("footballField") == "football field"
    assert rule_name("baseball_diamond") == "baseball diamond"
    assert normalize_class_name("Expressway-Service-area", "DIOR") == "expressway service area"
    assert normalize_class_name("small-vehicle", "dota") == "small vehicle"
    # Caption nouns are lower-case even where the prompt table keeps the reference's capitals.
    assert normalize_class_name("Commercial", "WHU-RS19") == "commercial"


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
    with pytest.raises(ConfigError, match="known: aid"):
        dataset_classes("imagenet")
    with pytest.raises(ConfigError):
        dataset_classes("dota")  # a detection label table, not a scene class list
