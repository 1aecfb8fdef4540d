"""Embedding throughput: remoteclip_jax vs open_clip (PyTorch), same machine, same run.

Prints images/s and texts/s for both, float32 and bfloat16, and the ratio ours/theirs.
Rounds alternate between the two implementations so that load from other processes hits both.

    python scripts/bench_embed.py --model ViT-B-32 --batch 32 --rounds 3
    python scripts/bench_embed.py --dtypes bfloat16 --precast      # + params cast to bf16 once
    python scripts/bench_embed.py --xla-flags=--xla_cpu_experimental_ynn_fusion_type=+dot

On a shared machine single rounds vary by 2-5x (both runtimes), so two ratios are printed:
`best` (fastest round of each, the least disturbed one) and `median`. See scripts/xla_cpu_flags.md.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _time_once(fn, gap: float) -> float:
    # The other runtime's worker threads keep spinning for a moment after their call returns
    # (OpenMP in torch, the XLA:CPU thread pool): let them park before timing, or they steal
    # cores from whoever runs next.
    time.sleep(gap)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cast_floats(tree, dtype):
    """Cast every floating leaf of a variables tree to `dtype` (done once, outside jit)."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                        tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--towers", default="image,text")
    parser.add_argument("--precast", action="store_true",
                        help="also time ours with the variables cast to the compute dtype once, "
                             "outside jit (reported as '<dtype>+precast'; float32 params otherwise)")
    parser.add_argument("--xla-flags", default="",
                        help="extra XLA flags appended to $XLA_FLAGS before the backend starts, "
                             "e.g. --xla-flags=--xla_cpu_experimental_ynn_fusion_type=+dot")
    parser.add_argument("--gap", type=float, default=0.2,
                        help="seconds to idle before each timed call (lets thread pools park)")
    args = parser.parse_args()

    # XLA reads XLA_FLAGS when the CPU backend is created, i.e. at the first jax call below.
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {args.xla_flags}".strip()

    import jax
    import jax.numpy as jnp
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
    images_j, texts_j = jax.device_put(images), jax.device_put(texts)
    print(f"{args.model}, batch {args.batch}, {args.rounds} rounds, devices: {jax.devices()}, "
          f"torch threads: {torch.get_num_threads()}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"{'dtype':>17} {'tower':>6} {'ours/s':>8} {'open_clip/s':>12} {'best':>6} "
          f"{'median':>7}   (rates: median round)")
    for dtype_name in args.dtypes.split(","):
        dtype = jnp.dtype(dtype_name)
        model = rc.create_model(args.model, dtype=dtype)
        encode_image = jax.jit(lambda v, x: model.apply(v, x, method="encode_image"))
        encode_text = jax.jit(lambda v, t: model.apply(v, t, method="encode_text"))
        settings = [(dtype_name, variables)]
        if args.precast and dtype != jnp.float32:
            settings.append((f"{dtype_name}+precast", jax.device_put(_cast_floats(variables, dtype))))
        torch_dtype = getattr(torch, dtype_name)
        for label, params in settings:
            towers = {"image": (lambda: encode_image(params, images_j).block_until_ready(),
                                lambda: reference.encode_image(images_t)),
                      "text": (lambda: encode_text(params, texts_j).block_until_ready(),
                               lambda: reference.encode_text(texts_t))}
            for tower in args.towers.split(","):
                ours, theirs = towers[tower]
                ours()  # compile
                with torch.no_grad(), torch.autocast("cpu", dtype=torch_dtype,
                                                     enabled=dtype != jnp.float32):
                    theirs()  # warm up (oneDNN primitive creation)
                    ours_t, theirs_t = [], []
                    for _ in range(args.rounds):
                        ours_t.append(_time_once(ours, args.gap))
                        theirs_t.append(_time_once(theirs, args.gap))
                best = min(theirs_t) / min(ours_t)
                median = float(np.median(theirs_t) / np.median(ours_t))
                print(f"{label:>17} {tower:>6} {args.batch / np.median(ours_t):8.1f} "
                      f"{args.batch / np.median(theirs_t):12.1f} {best:5.2f}x {median:6.2f}x",
                      flush=True)


if __name__ == "__main__":
    main()
