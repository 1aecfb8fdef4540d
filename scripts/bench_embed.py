"""Embedding throughput: remoteclip_jax vs open_clip (PyTorch), same machine, same run.

Prints images/s and texts/s for both, float32 and bfloat16, and the ratio ours/theirs.
Rounds alternate between the two implementations so that load from other processes hits both.

    python scripts/bench_embed.py --model ViT-B-32 --batch 64 --rounds 5
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np


def _time(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()

    import open_clip
    import torch

    import remoteclip_jax as rc

    torch.manual_seed(0)
    reference = open_clip.create_model(args.model).eval()
    variables = jax.device_put(rc.load_openclip(reference.state_dict(), args.model))
    size = rc.model_config(args.model)["vision_cfg"]["image_size"]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch, size, size, 3), dtype=np.float32)
    texts = rc.tokenize([f"there are {i} planes and {i % 7} storage tanks at the edge of the picture ."
                         for i in range(args.batch)])
    images_t = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    texts_t = torch.from_numpy(texts.astype(np.int64))
    print(f"{args.model}, batch {args.batch}, {args.rounds} rounds, devices: {jax.devices()}, "
          f"torch threads: {torch.get_num_threads()}")
    print(f"{'dtype':>9} {'tower':>6} {'ours/s':>9} {'open_clip/s':>12} {'ratio':>6}")
    for dtype_name in args.dtypes.split(","):
        model = rc.create_model(args.model, dtype=jnp.dtype(dtype_name))
        encode_image = jax.jit(lambda v, x: model.apply(v, x, method="encode_image"))
        encode_text = jax.jit(lambda v, t: model.apply(v, t, method="encode_text"))
        images_j, texts_j = jax.device_put(images), jax.device_put(texts)
        torch_dtype = getattr(torch, dtype_name)
        for tower, ours, theirs in (
                ("image", lambda: encode_image(variables, images_j).block_until_ready(),
                 lambda: reference.encode_image(images_t)),
                ("text", lambda: encode_text(variables, texts_j).block_until_ready(),
                 lambda: reference.encode_text(texts_t))):
            ours()  # compile
            with torch.no_grad(), torch.autocast("cpu", dtype=torch_dtype,
                                                 enabled=dtype_name != "float32"):
                theirs()  # warm up
                ours_t, theirs_t = [], []
                for _ in range(args.rounds):
                    ours_t += _time(ours, 1)
                    theirs_t += _time(theirs, 1)
            ours_rate = args.batch / float(np.median(ours_t))
            theirs_rate = args.batch / float(np.median(theirs_t))
            print(f"{dtype_name:>9} {tower:>6} {ours_rate:9.1f} {theirs_rate:12.1f} "
                  f"{ours_rate / theirs_rate:5.2f}x")


if __name__ == "__main__":
    main()
