"""`remoteclip-jax import-weights` / `export-weights`: checkpoints in and out of model directories.

    remoteclip-jax import-weights RemoteCLIP-ViT-B-32.pt --model RemoteCLIP-ViT-B-32 --out weights/b32
    remoteclip-jax export-weights weights/b32 --out RemoteCLIP-ViT-B-32.safetensors
"""
from __future__ import annotations

from remoteclip_jax.weights import openclip


def main(argv: list[str]) -> int:
    """argv[0] is the sub-command name (``import-weights`` or ``export-weights``)."""
    command = {"import-weights": "import", "export-weights": "export"}[argv[0]]
    return openclip.main([command, *argv[1:]])
