"""Dataset class names -> the words used in prompts and captions: one table, one set of rules.

Remote-sensing datasets spell the same thing many ways: DOTA `small-vehicle`, iSAID `Small_Vehicle`,
AID `StorageTanks`, DIOR `golffield`. `normalize_class_name` turns any of them into a lower-case noun
phrase for Box-to-Caption captions: separators, CamelCase and run-together words (split only when
every piece is a known word, so "harbor" or "windmill" are left alone), after the per-dataset entries
of `CLASS_NAMES` for names no rule can recover.

`readable_classnames` gives the class names of zero-shot prompts. For the twelve scene datasets of
the RemoteCLIP paper (and UCM) `CLASS_NAMES` holds the names RemoteCLIP's evaluation code prompts
with, copied as data from ChenDelong1999/ITRA, branch ``test`` (commit f8b26c9), files
``itra/data/classname_and_prompt/<Dataset>.py``, dict ``new_classes`` (folder name -> prompt name),
spelling kept exactly, quirks included: AID "bareLand", WHU-RS19 "footballField", "railwayStation"
and "Commercial" (the tokenizer lower-cases, so they are read as "bareland", "footballfield", ...),
MLRSNet "snow berg" but RESISC45 "snowberg", RSI-CB128 "parking lot" but RSI-CB256 "parkinglot".
SIRI-WHU is ITRA's ``WHUearth.py`` (ITRA's own "SIRIWHU" entry has no loader).
"""
from __future__ import annotations

import functools
import re

from remoteclip_jax.errors import ConfigError

# Dataset key (lower-case alphanumerics, see `dataset_key`) -> {raw class name: name}. Raw names
# are matched exactly, then lower-cased with separators removed.
CLASS_NAMES: dict[str, dict[str, str]] = {
    # ---- Zero-shot scene datasets: ITRA branch test, itra/data/classname_and_prompt/<file>, dict
    # new_classes at the lines given (order as there; ITRA numbers labels in this order).
    # AID.py lines 1-32.
    "aid": {
        "Airport": "airport", "DenseResidential": "dense residential", "Park": "park",
        "School": "school", "BareLand": "bareLand", "Desert": "desert", "Parking": "parking",
        "SparseResidential": "sparse residential", "BaseballField": "baseball field",
        "Farmland": "farmland", "Playground": "playground", "Square": "square", "Beach": "beach",
        "Forest": "forest", "Pond": "pond", "Stadium": "stadium", "Bridge": "bridge",
        "Industrial": "industrial", "Port": "port", "StorageTanks": "storage tanks",
        "Center": "center", "Meadow": "meadow", "RailwayStation": "railway station",
        "Viaduct": "viaduct", "Church": "church", "MediumResidential": "medium residential",
        "Resort": "resort", "Commercial": "commercial", "Mountain": "mountain", "River": "river",
    },
    # EuroSAT.py lines 1-13.
    "eurosat": {
        "Forest": "forest", "PermanentCrop": "permanent crop land",
        "Residential": "residential buildings or homes or apartments", "River": "river",
        "Pasture": "pasture land", "SeaLake": "lake or sea",
        "HerbaceousVegetation": "brushland or shrubland", "AnnualCrop": "annual crop land",
        "Industrial": "industrial buildings or commercial buildings", "Highway": "highway or road",
    },
    # MLRSNet.py lines 1-48.
    "mlrsnet": {
        "airplane": "airplane", "airport": "airport", "bareland": "bare land",
        "baseball_diamond": "baseball diamond", "basketball_court": "basketball court",
        "beach": "beach", "bridge": "bridge", "chaparral": "chaparral", "cloud": "cloud",
        "commercial_area": "commercial area", "dense_residential_area": "dense residential area",
        "desert": "desert", "eroded_farmland": "eroded farmland", "farmland": "farmland",
        "forest": "forest", "freeway": "freeway", "golf_course": "golf course",
        "ground_track_field": "ground track field", "harbor&port": "harbor port",
        "industrial_area": "industrial area", "intersection": "intersection", "island": "island",
        "lake": "lake", "meadow": "meadow", "mobile_home_park": "mobile home park",
        "mountain": "mountain", "overpass": "overpass", "park": "park",
        "parking_lot": "parking lot", "parkway": "parkway", "railway": "railway",
        "railway_station": "railway station", "river": "river", "roundabout": "roundabout",
        "shipping_yard": "shipping yard", "snowberg": "snow berg",
        "sparse_residential_area": "sparse residential area", "stadium": "stadium",
        "storage_tank": "storage tank", "swimmimg_pool": "swimming pool",
        "tennis_court": "tennis court", "terrace": "terrace",
        "transmission_tower": "transmission tower", "vegetable_greenhouse": "vegetable greenhouse",
        "wetland": "wetland", "wind_turbine": "wind turbine",
    },
    # RESISC45.py lines 1-47.
    "resisc45": {
        "airplane": "airplane", "airport": "airport", "baseball_diamond": "baseball diamond",
        "basketball_court": "basketball court", "beach": "beach", "bridge": "bridge",
        "chaparral": "chaparral", "church": "church", "circular_farmland": "circular farmland",
        "cloud": "cloud", "commercial_area": "commercial area",
        "dense_residential": "dense residential", "desert": "desert", "forest": "forest",
        "freeway": "freeway", "golf_course": "golf course",
        "ground_track_field": "ground track field", "harbor": "harbor",
        "industrial_area": "industrial area", "intersection": "intersection", "island": "island",
        "lake": "lake", "meadow": "meadow", "medium_residential": "medium residential",
        "mobile_home_park": "mobile home park", "mountain": "mountain", "overpass": "overpass",
        "palace": "palace", "parking_lot": "parking lot", "railway": "railway",
        "railway_station": "railway station", "rectangular_farmland": "rectangular farmland",
        "river": "river", "roundabout": "roundabout", "runway": "runway", "sea_ice": "sea ice",
        "ship": "ship", "snowberg": "snowberg", "sparse_residential": "sparse residential",
        "stadium": "stadium", "storage_tank": "storage tank", "tennis_court": "tennis court",
        "terrace": "terrace", "thermal_power_station": "thermal power station",
        "wetland": "wetland",
    },
    # OPTIMAL31.py lines 2-34.
    "optimal31": {
        "airplane": "airplane", "airport": "airport", "baseball_diamond": "baseball diamond",
        "basketball_court": "basketball court", "beach": "beach", "bridge": "bridge",
        "chaparral": "chaparral", "church": "church", "circular_farmland": "circular farmland",
        "commercial_area": "commercial area", "dense_residential": "dense residential",
        "desert": "desert", "forest": "forest", "freeway": "freeway", "golf_course": "golf course",
        "ground_track_field": "ground track field", "harbor": "harbor",
        "industrial_area": "industrial area", "intersection": "intersection", "island": "island",
        "lake": "lake", "meadow": "meadow", "medium_residential": "medium residential",
        "mobile_home_park": "mobile home park", "mountain": "mountain", "overpass": "overpass",
        "parking_lot": "parking lot", "railway": "railway",
        "rectangular_farmland": "rectangular farmland", "roundabout": "roundabout",
        "runway": "runway",
    },
    # PatternNet.py lines 2-41.
    "patternnet": {
        "airplane": "airplane", "baseball_field": "baseball field",
        "basketball_court": "basketball court", "beach": "beach", "bridge": "bridge",
        "cemetery": "cemetery", "chaparral": "chaparral",
        "christmas_tree_farm": "christmas tree farm", "closed_road": "closed road",
        "coastal_mansion": "coastal mansion", "crosswalk": "crosswalk",
        "dense_residential": "dense residential", "ferry_terminal": "ferry terminal",
        "football_field": "football field", "forest": "forest", "freeway": "freeway",
        "golf_course": "golf course", "harbor": "harbor", "intersection": "intersection",
        "mobile_home_park": "mobile home park", "nursing_home": "nursing home",
        "oil_gas_field": "oil gas field", "oil_well": "oil well", "overpass": "overpass",
        "parking_lot": "parking lot", "parking_space": "parking space", "railway": "railway",
        "river": "river", "runway": "runway", "runway_marking": "runway marking",
        "shipping_yard": "shipping yard", "solar_panel": "solar panel",
        "sparse_residential": "sparse residential", "storage_tank": "storage tank",
        "swimming_pool": "swimming pool", "tennis_court": "tennis court",
        "transformer_station": "transformer station",
        "wastewater_treatment_plant": "wastewater treatment plant",
    },
    # RSC11.py lines 1-13.
    "rsc11": {
        "denseforest": "dense forest", "highbuildings": "high buildings", "railway": "railway",
        "sparseforest": "sparse forest", "grassland": "grassland", "lowbuildings": "low buildings",
        "residentialarea": "residential area", "stroagetanks": "storage tanks", "harbor": "harbor",
        "overpass": "overpass", "roads": "roads",
    },
    # RS2800.py lines 1-9.
    "rs2800": {
        "RiverLake": "river or lake", "Parking": "parking", "Industry": "industry",
        "Forest": "forest", "Field": "field", "Resident": "resident", "Grass": "grass",
    },
    # RSICB128.py lines 1-47.
    "rsicb128": {
        "airport_runway": "airport runway", "artificial_grassland": "artificial grassland",
        "avenue": "avenue", "bare_land": "bare land", "bridge": "bridge",
        "city_avenue": "city avenue", "city_building": "city building",
        "city_green_tree": "city green tree", "city_road": "city road", "coastline": "coastline",
        "container": "container", "crossroads": "crossroads", "dam": "dam", "desert": "desert",
        "dry_farm": "dry farm", "forest": "forest", "fork_road": "fork road", "grave": "grave",
        "green_farmland": "green farmland", "highway": "highway", "hirst": "hirst",
        "lakeshore": "lake shore", "mangrove": "mangrove", "marina": "marina",
        "mountain": "mountain", "mountain_road": "mountain road",
        "natural_grassland": "natural grassland", "overpass": "overpass",
        "parkinglot": "parking lot", "pipeline": "pipeline", "rail": "rail",
        "residents": "residents", "river": "river",
        "river_protection_forest": "river protection forest", "sandbeach": "sand beach",
        "sapling": "sapling", "sea": "sea", "shrubwood": "shrub wood",
        "snow_mountain": "snow mountain", "sparse_forest": "sparse forest",
        "storage_room": "storage room", "stream": "stream", "tower": "tower", "town": "town",
        "turning_circle": "turning circle",
    },
    # RSICB256.py lines 2-38.
    "rsicb256": {
        "container": "container", "sea": "sea", "highway": "highway", "avenue": "avenue",
        "bare_land": "bare land", "sparse_forest": "sparse forest", "residents": "residents",
        "parkinglot": "parkinglot", "sandbeach": "sandbeach", "storage_room": "storage room",
        "mangrove": "mangrove", "sapling": "sapling", "airplane": "airplane",
        "artificial_grassland": "artificial grassland", "town": "town",
        "snow_mountain": "snow mountain", "river": "river", "stream": "stream",
        "city_building": "city building", "green_farmland": "green farmland", "bridge": "bridge",
        "dry_farm": "dry farm", "forest": "forest", "pipeline": "pipeline",
        "shrubwood": "shrubwood", "crossroads": "crossroads", "dam": "dam",
        "coastline": "coastline", "lakeshore": "lakeshore", "hirst": "hirst",
        "mountain": "mountain", "airport_runway": "airport runway", "marina": "marina",
        "river_protection_forest": "river protection forest", "desert": "desert",
    },
    # WHUearth.py lines 1-14.
    "siriwhu": {
        "meadow": "meadow", "water": "water", "harbor": "harbor", "pond": "pond", "park": "park",
        "commercial": "commercial", "idle_land": "idle land", "river": "river",
        "residential": "residential", "overpass": "overpass", "agriculture": "agriculture",
        "industrial": "industrial",
    },
    # WHURS19.py lines 1-21.
    "whurs19": {
        "Airport": "airport", "Beach": "beach", "Bridge": "bridge", "Commercial": "Commercial",
        "Desert": "desert", "Farmland": "farmland", "footballField": "footballField",
        "Forest": "forest", "Industrial": "industrial", "Meadow": "meadow", "Mountain": "mountain",
        "Park": "park", "Parking": "parking", "Pond": "pond", "Port": "port",
        "railwayStation": "railwayStation", "Residential": "residential", "River": "river",
        "Viaduct": "viaduct",
    },
    # UCMerced.py lines 1-23.
    "ucmerced": {
        "mediumresidential": "medium residential", "harbor": "harbor", "parkinglot": "parking lot",
        "golfcourse": "golf course", "storagetanks": "storage tanks",
        "denseresidential": "dense residential", "agricultural": "agricultural", "runway": "runway",
        "intersection": "intersection", "tenniscourt": "tennis court", "airplane": "airplane",
        "buildings": "buildings", "baseballdiamond": "baseball diamond", "beach": "beach",
        "river": "river", "overpass": "overpass", "forest": "forest",
        "mobilehomepark": "mobile home park", "chaparral": "chaparral",
        "sparseresidential": "sparse residential", "freeway": "freeway",
    },
    # ---- Detection / segmentation label sets, for Box-to-Caption and Mask-to-Box captions: names
    # no rule recovers (keys lower-cased, separators removed).
    "dior": {
        "expresswayservicearea": "expressway service area",
        "expresswaytollstation": "expressway toll station",
        "baseballfield": "baseball field",
        "groundtrackfield": "ground track field",
        "trainstation": "train station",
    },
    "loveda": {"agricultural": "farmland", "barren": "barren land"},
    "potsdam": {"impervioussurfaces": "impervious surface", "lowvegetation": "low vegetation"},
    "vaihingen": {"impervioussurfaces": "impervious surface", "lowvegetation": "low vegetation"},
    # VisDrone-DET categories (VisDrone2019-DET README): "people" are people on foot in other
    # poses than "pedestrian"; "motor" is a motorbike.
    "visdrone": {"people": "person", "motor": "motorbike", "awningtricycle": "awning tricycle"},
    "rsod": {"oiltank": "oil tank"},
    "hrrsd": {"basketballcourt": "basketball court",
              "groundtrackfield": "ground track field", "tenniscourt": "tennis court",
              "baseballdiamond": "baseball diamond", "storagetank": "storage tank"},
}

# Other spellings of a dataset's name -> its key in CLASS_NAMES.
DATASET_ALIASES = {"whuearth": "siriwhu", "nwpuresisc45": "resisc45", "ucm": "ucmerced",
                   "ucmercedlanduse": "ucmerced", "eurosatrgb": "eurosat"}  # TFDS: eurosat/rgb

# Folder names some copies of a dataset use -> the folder name CLASS_NAMES knows. RS2800 ships with
# letter-prefixed folders in some copies: ITRA's RS2800.py lines 10-18 (commented out) list them.
FOLDER_ALIASES = {"rs2800": {"aGrass": "Grass", "bField": "Field", "cIndustry": "Industry",
                             "dRiverLake": "RiverLake", "eForest": "Forest", "fResident": "Resident",
                             "gParking": "Parking"}}

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


def dataset_key(dataset: str) -> str:
    """The `CLASS_NAMES` key of a dataset name: "WHU-RS19" -> "whurs19", "NWPU-RESISC45" -> "resisc45"."""
    key = "".join(ch for ch in dataset.lower() if ch.isalnum())
    return DATASET_ALIASES.get(key, key)


def squash(raw: str) -> str:
    """A class name with case, spaces, _, - and / ignored, for matching spellings."""
    return re.sub(r"[\s_\-/]+", "", raw).lower()


def table_name(raw: str, dataset: str = "") -> str | None:
    """The `CLASS_NAMES` entry for a raw class name of a dataset, or None when it has none.

    The raw name is matched exactly (after `FOLDER_ALIASES`), then lower-cased with separators
    removed ("Storage_Tank" finds "storagetank").
    """
    key = dataset_key(dataset)
    table = CLASS_NAMES.get(key, {})
    raw = FOLDER_ALIASES.get(key, {}).get(raw, raw)
    if raw in table:
        return table[raw]
    squashed = squash(raw)
    for name, value in table.items():
        if squash(name) == squashed:
            return value
    return None


def rule_name(raw: str) -> str:
    """The generic rules alone: separators, CamelCase, run-together known words; lower-case."""
    text = _split_camel(raw.strip())
    text = re.sub(r"[_\-/]+", " ", text).lower()
    words: list[str] = []
    for word in text.split():
        pieces = None if word in _SPLIT_VOCABULARY else _segment(word)
        words.extend(pieces if pieces and len(pieces) > 1 else (word,))
    return " ".join(words)


def normalize_class_name(raw: str, dataset: str = "") -> str:
    """Turns a dataset's raw class name into a lower-case English noun phrase.

    Args:
        raw: the class name as the dataset spells it ("small-vehicle", "Large_Vehicle",
            "golffield", "StorageTanks").
        dataset: dataset name ("dota", "dior", "loveda", ...); selects its `CLASS_NAMES` entry.

    Returns:
        The noun phrase, e.g. "small vehicle", "large vehicle", "golf field", "storage tanks".
        Number is kept as given (AID's "StorageTanks" stays plural).
    """
    name = table_name(raw, dataset)
    return name.lower() if name is not None else rule_name(raw)


def resolve_classnames(raw_names, dataset: str = "",
                       overrides: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Zero-shot prompt names for a dataset's classes and where each came from.

    Args:
        raw_names: class (folder) names in label order.
        dataset: dataset name; selects the reference table (e.g. "AID", "EuroSAT", "WHU-RS19").
        overrides: {raw name: prompt name} from the config; wins over everything.

    Returns:
        (names, sources): ``names`` in the order of ``raw_names``, spelled exactly as the reference
        table spells them; ``sources[i]`` is "override", "reference" (from `CLASS_NAMES`) or "rule"
        (no entry: the generic rules of `rule_name`).
    """
    overrides = overrides or {}
    names, sources = [], []
    for raw in raw_names:
        if raw in overrides:
            names.append(overrides[raw])
            sources.append("override")
            continue
        name = table_name(raw, dataset)
        names.append(name if name is not None else rule_name(raw))
        sources.append("reference" if name is not None else "rule")
    return names, sources


def readable_classnames(raw_names, dataset: str = "", overrides: dict[str, str] | None = None) -> list[str]:
    """Zero-shot prompt names for a dataset's classes (`resolve_classnames` without the sources)."""
    return resolve_classnames(raw_names, dataset, overrides)[0]


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


# The scene datasets of `CLASS_NAMES` (its other entries fix spellings of detection and
# segmentation labels, not whole class lists).
SCENE_DATASETS = ("aid", "eurosat", "mlrsnet", "optimal31", "patternnet", "resisc45", "rs2800",
                  "rsc11", "rsicb128", "rsicb256", "siriwhu", "ucmerced", "whurs19")


def dataset_classes(name: str) -> list[str]:
    """The class names of scene dataset `name` (case and separators ignored: "WHU-RS19").

    Raises:
        DataError: not a scene dataset with a built-in list (the message lists them).
    """
    key = dataset_key(name)
    if key not in SCENE_DATASETS:
        raise ConfigError(f"--dataset {name!r}: no built-in class list (known: "
                         f"{', '.join(SCENE_DATASETS)}); pass --classes instead")
    return sorted(CLASS_NAMES[key])
