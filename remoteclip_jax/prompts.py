"""Prompts for zero-shot labels: template sets, class-major prompt lists, one embedding per class.

Zero-shot evaluation (`remoteclip_jax.evaluate`) and the `classify` command both build their
class embeddings here, so they prompt and combine exactly alike.

Three families, chosen per dataset entry with ``templates: "paper" | "remoteclip" | "georsclip"``
or given as an explicit list of strings with one ``{}`` each:

* ``paper``: the single prompt of the RemoteCLIP paper, "a satellite photo of {}.".
* ``remoteclip``: the per-dataset sets of RemoteCLIP's evaluation code, ChenDelong1999/ITRA branch
  ``test`` (commit f8b26c9), ``itra/data/classname_and_prompt/<Dataset>.py``, list ``templates``:
  the five "centered satellite photo" / "overhead view" prompts for AID (lines 36-42), MLRSNet
  (52-58), OPTIMAL31 (38-44), PatternNet (45-51), RSC11 (17-23), RS2800 (22-28), RSICB128
  (51-57), RSICB256 (43-49), WHURS19 (25-31), WHUearth = SIRI-WHU (19-25) and UCMerced (28-34);
  the 18 "satellite/aerial imagery/photo/view of" prompts for RESISC45 (lines 52-71); the three
  "centered satellite photo" prompts for EuroSAT (lines 19-23). A dataset ITRA has no file for
  gets the five-prompt set.
* ``georsclip``: GeoRSCLIP's 105-prompt ensemble, om-ai-lab/RS5M (commit 084cdd9)
  ``inference/classname_and_prompt/RSAID.py`` lines 8-114 (RSEuroSAT.py and RSRESISC45.py hold
  the same list): 35 phrasings x {remote sensing image, aerial image, satellite image}.

Class embedding methods (``class_embedding``):

* ``"average"`` (default): average the *unnormalised* prompt features, then normalise. This is what
  RemoteCLIP's evaluation code does, ChenDelong1999/ITRA branch test
  ``itra/evaluation/zero_shot.py`` lines 34-36 (``class_embeddings.mean(dim=0)`` then
  ``F.normalize``), and GeoRSCLIP's, om-ai-lab/RS5M ``inference/inference_tool.py`` lines 136-139.
* ``"openai"``: L2-normalise each prompt's text feature, average over templates, normalise again
  (OpenAI CLIP's notebook).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from remoteclip_jax.data.classnames import dataset_key
from remoteclip_jax.errors import ConfigError, check_choice

TEMPLATE_SETS = ("paper", "remoteclip", "georsclip")
CLASS_EMBEDDINGS = ("average", "openai")

PAPER_TEMPLATES = ("a satellite photo of {}.",)

# ITRA AID.py lines 36-42 (and the other five-prompt files listed above).
REMOTECLIP_FIVE = (
    "a centered satellite photo of a {}.",
    "a centered satellite photo of the {} taken from above.",
    "an overhead view of the {}.",
    "an overhead view of a {}.",
    "an overhead view of {}.",
)

# ITRA RESISC45.py lines 52-71: views vary fastest, then the article (none, "a", "the").
REMOTECLIP_RESISC45 = tuple(
    f"{view} of {article}{{}}."
    for article in ("", "a ", "the ")
    for view in ("satellite imagery", "aerial imagery", "satellite photo", "aerial photo",
                 "satellite view", "aerial view")
)

# ITRA EuroSAT.py lines 19-23.
REMOTECLIP_EUROSAT = (
    "a centered satellite photo of {}.",
    "a centered satellite photo of a {}.",
    "a centered satellite photo of the {}.",
)


def _georsclip_templates() -> tuple[str, ...]:
    """The 105 GeoRSCLIP prompts in RSAID.py's order: per image kind, 5 plain phrasings, 10
    qualities x {the, a}, 5 sizes x {the, a}."""
    qualities = ("low resolution", "bad", "cropped", "bright", "dark", "close-up", "black and white",
                 "jpeg corrupted", "blurry", "good")
    sizes = ("large", "nice", "small", "weird", "cool")
    out = []
    for article, kind in (("a", "remote sensing image"), ("an", "aerial image"), ("a", "satellite image")):
        out += [f"{article} {kind} of many {{}}.", f"{article} {kind} of a {{}}.",
                f"{article} {kind} of the {{}}.", f"{article} {kind} of the hard to see {{}}.",
                f"{article} {kind} of a hard to see {{}}."]
        for q in qualities:
            out += [f"a {q} {kind} of the {{}}.", f"a {q} {kind} of a {{}}."]
        for s in sizes:
            out += [f"{article} {kind} of the {s} {{}}.", f"{article} {kind} of a {s} {{}}."]
    return tuple(out)


GEORSCLIP_TEMPLATES = _georsclip_templates()

# Dataset name (lower case, no separators) -> RemoteCLIP-codebase template set.
REMOTECLIP_TEMPLATES = {
    "resisc45": REMOTECLIP_RESISC45,
    "eurosat": REMOTECLIP_EUROSAT,
    **{name: REMOTECLIP_FIVE for name in (
        "aid", "mlrsnet", "optimal31", "patternnet", "rsc11", "rs2800", "rsicb128", "rsicb256",
        "siriwhu", "whurs19", "ucmerced")},
}


def get_templates(spec, dataset: str = "") -> tuple[str, ...]:
    """Resolve a template spec from the config to a tuple of prompt strings.

    Args:
        spec: "paper", "remoteclip", "georsclip", or a list of strings each holding one "{}".
        dataset: dataset name, used by "remoteclip" to pick the per-dataset set (the five-prompt
            set for datasets it does not list).

    Returns:
        The prompts.

    Raises:
        ConfigError: unknown spec, or a custom template without exactly one "{}".
    """
    if isinstance(spec, str):
        if spec == "paper":
            return PAPER_TEMPLATES
        if spec == "remoteclip":
            return REMOTECLIP_TEMPLATES.get(dataset_key(dataset), REMOTECLIP_FIVE)
        if spec == "georsclip":
            return GEORSCLIP_TEMPLATES
        check_choice("templates", spec, TEMPLATE_SETS)
    templates = tuple(spec)
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if not templates or bad:
        raise ConfigError(f"evaluation option templates: each template needs exactly one '{{}}', "
                              f"got {bad or 'an empty list'}")
    return templates


def build_prompts(classnames: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Class-major prompt list: all templates for class 0, then class 1, ..."""
    return [t.replace("{}", c) for c in classnames for t in templates]


def l2_normalize(x) -> np.ndarray:
    """Row-wise L2 normalisation in float64, with open_clip's 1e-12 floor on the norm."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_embeddings(prompt_features, num_classes: int, method: str = "average") -> np.ndarray:
    """Combine per-prompt text features into one unit vector per class.

    Args:
        prompt_features: (num_classes * num_templates, E), class-major (see ``build_prompts``).
        num_classes: number of classes.
        method: "average" (average, normalise; the reference code's) or "openai" (normalise,
            average, normalise).

    Returns:
        (num_classes, E) float64, rows of unit norm.
    """
    check_choice("class_embedding", method, CLASS_EMBEDDINGS)
    f = np.asarray(prompt_features, np.float64)
    if f.shape[0] % num_classes:
        raise ValueError(f"{f.shape[0]} prompt features do not split into {num_classes} classes")
    f = f.reshape(num_classes, f.shape[0] // num_classes, f.shape[-1])
    if method == "openai":
        f = l2_normalize(f)
    return l2_normalize(f.mean(axis=1))
