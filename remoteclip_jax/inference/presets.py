"""Class lists of the scene-classification datasets, for `classify --dataset NAME`.

The lists are the raw class (folder) names of `data.classnames.CLASS_NAMES`, the table zero-shot
evaluation prompts with (taken from RemoteCLIP's evaluation code; see that module), so a preset
labels images with the names users know from the dataset and prompts exactly as evaluation does.
Classes come in sorted name order, the label order of a class-folder dataset.
"""
from __future__ import annotations

from remoteclip_jax.data.classnames import CLASS_NAMES, dataset_key
from remoteclip_jax.inference.inputs import InputError

# The scene datasets of `CLASS_NAMES` (its other entries fix spellings of detection and
# segmentation labels, not whole class lists).
SCENE_DATASETS = ("aid", "eurosat", "mlrsnet", "optimal31", "patternnet", "resisc45", "rs2800",
                  "rsc11", "rsicb128", "rsicb256", "siriwhu", "ucmerced", "whurs19")


def dataset_classes(name: str) -> list[str]:
    """The class names of scene dataset `name` (case and separators ignored: "WHU-RS19").

    Raises:
        InputError: not a scene dataset with a built-in list (the message lists them).
    """
    key = dataset_key(name)
    if key not in SCENE_DATASETS:
        raise InputError(f"--dataset {name!r}: no built-in class list (known: "
                         f"{', '.join(SCENE_DATASETS)}); pass --classes instead")
    return sorted(CLASS_NAMES[key])
