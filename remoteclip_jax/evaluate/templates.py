"""Prompt templates for zero-shot classification and counting.

Three families, chosen per dataset entry with ``templates: "paper" | "remoteclip" | "georsclip"``
or given as an explicit list of strings with one ``{}`` each:

* ``paper``: the single prompt of the RemoteCLIP paper, "a satellite photo of {}.".
* ``remoteclip``: per-dataset sets in the style of RemoteCLIP's training codebase (an open_clip fork).
  The five-prompt set below was checked against public per-dataset prompt files of that codebase for
  WHU-RS19, RSC11 and SIRI-WHU-style class lists; its use for the other datasets listed in
  ``REMOTECLIP_TEMPLATES`` is **unverified** (assumed from "mostly five"). RESISC45 uses the 18
  prompts OpenAI published for RESISC45 (verified against CLIP's prompt list); EuroSAT uses OpenAI's
  three "centered satellite photo" prompts (**unverified** that RemoteCLIP used exactly these).
* ``georsclip``: GeoRSCLIP's (RS5M) 105-prompt ensemble: 35 phrasings x {remote sensing image,
  aerial image, satellite image}; checked against the RS5M inference prompt files (AID set).
"""
from __future__ import annotations

PAPER_TEMPLATES = ("a satellite photo of {}.",)

REMOTECLIP_FIVE = (
    "a centered satellite photo of a {}.",
    "a centered satellite photo of the {} taken from above.",
    "an overhead view of the {}.",
    "an overhead view of a {}.",
    "an overhead view of {}.",
)

OPENAI_RESISC45 = tuple(
    f"{view} of {article}{{}}."
    for article in ("", "a ", "the ")
    for view in ("satellite imagery", "aerial imagery", "satellite photo", "aerial photo",
                 "satellite view", "aerial view")
)

OPENAI_EUROSAT = (
    "a centered satellite photo of {}.",
    "a centered satellite photo of a {}.",
    "a centered satellite photo of the {}.",
)


def _georsclip_templates() -> tuple[str, ...]:
    """The 105 GeoRSCLIP prompts, in their published order."""
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
    "resisc45": OPENAI_RESISC45,
    "eurosat": OPENAI_EUROSAT,
    **{name: REMOTECLIP_FIVE for name in (
        "aid", "mlrsnet", "optimal31", "patternnet", "rsc11", "rs2800", "rsicb128", "rsicb256",
        "siriwhu", "whurs19", "ucm", "ucmerced")},
}


def _key(dataset: str) -> str:
    return "".join(ch for ch in dataset.lower() if ch.isalnum())


def get_templates(spec, dataset: str = "") -> tuple[str, ...]:
    """Resolve a template spec from the config to a tuple of prompt strings.

    Args:
        spec: "paper", "remoteclip", "georsclip", or a list of strings each holding one "{}".
        dataset: dataset name, used by "remoteclip" to pick the per-dataset set (the five-prompt
            set for datasets it does not list).

    Returns:
        The prompts.

    Raises:
        ValueError: unknown spec, or a custom template without exactly one "{}".
    """
    if isinstance(spec, str):
        if spec == "paper":
            return PAPER_TEMPLATES
        if spec == "remoteclip":
            return REMOTECLIP_TEMPLATES.get(_key(dataset), REMOTECLIP_FIVE)
        if spec == "georsclip":
            return GEORSCLIP_TEMPLATES
        raise ValueError(f"unknown template set {spec!r}: use paper|remoteclip|georsclip or a list")
    templates = tuple(spec)
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if not templates or bad:
        raise ValueError(f"each template needs exactly one '{{}}', got {bad or 'an empty list'}")
    return templates
