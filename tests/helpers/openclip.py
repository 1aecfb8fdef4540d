"""Builds open_clip (PyTorch) reference models with random weights for parity tests."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")


def build_openclip(name_or_config, seed: int = 0, randomize_batchnorm: bool = True):
    """An open_clip CLIP in eval mode with random weights.

    Random BatchNorm statistics and non-zero `bn3` scales, so that a wrong mapping of any
    BatchNorm tensor changes the output (open_clip's init leaves them at 0/1/0).
    """
    torch.manual_seed(seed)
    if isinstance(name_or_config, str):
        model = open_clip.create_model(name_or_config)
    else:
        cfg = name_or_config
        # The optional SigLIP scalars take open_clip's own argument names.
        scalars = {k: cfg[k] for k in ("init_logit_scale", "init_logit_bias",
                                       "nonscalar_logit_scale") if k in cfg}
        model = open_clip.model.CLIP(cfg["embed_dim"], dict(cfg["vision_cfg"]), dict(cfg["text_cfg"]),
                                     quick_gelu=cfg.get("quick_gelu", False), **scalars)
    model.eval()
    if randomize_batchnorm:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for key, tensor in model.state_dict().items():
                if key.endswith("running_var"):
                    tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
                elif key.endswith("running_mean"):
                    tensor.copy_(0.1 * torch.randn(tensor.shape, generator=gen))
                elif key.endswith("bn3.weight"):
                    tensor.copy_(0.5 * torch.randn(tensor.shape, generator=gen))
    return model


def reference_inputs(image_size: int, batch: int = 2, seed: int = 0):
    """Identical float images (NCHW for torch, NHWC for Flax) and token ids for both sides."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, image_size, image_size, generator=gen)
    texts = open_clip.tokenize(["a satellite photo of many planes in the middle of the picture .",
                                "There are 3 storage tanks and a ship at the edge of the picture ."][:batch]
                               + ["an airport"] * max(0, batch - 2))
    return images, texts, images.permute(0, 2, 3, 1).numpy(), texts.numpy().astype(np.int32)


def max_relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(ours - reference).max() / np.abs(reference).max())
