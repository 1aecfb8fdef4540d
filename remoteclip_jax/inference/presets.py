"""Class lists of common scene-classification datasets, for `classify --dataset NAME`.

Names are the datasets' own class-folder names, in their sorted label order, so predictions use
the labels users know; prompts are built from `evaluate.classnames.readable_classnames` of them.
UC Merced's run-together folder names (`baseballdiamond`) are given split, because no rule can
split them. Sources: the class folders of each public release (AID: Xia et al. 2017, as in
`aid_150px/`; UC Merced Land Use 2010; NWPU-RESISC45 2017; EuroSAT 2019; WHU-RS19; RSC11).
"""
from __future__ import annotations

from remoteclip_jax.inference.inputs import InputError

DATASET_CLASSES: dict[str, tuple[str, ...]] = {
    "aid": ("Airport", "BareLand", "BaseballField", "Beach", "Bridge", "Center", "Church",
            "Commercial", "DenseResidential", "Desert", "Farmland", "Forest", "Industrial",
            "Meadow", "MediumResidential", "Mountain", "Park", "Parking", "Playground", "Pond",
            "Port", "RailwayStation", "Resort", "River", "School", "SparseResidential", "Square",
            "Stadium", "StorageTanks", "Viaduct"),
    "ucm": ("agricultural", "airplane", "baseball diamond", "beach", "buildings", "chaparral",
            "dense residential", "forest", "freeway", "golf course", "harbor", "intersection",
            "medium residential", "mobile home park", "overpass", "parking lot", "river",
            "runway", "sparse residential", "storage tanks", "tennis court"),
    "resisc45": ("airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge",
                 "chaparral", "church", "circular_farmland", "cloud", "commercial_area",
                 "dense_residential", "desert", "forest", "freeway", "golf_course",
                 "ground_track_field", "harbor", "industrial_area", "intersection", "island",
                 "lake", "meadow", "medium_residential", "mobile_home_park", "mountain",
                 "overpass", "palace", "parking_lot", "railway", "railway_station",
                 "rectangular_farmland", "river", "roundabout", "runway", "sea_ice", "ship",
                 "snowberg", "sparse_residential", "stadium", "storage_tank", "tennis_court",
                 "terrace", "thermal_power_station", "wetland"),
    "eurosat": ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
                "Pasture", "PermanentCrop", "Residential", "River", "SeaLake"),
    "whurs19": ("Airport", "Beach", "Bridge", "Commercial", "Desert", "Farmland", "footballField",
                "Forest", "Industrial", "Meadow", "Mountain", "Park", "Parking", "Pond", "Port",
                "railwayStation", "Residential", "River", "Viaduct"),
    "rsc11": ("denseforest", "grassland", "harbor", "highbuildings", "lowbuildings", "overpass",
              "railway", "residentialarea", "roads", "sparseforest", "stroagetanks"),
}
ALIASES = {"ucmerced": "ucm", "nwpuresisc45": "resisc45"}


def dataset_key(name: str) -> str:
    """`"WHU-RS19"` -> `"whurs19"`: lower-case alphanumerics, aliases resolved."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    return ALIASES.get(key, key)


def dataset_classes(name: str) -> list[str]:
    """The class list of dataset `name` (case and separators ignored).

    Raises:
        InputError: a dataset without a built-in list (the message lists the known ones).
    """
    key = dataset_key(name)
    if key not in DATASET_CLASSES:
        raise InputError(f"--dataset {name!r}: no built-in class list (known: "
                         f"{', '.join(sorted(DATASET_CLASSES))}); pass --classes instead")
    return list(DATASET_CLASSES[key])
