"""Readable class names from folder names: `BaseballField`, `baseball_diamond`, `small-vehicle`
-> "baseball field", "baseball diamond", "small vehicle"; plus per-dataset overrides for names that
splitting cannot fix (run-together words, typos in the original datasets)."""
from __future__ import annotations

import re

# Dataset key (lower case alphanumerics) -> {raw folder name: readable name}.
OVERRIDES: dict[str, dict[str, str]] = {
    # OpenAI's EuroSAT names (CLIP prompts.md), used by most CLIP evaluations.
    "eurosat": {
        "AnnualCrop": "annual crop land", "Forest": "forest",
        "HerbaceousVegetation": "herbaceous vegetation land", "Highway": "highway or road",
        "Industrial": "industrial buildings", "Pasture": "pasture land",
        "PermanentCrop": "permanent crop land", "Residential": "residential buildings",
        "River": "river", "SeaLake": "sea or lake",
    },
    "rsc11": {
        "denseforest": "dense forest", "highbuildings": "high buildings",
        "sparseforest": "sparse forest", "lowbuildings": "low buildings",
        "residentialarea": "residential area", "stroagetanks": "storage tanks",
    },
    "dior": {
        "golffield": "golf field", "groundtrackfield": "ground track field",
        "baseballfield": "baseball field", "basketballcourt": "basketball court",
        "tenniscourt": "tennis court", "storagetank": "storage tank", "trainstation": "train station",
        "Expressway-Service-area": "expressway service area",
        "Expressway-toll-station": "expressway toll station",
    },
    "siriwhu": {"idle_land": "idle land", "river": "river"},
    "whurs19": {"footballField": "football field", "railwayStation": "railway station"},
}


def readable(name: str) -> str:
    """Split CamelCase/camelCase, underscores, hyphens and slashes; lower-case.

    Args:
        name: raw class (folder) name.

    Returns:
        Space-separated lower-case words, e.g. "BaseballField" -> "baseball field".
    """
    s = re.sub(r"[_\-/]+", " ", name)
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", s)          # baseballField -> baseball Field
    s = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", s)        # RSIField -> RSI Field
    return " ".join(s.lower().split())


def readable_classnames(raw_names, dataset: str = "", overrides: dict[str, str] | None = None) -> list[str]:
    """Readable names for a dataset's classes, applying built-in then user overrides.

    Args:
        raw_names: folder names in label order.
        dataset: dataset name for the built-in table (e.g. "eurosat", "RSC11").
        overrides: {raw name: readable name} from the config; wins over everything.

    Returns:
        List of readable names, same order as ``raw_names``.
    """
    key = "".join(ch for ch in dataset.lower() if ch.isalnum())
    table = {**OVERRIDES.get(key, {}), **(overrides or {})}
    return [table.get(n, readable(n)) for n in raw_names]
