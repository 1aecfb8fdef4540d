"""Named checkpoints users hold, with the architecture and activation each must run with.

The activation cannot be read from a state dict (GELU and QuickGELU weights have identical
shapes), so each preset records it. RemoteCLIP (all three) and GeoRSCLIP ViT-B-32 were
fine-tuned from OpenAI CLIP and run with QuickGELU; GeoRSCLIP ViT-H-14 starts from LAION
weights and uses exact GELU.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
    model: str        # open_clip model name, activation included
    file_name: str    # the file as its authors publish it
    source: str


PRESETS: dict[str, Preset] = {
    "RemoteCLIP-RN50": Preset("RN50-quickgelu", "RemoteCLIP-RN50.pt", "chendelong/RemoteCLIP"),
    "RemoteCLIP-ViT-B-32": Preset("ViT-B-32-quickgelu", "RemoteCLIP-ViT-B-32.pt", "chendelong/RemoteCLIP"),
    "RemoteCLIP-ViT-L-14": Preset("ViT-L-14-quickgelu", "RemoteCLIP-ViT-L-14.pt", "chendelong/RemoteCLIP"),
    "GeoRSCLIP-ViT-B-32": Preset("ViT-B-32-quickgelu", "RS5M_ViT-B-32.pt", "Zilun/GeoRSCLIP"),
    "GeoRSCLIP-ViT-H-14": Preset("ViT-H-14", "RS5M_ViT-H-14.pt", "Zilun/GeoRSCLIP"),
    "OpenAI-RN50": Preset("RN50-quickgelu", "RN50.pt", "openai/CLIP"),
    "OpenAI-RN101": Preset("RN101-quickgelu", "RN101.pt", "openai/CLIP"),
    "OpenAI-ViT-B-32": Preset("ViT-B-32-quickgelu", "ViT-B-32.pt", "openai/CLIP"),
    "OpenAI-ViT-B-16": Preset("ViT-B-16-quickgelu", "ViT-B-16.pt", "openai/CLIP"),
    "OpenAI-ViT-L-14": Preset("ViT-L-14-quickgelu", "ViT-L-14.pt", "openai/CLIP"),
}


def resolve_model_name(name: str) -> str:
    """A preset name gives its model; an open_clip model name is returned unchanged."""
    return PRESETS[name].model if name in PRESETS else name
