"""Trains one small CLIP on the same real pairs with our trainer and with open_clip's, and scores
both with our evaluator: does our training loop learn as well as the reference one?

    python scripts/compare_open_clip_train.py --data ../shared/data --out /tmp/cmp \
        --steps 1000 --seeds 0 1

Both sides train `configs/rsicd_aid.py`'s model (written out as an open_clip model config, loaded
with ``--model local-dir:DIR``) from scratch on ``rsicd_aid/train.jsonl``, with the recipe's
batch, lr, weight decay, AdamW betas/eps, parameter groups (open_clip's main.py rule on both
sides), warmup + cosine schedule, float32, and an epoch of every (image, caption) pair once: our
source has ``pairs="caption"``, and open_clip's CSV loader reads one row per caption. open_clip
trains whole epochs and drops the last partial batch, so its CSV holds exactly ``steps x batch``
rows: as many full passes over the pairs as fit, then a random share of them — the same multiset
of pairs our stream draws in ``steps`` steps. Each trained model is then evaluated by the same
command, ``remoteclip_jax.main --mode=eval`` on ``val.jsonl`` (mean recall of R@1/5/10 both
ways; "expected" under ties, with the pessimistic/optimistic bounds).

Everything is written under ``--out``; a finished run is reused (delete its folder to redo it).
Needs ``open_clip_train`` (installed with open_clip_torch 3.3.0, a test dependency).
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, as the subprocesses (cwd ROOT) import it


def recipe():
    """configs/rsicd_aid.py as a module (its SMALL_MODEL) and its config."""
    spec = importlib.util.spec_from_file_location("rsicd_aid", ROOT / "configs" / "rsicd_aid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.get_config()


def read_pairs(jsonl: pathlib.Path) -> list[tuple[str, str]]:
    """(absolute image path, caption) for every non-blank caption, as our trainer reads them."""
    from remoteclip_jax.data.readers import read_caption_jsonl

    return [(str(pathlib.Path(im.path).resolve()), c)
            for im in read_caption_jsonl(jsonl, "train") for c in im.captions if c.strip()]


def write_open_clip_csv(pairs, rows: int, seed: int, path: pathlib.Path) -> None:
    """`rows` rows: full passes over `pairs`, then a seeded random share of them."""
    rng = np.random.default_rng(seed)
    full, rest = divmod(rows, len(pairs))
    order = [*range(len(pairs))] * full + list(rng.permutation(len(pairs))[:rest])
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filepath", "title"])
        writer.writerows(pairs[i] for i in order)


def write_model_dir(model: dict, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": model,
                                                           "preprocess_cfg": {}}, indent=1))


def run(cmd: list[str], log: pathlib.Path) -> None:
    print("+", " ".join(cmd), flush=True)
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}); see {log}")


def evaluate(weights: pathlib.Path, workdir: pathlib.Path) -> dict:
    """Our evaluator on the trained weights: mean recalls, with their tie bounds."""
    if not list(workdir.glob("**/results.json")):
        workdir.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "remoteclip_jax.main", "--config=configs/rsicd_aid.py",
             f"--workdir={workdir}", "--mode=eval", f"--config.init_from={weights}"],
            workdir / "eval.log")
    return read_scores(workdir)


def _mean_recall_entries(tree, prefix=""):
    """Every `...mean_recall...` leaf of a nested JSON value, by its dotted path."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items()
                for k, v in _mean_recall_entries(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree} if "mean_recall" in prefix else {}


def read_scores(workdir: pathlib.Path) -> dict:
    """results.json's mean recalls ("expected" tie rule) and details.json's entries for them."""
    (results_file,) = workdir.glob("**/results.json")
    results = json.loads(results_file.read_text())
    details = json.loads((results_file.parent / "details.json").read_text())
    return {"results": {k: v for k, v in results.items() if "mean_recall" in k},
            "details": _mean_recall_entries(details)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("REMOTECLIP_DATA", "data/shared"))
    parser.add_argument("--out", default="/tmp/compare_open_clip_train")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warmup steps (default: the recipe's share of its run)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    data, out = pathlib.Path(args.data).resolve(), pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    module, c = recipe()
    batch = int(c.data.batch_size)
    warmup = args.warmup if args.warmup is not None else max(
        1, round(c.optim.warmup_steps * args.steps / c.train.steps))
    pairs = read_pairs(data / "rsicd_aid" / "train.jsonl")
    model_dir = out / "model"
    write_model_dir(module.SMALL_MODEL, model_dir)
    os.environ["REMOTECLIP_DATA"] = str(data)  # the recipe's data root, in every subprocess
    table = []
    for seed in args.seeds:
        # Ours: the recipe as it is, shortened to --steps.
        ours = out / f"ours_seed{seed}"
        if not (ours / "export").is_dir():
            ours.mkdir(parents=True, exist_ok=True)
            run([sys.executable, "-m", "remoteclip_jax.main", "--config=configs/rsicd_aid.py",
                 f"--workdir={ours}", f"--config.seed={seed}", f"--config.train.steps={args.steps}",
                 f"--config.optim.warmup_steps={warmup}", "--config.train.checkpoint_every=100000"],
                ours / "train.log")
        table.append(("ours", seed, evaluate(ours / "export", out / f"ours_seed{seed}_eval")))
        # open_clip_train: one epoch over exactly steps x batch rows.
        theirs = out / f"open_clip_seed{seed}"
        checkpoint = theirs / "run" / "checkpoints" / "epoch_1.pt"
        if not checkpoint.is_file():
            theirs.mkdir(parents=True, exist_ok=True)
            train_csv = theirs / "train.csv"
            write_open_clip_csv(pairs, args.steps * batch, seed, train_csv)
            o = c.optim
            run([sys.executable, "-m", "open_clip_train.main",
                 "--train-data", str(train_csv), "--dataset-type", "csv",
                 "--csv-separator", "\t", "--csv-img-key", "filepath", "--csv-caption-key", "title",
                 "--model", f"local-dir:{model_dir}", "--batch-size", str(batch), "--epochs", "1",
                 "--lr", str(o.lr), "--wd", str(o.weight_decay), "--beta1", str(o.b1),
                 "--beta2", str(o.b2), "--eps", str(o.eps), "--warmup", str(warmup),
                 "--lr-scheduler", "cosine", "--precision", "fp32", "--workers", "0",
                 "--seed", str(seed), "--logs", str(theirs), "--name", "run",
                 "--save-frequency", "1", "--log-every-n-steps", "20", "--report-to", ""],
                theirs / "train.log")
        table.append(("open_clip_train", seed,
                      evaluate(checkpoint, out / f"open_clip_seed{seed}_eval")))
    summary = {"steps": args.steps, "batch": batch, "warmup": warmup, "pairs": len(pairs),
               "runs": [{"trainer": t, "seed": s, **r} for t, s, r in table]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
