"""The files `transformers.CLIPProcessor.from_pretrained` reads, generated from our own assets.

The tokenizer files (`vocab.json`, `merges.txt`) are written from the bundled BPE merge list
(`remoteclip_jax/bpe_simple_vocab_16e6.txt.gz`) in the id order our tokenizer uses, so the ids
match `remoteclip_jax.tokenize` without shipping a second vocabulary. The image-processor file
states the preprocessing our models were trained with: OpenAI's mean and std, a bicubic resize of
the shorter side to the model's image size, and a centre crop to a square of that size.

Two known differences of transformers' CLIP tokenizer remain (both from its own design, not from
these files): it does not run ftfy / HTML unescaping before splitting, and it recognises the
special tokens only as `<|startoftext|>` / `<|endoftext|>`, where open_clip (and we) also
treat the literal text `<start_of_text>` / `<end_of_text>` as special.
"""
from __future__ import annotations

import os

from remoteclip_jax import tokenizer as tok
from remoteclip_jax import transforms
from remoteclip_jax.files import atomic_write, write_json

# The special-token spellings transformers' CLIP tokenizer expects (its pre-tokenizer pattern
# hard-codes them); they take our ids 49406 / 49407.
HF_BOS = "<|startoftext|>"
HF_EOS = "<|endoftext|>"
# Padding after the end token never reaches the text embedding (causal attention, pooled at the
# end token), so its id is free. Not "!" (our id 0): a padding token is a special token, and the
# tokenizer would then split "!!!" into single "!"s.
HF_PAD = HF_EOS
_PIL_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, as the image processor's `resample` stores it


def _vocabulary() -> tuple[list[str], list[tuple[str, str]]]:
    """(token strings in id order, BPE merges in rank order) of the bundled vocabulary."""
    tokenizer = tok.Tokenizer()
    tokenizer._ensure_loaded()  # the vocabulary is loaded lazily; force it once here
    tokens = list(tokenizer._decoder)
    merges = sorted(tokenizer._ranks, key=tokenizer._ranks.__getitem__)
    tokens[tok.SOT_ID], tokens[tok.EOT_ID] = HF_BOS, HF_EOS
    return tokens, merges


def vocabulary_tokens() -> list[str]:
    """Our token strings in id order, special tokens spelt as transformers expects them."""
    return _vocabulary()[0]


def write_tokenizer_files(out_dir: str, context_length: int = tok.DEFAULT_CONTEXT_LENGTH) -> list[str]:
    """Writes `vocab.json`, `merges.txt`, `tokenizer_config.json`, `special_tokens_map.json`.

    Args:
      out_dir: an existing directory.
      context_length: the text tower's context length (the tokenizer's `model_max_length`).

    Returns:
      The names of the files written.
    """
    tokens, merges = _vocabulary()
    write_json(os.path.join(out_dir, "vocab.json"), {t: i for i, t in enumerate(tokens)},
               ensure_ascii=False)
    with atomic_write(os.path.join(out_dir, "merges.txt"), encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.writelines(f"{a} {b}\n" for a, b in merges)
    special = {"bos_token": HF_BOS, "eos_token": HF_EOS, "unk_token": HF_EOS, "pad_token": HF_PAD}
    config = {"tokenizer_class": "CLIPTokenizer", "processor_class": "CLIPProcessor",
              "model_max_length": int(context_length), "do_lower_case": True,
              "add_prefix_space": False, "errors": "replace", **special}
    for name, payload in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        write_json(os.path.join(out_dir, name), payload, indent=2)
    return ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]


def write_preprocessor_config(out_dir: str, image_size: int,
                              mean: tuple[float, ...] = transforms.OPENAI_MEAN,
                              std: tuple[float, ...] = transforms.OPENAI_STD) -> str:
    """Writes `preprocessor_config.json` for `CLIPImageProcessor` (resize, crop, mean, std)."""
    config = {
        "image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor",
        "do_convert_rgb": True, "do_resize": True, "size": {"shortest_edge": int(image_size)},
        "resample": _PIL_BICUBIC, "do_center_crop": True,
        "crop_size": {"height": int(image_size), "width": int(image_size)},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(mean), "image_std": list(std),
    }
    write_json(os.path.join(out_dir, "preprocessor_config.json"), config, indent=2)
    return "preprocessor_config.json"


def write_processor_files(out_dir: str, image_size: int,
                          context_length: int = tok.DEFAULT_CONTEXT_LENGTH) -> list[str]:
    """Everything `CLIPProcessor.from_pretrained(out_dir)` needs; returns the file names."""
    return [*write_tokenizer_files(out_dir, context_length),
            write_preprocessor_config(out_dir, image_size)]
