"""Evaluation speed: embedding extraction against open_clip PyTorch, and probes against extraction.

    python scripts/bench_eval.py [--model=ViT-B-32-quickgelu] [--images=256] [--batch=64]
        [--data=../shared/data] [--threads=2] [--full_run]

Both frameworks get the same random open_clip weights (converted with ``load_openclip``) and the
same preprocessed images (AID 150-px samples, open_clip's eval transform). Printed:

1. model forward images/s, JAX (jit, one device) vs open_clip PyTorch (``torch.no_grad``, same
   thread count), and their ratio;
2. the full JAX extraction pipeline (grain reader: decode + transform, then the sharded forward of
   the ``Evaluator``);
3. linear probe (C grid on a validation split), k-NN and few-shot stage times on features of the
   same width at 10k images (synthetic, 30 classes), next to the time extracting 10k images takes
   at the measured rate;
4. with ``--full_run``: an ``Evaluator`` over real samples (AID zero-shot / probes, RSICD-AID
   val_tiny retrieval, UCM, DOTA counting) with that model, and its wall time.

Keep it short on shared machines: the defaults run in a few minutes on 2 CPU cores. The forward
benchmark holds ``--images`` preprocessed images in memory (0.6 MB each at 224 px), so for the
issue's 10k-image figure use an accelerator host (``--images=10000 --batch=256``).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np


def _aid_paths(data: pathlib.Path, n: int) -> list[str]:
    classes = sorted(d for d in (data / "aid_150px").iterdir() if d.is_dir())
    per = -(-n // len(classes))
    paths = []
    for c in classes:
        paths += sorted(str(p) for p in c.glob("*.jpg"))[:per]
    return paths[:n]


def _rate(fn, n_items, repeats=3):
    fn()                                   # warm-up / compile
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_items / best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ViT-B-32-quickgelu")
    p.add_argument("--images", type=int, default=256, help="images for the forward benchmark")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--data", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--full_run", action="store_true", help="also time an Evaluator on real samples")
    p.add_argument("--full_per_class", type=int, default=20, help="AID images per class in --full_run")
    a = p.parse_args(argv)

    import jax
    import open_clip
    import torch

    import remoteclip_jax as rc
    from remoteclip_jax import config as schema
    from remoteclip_jax.data.images import open_rgb as load_image
    from remoteclip_jax.evaluate import Evaluator, probes
    from remoteclip_jax.train import sharding

    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    tmodel = open_clip.create_model(a.model, pretrained=None).eval()
    variables = rc.load_openclip({k: v.detach().numpy() for k, v in tmodel.state_dict().items()}, a.model)
    model = rc.create_model(a.model)
    pre = rc.image_transform(model.image_size)
    data = pathlib.Path(a.data)
    paths = _aid_paths(data, a.images)
    x = np.stack([pre(load_image(q)) for q in paths])
    print(f"model {a.model}, {len(paths)} AID images, batch {a.batch}, jax devices {jax.device_count()} "
          f"({jax.devices()[0].platform}), torch threads {a.threads}")

    # 1. forward only, same inputs, one device (as torch runs in one process).
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()[:1]).reshape(1, 1), ("data", "fsdp"),
                             axis_types=(jax.sharding.AxisType.Auto,) * 2)
    config = schema.get_base_config()
    config.eval.batch_size, config.eval.cache_features = a.batch, False
    config.evals.aid = schema.evaluation("zeroshot", kind="image_folder", path=str(data / "aid_150px"))
    ev = Evaluator(model, config, mesh, tempfile.mkdtemp())
    ev._encoders(variables)
    batches = [x[i:i + a.batch] for i in range(0, len(x) - a.batch + 1, a.batch)]
    n_fwd = len(batches) * a.batch

    def encode(b):
        return ev.encode_image(variables, sharding.shard_batch(b, mesh))

    def jax_fwd():
        jax.block_until_ready([encode(b) for b in batches])

    xt = [torch.from_numpy(b).permute(0, 3, 1, 2).contiguous() for b in batches]

    def torch_fwd():
        with torch.no_grad():
            for b in xt:
                tmodel.encode_image(b)

    r_jax = _rate(jax_fwd, n_fwd, repeats=2)
    r_torch = _rate(torch_fwd, n_fwd, repeats=2)
    f_jax = np.asarray(encode(batches[0]))
    with torch.no_grad():
        f_torch = tmodel.encode_image(xt[0]).numpy()
    print(f"forward: jax {r_jax:.1f} img/s, open_clip torch {r_torch:.1f} img/s, ratio jax/torch {r_jax / r_torch:.2f} "
          f"(max |feature diff| {np.abs(f_jax - f_torch).max():.2e})")

    # 2. full pipeline: grain reader (decode + transform) + sharded forward (no cache).
    config.evals.aid.max_per_class = max(1, a.images // 30)
    ev = Evaluator(model, config, mesh, tempfile.mkdtemp())
    ev._encoders(variables)
    dataset = ev._dataset(ev.entries["aid"])
    t = time.perf_counter()
    feats = ev.image_features(variables, dataset, desc="pipeline")
    t_pipe = time.perf_counter() - t
    r_pipe = len(feats) / t_pipe
    print(f"pipeline (decode+transform+forward, first call incl. nothing compiled new): {r_pipe:.1f} img/s")

    # 3. probes at 10k scale vs extraction of 10k images.
    rng = np.random.default_rng(0)
    n, c, e = 10000, 30, feats.shape[1]
    centers = rng.normal(size=(c, e))
    y = rng.integers(0, c, n)
    f = centers[y] + 3.0 * rng.normal(size=(n, e))
    tr, te = np.arange(n) < 8000, np.arange(n) >= 8000
    t = time.perf_counter()
    lp = probes.linear_probe(f[tr], y[tr], f[te], y[te])
    t_lp = time.perf_counter() - t
    t = time.perf_counter()
    probes.knn_classify(f[tr], y[tr], f[te], y[te], c)
    t_knn = time.perf_counter() - t
    t = time.perf_counter()
    probes.fewshot(f[tr], y[tr], f[te], y[te])
    t_fs = time.perf_counter() - t
    t_ext = n / r_pipe
    print(f"10k images: extraction {t_ext:.0f} s at the pipeline rate; linear probe {t_lp:.1f} s "
          f"({len(probes.DEFAULT_CS)} C values + refit, chose C={lp['C']}), k-NN {t_knn:.2f} s, few-shot "
          f"{t_fs:.1f} s (6 shots x 5 episodes); probes/extraction = {(t_lp + t_knn + t_fs) / t_ext:.3f}")

    if a.full_run:
        from remoteclip_jax.data.readers.count_manifest import dota_images, manifest_rows, write_manifest
        with tempfile.TemporaryDirectory() as tmp:
            write_manifest(manifest_rows(dota_images(str(data / "detection" / "dota"))), f"{tmp}/count.jsonl")
            aid = dict(kind="image_folder", path=str(data / "aid_150px"), max_per_class=a.full_per_class)
            ucm = data / "captions" / "ucm"
            config.evals = {
                "rsicd_aid_val_tiny": schema.evaluation("retrieval", kind="jsonl", split="val",
                                                        path=str(data / "rsicd_aid" / "val_tiny.jsonl")),
                "ucm9": schema.evaluation("retrieval", kind="caption_json", split="train",
                                          path=str(ucm / "dataset_ucm.json"),
                                          image_root=str(ucm / "images"), skip_missing=True),
                "aid": schema.evaluation("zeroshot", **aid),
                "aid_probe": schema.evaluation("linear_probe", **aid),
                "aid_knn": schema.evaluation("knn", **aid),
                "aid_fewshot": schema.evaluation("fewshot", **aid, shots=(1, 2, 4, 8), episodes=5),
                "dota_count": schema.evaluation("count", kind="count_manifest", path=f"{tmp}/count.jsonl"),
            }
            config.eval.model_name = f"random {a.model}"
            t = time.perf_counter()
            out = Evaluator(model, config, mesh, tmp)(variables)
            wall = time.perf_counter() - t
            n_img = 30 * a.full_per_class + 90 + 9
            print(f"Evaluator: {len(config.evals)} entries, ~{n_img} images, wall {wall:.1f} s")
            print(pathlib.Path(tmp, "eval", "results.md").read_text())
            for k in sorted(out):
                if k.endswith(("mean_recall", "top1")):
                    print(f"  {k} = {out[k]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
