"""open_clip hub directories <-> Flax variables.

The layout is the one `open_clip.create_model_and_transforms("local-dir:PATH")` and open_clip's
`push_to_hf_hub` use (open_clip factory.py / push_to_hf_hub.py / constants.py):

  * `open_clip_config.json`: `{"model_cfg": <model config>, "preprocess_cfg": {mean, std, ...}}`;
    the activation is the config's `quick_gelu`, which open_clip defaults to false when absent;
  * `open_clip_model.safetensors`: the OpenCLIP state dict, loaded strictly. open_clip also looks
    for `open_clip_pytorch_model.bin`, `model.safetensors`, ... in a fixed order; the reader below
    takes the same order;
  * tokenizer files, which open_clip writes for the hub and ignores when loading a CLIP text
    tower (it tokenizes with its bundled BPE, as we do); ours are generated from that BPE.

The weights go through the one OpenCLIP <-> Flax key table (`weights.openclip`).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping

from remoteclip_jax import transforms
from remoteclip_jax.errors import WeightsError
from remoteclip_jax.weights import openclip
from remoteclip_jax.weights.model_info import ModelInfo, source_record, read_json
from remoteclip_jax.files import write_json

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
# open_clip factory.py `_find_checkpoint_in_dir`, preferred names in order.
_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                 "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth", "model.safetensors",
                 "pytorch_model.bin", "pytorch_model.pth", "model.pth")


def open_clip_model_cfg(config: Mapping) -> dict[str, Any]:
    """Our complete config as open_clip's `model_cfg` (unset options, such as a ResNet's
    `patch_size`, left out so open_clip applies its own defaults)."""
    def drop_none(d):
        return {k: (drop_none(v) if isinstance(v, Mapping) else v) for k, v in d.items() if v is not None}
    return drop_none(json.loads(json.dumps(config)))


def write_hub_dir(variables: Mapping, info: ModelInfo, out_dir: str) -> list[str]:
    """Writes `open_clip_config.json`, `open_clip_model.safetensors` and tokenizer files."""
    config = info.config
    state = openclip.to_openclip(variables, config)  # checks the variables fit the config
    os.makedirs(out_dir, exist_ok=True)
    openclip.save_state_dict(state, os.path.join(out_dir, WEIGHTS_NAME))
    payload = {"model_cfg": open_clip_model_cfg(config),
               "preprocess_cfg": {"mean": list(transforms.OPENAI_MEAN),
                                  "std": list(transforms.OPENAI_STD),
                                  "interpolation": "bicubic", "resize_mode": "shortest"}}
    write_json(os.path.join(out_dir, CONFIG_NAME), payload, indent=2)
    from remoteclip_jax.weights import hf_processor
    files = hf_processor.write_tokenizer_files(out_dir, int(config["text_cfg"]["context_length"]))
    return [CONFIG_NAME, WEIGHTS_NAME, *files]


def read_hub_dir(directory: str) -> tuple[dict, ModelInfo]:
    """Reads an open_clip hub directory into (Flax variables, ModelInfo).

    Raises:
      WeightsError: missing or unusable `open_clip_config.json`, no weight file.
      WeightsError: weights that do not fit the config.
    """
    config_path = os.path.join(directory, CONFIG_NAME)
    data = read_json(config_path, WeightsError, "not found; not an open_clip directory")
    model_cfg = data.get("model_cfg") if isinstance(data, dict) else None
    if not isinstance(model_cfg, dict):
        raise WeightsError(f"{config_path}: no \"model_cfg\" object (open_clip needs one too)")
    from remoteclip_jax.models import model_config
    config = model_config(model_cfg)
    _warn_on_other_preprocessing(data.get("preprocess_cfg") or {}, config_path)
    weights = next((os.path.join(directory, n) for n in _WEIGHT_FILES
                    if os.path.isfile(os.path.join(directory, n))), None)
    if weights is None:
        raise WeightsError(f"{directory}: {CONFIG_NAME} but no weights ({', '.join(_WEIGHT_FILES)})")
    variables = openclip.load_openclip(weights, config)
    return variables, ModelInfo.from_model(config, variables=variables, source=source_record(directory))


def _warn_on_other_preprocessing(preprocess: Mapping, origin: str) -> None:
    # rc.image_transform normalises with OpenAI's statistics; a model trained with others
    # still loads, but its user must normalise as the config says.
    for key, ours in (("mean", transforms.OPENAI_MEAN), ("std", transforms.OPENAI_STD)):
        theirs = preprocess.get(key)
        if theirs is not None and any(abs(a - b) > 1e-6 for a, b in zip(theirs, ours)):
            logging.warning("%s: preprocess_cfg %s %s differs from OpenAI's %s that "
                            "rc.image_transform uses", origin, key, list(theirs), list(ours))
