"""Dataset class names -> plain English noun phrases, and the grammar B2C needs around them.

Remote-sensing datasets spell the same thing many ways: DOTA `small-vehicle`, iSAID `Small_Vehicle`,
AID `StorageTanks`, DIOR `golffield`. Captions need "small vehicle", "storage tanks", "golf field".
`normalize_class_name` handles separators, CamelCase and run-together words (split only when every
piece is a known word, so "harbor" or "windmill" are left alone), then applies per-dataset tables
for names no rule can recover.
"""
from __future__ import annotations

import functools
import re

# Names that need more than the generic rules, keyed by dataset (lower-case) then by the raw name
# lower-cased with separators removed. The generic rules are tried first; these win when present.
DATASET_OVERRIDES: dict[str, dict[str, str]] = {
    "dior": {
        "expresswayservicearea": "expressway service area",
        "expresswaytollstation": "expressway toll station",
        "baseballfield": "baseball field",
        "groundtrackfield": "ground track field",
        "trainstation": "train station",
    },
    "loveda": {
        "agricultural": "farmland",
        "barren": "barren land",
    },
    "potsdam": {"impervioussurfaces": "impervious surface", "lowvegetation": "low vegetation"},
    "vaihingen": {"impervioussurfaces": "impervious surface", "lowvegetation": "low vegetation"},
}

# Words allowed as pieces when splitting a run-together name ("groundtrackfield"). Kept to the
# vocabulary of remote-sensing class lists: a larger dictionary would split "overpass" or "harbor".
_SPLIT_VOCABULARY = frozenset("""
    airplane airport area ball baseball basketball bridge bus car container court crane dam diamond
    expressway field football golf ground harbor helicopter helipad land large lot parking plane
    pool road roundabout runway service ship small soccer station storage swimming tank tennis
    toll track train vehicle
""".split())

# Last words whose plural is not the regular one (or that do not change).
_IRREGULAR_PLURALS = {
    "aircraft": "aircraft", "spacecraft": "spacecraft", "sheep": "sheep", "deer": "deer",
    "fish": "fish", "series": "series", "species": "species", "person": "people", "man": "men",
    "woman": "women", "child": "children", "foot": "feet", "leaf": "leaves", "wolf": "wolves",
    "cattle": "cattle", "people": "people", "photo": "photos", "roof": "roofs",
}
# Mass nouns: a place "with water", never "waters".
MASS_NOUNS = frozenset("""
    water vegetation grass farmland land sand snow soil forest farmland cropland grassland
    wetland bareland clutter background desert ice
""".split())

# Normalised names of segmentation labels that mark "no object" (and Potsdam/Vaihingen's roads
# and squares, "impervious surfaces": shapeless, and captioning them as objects teaches nonsense).
# B2C and M2B skip them by default.
NON_OBJECT_CLASSES = (
    "background", "clutter", "impervious surface", "impervious surfaces", "boundary", "ignore",
    "ignored", "unlabeled", "unlabelled", "void", "no data", "nodata",
)

# Words that start with a vowel letter but a consonant sound ("a university") and vice versa.
_CONSONANT_SOUND_PREFIXES = ("uni", "use", "usu", "uti", "one", "euro", "ewe")
_VOWEL_SOUND_WORDS = frozenset({"hour", "honest", "honor", "honour", "heir"})


def _split_camel(text: str) -> str:
    # "StorageTanks" -> "Storage Tanks", "RSICDDataset" -> "RSICD Dataset"
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    return re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", text)


@functools.lru_cache(maxsize=4096)
def _segment(word: str) -> tuple[str, ...] | None:
    """Splits `word` into the fewest known pieces, or None when it cannot be fully split."""
    if word in _SPLIT_VOCABULARY:
        return (word,)
    best: tuple[str, ...] | None = None
    for cut in range(3, len(word) - 2):
        head, tail = word[:cut], word[cut:]
        if head not in _SPLIT_VOCABULARY:
            continue
        rest = _segment(tail)
        if rest is not None and (best is None or 1 + len(rest) < len(best)):
            best = (head, *rest)
    return best


def normalize_class_name(raw: str, dataset: str = "") -> str:
    """Turns a dataset's raw class name into a lower-case English noun phrase.

    Args:
        raw: the class name as the dataset spells it ("small-vehicle", "Large_Vehicle",
            "golffield", "StorageTanks").
        dataset: dataset name ("dota", "dior", "loveda", ...); selects `DATASET_OVERRIDES`.

    Returns:
        The noun phrase, e.g. "small vehicle", "large vehicle", "golf field", "storage tanks".
        Number is kept as given (AID's "StorageTanks" stays plural).
    """
    key = re.sub(r"[\s_\-/]+", "", raw).lower()
    override = DATASET_OVERRIDES.get(dataset.lower(), {}).get(key)
    if override is not None:
        return override
    text = _split_camel(raw.strip())
    text = re.sub(r"[_\-/]+", " ", text).lower()
    words: list[str] = []
    for word in text.split():
        pieces = None if word in _SPLIT_VOCABULARY else _segment(word)
        words.extend(pieces if pieces and len(pieces) > 1 else (word,))
    return " ".join(words)


def pluralize(phrase: str) -> str:
    """Plural of a noun phrase, inflecting its last word ("storage tank" -> "storage tanks").

    Irregular and invariant nouns ("aircraft", "person") and mass nouns ("water") are handled.
    """
    *head, last = phrase.split(" ")
    if last in MASS_NOUNS:
        plural = last
    elif last in _IRREGULAR_PLURALS:
        plural = _IRREGULAR_PLURALS[last]
    elif re.search(r"(s|x|z|ch|sh)$", last):
        plural = last + "es"
    elif re.search(r"[^aeiou]y$", last):
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return " ".join([*head, plural])


def indefinite_article(phrase: str) -> str:
    """"a" or "an" for the phrase, judged by the sound of its first word."""
    word = phrase.split(" ", 1)[0].lower()
    if word in _VOWEL_SOUND_WORDS:
        return "an"
    if word.startswith(_CONSONANT_SOUND_PREFIXES):
        return "a"
    return "an" if word[:1] in "aeiou" else "a"
