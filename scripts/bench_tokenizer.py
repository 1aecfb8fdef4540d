"""Tokenizer throughput: remoteclip_jax.tokenize vs open_clip.tokenize, measured in the same run.

Prints texts/s for a cold word cache (a fresh tokenizer, vocabulary already loaded)
and a warm one (the same batch again), for plain RSICD-style captions and for the
same captions with non-ASCII characters (which take the full ftfy/html path).

    python scripts/bench_tokenizer.py [--n 20000] [--repeats 3]
"""
import argparse
import json
import pathlib
import random
import time

import numpy as np

from remoteclip_jax.tokenizer import Tokenizer

RSICD_TRAIN = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "rsicd_aid" / "train.jsonl"


def rsicd_like_captions(n: int, seed: int = 0) -> list[str]:
    """Real RSICD captions when ../shared/data is present, else generated ones in their style."""
    captions = []
    if RSICD_TRAIN.is_file():
        with open(RSICD_TRAIN) as f:
            for line in f:
                captions.extend(json.loads(line)["captions"])
    rng = random.Random(seed)
    if not captions:
        scenes = ["airport", "beach", "bridge", "farmland", "forest", "parking lot", "port", "river", "stadium"]
        things = ["buildings", "trees", "cars", "planes", "boats", "roads", "houses", "ponds", "runways"]
        for _ in range(n):
            captions.append(f"{rng.choice(['many', 'some', 'two', 'green'])} {rng.choice(things)} are near "
                            f"a {rng.choice(scenes)} {rng.choice(['.', ' .'])}")
    rng.shuffle(captions)
    return (captions * (n // len(captions) + 1))[:n]


def with_unicode(captions: list[str], seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    extras = ["café", "naïve", "東京", "😀", "“quoted”", "Zürich", "&amp;"]
    return [f"{c} {rng.choice(extras)}" for c in captions]


def rate(fn, texts, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def bench(name: str, texts: list[str], repeats: int) -> None:
    from open_clip.tokenizer import SimpleTokenizer

    # Cold: fresh tokenizers with their vocabularies loaded but empty word caches.
    ours = Tokenizer()
    ours.encode("")
    theirs = SimpleTokenizer()
    start = time.perf_counter()
    a = ours(texts)
    ours_cold = len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    b = theirs(texts, context_length=77).numpy()
    theirs_cold = len(texts) / (time.perf_counter() - start)
    if not np.array_equal(a, b):
        raise SystemExit(f"{name}: ids differ from open_clip; the benchmark is void")
    ours_warm = rate(ours, texts, repeats)
    theirs_warm = rate(lambda t: theirs(t, context_length=77), texts, repeats)
    print(f"{name} ({len(texts)} texts, ids identical)")
    print(f"  cold cache  ours {ours_cold:>10,.0f} texts/s   open_clip {theirs_cold:>9,.0f} texts/s   "
          f"ratio {ours_cold / theirs_cold:5.1f}x")
    print(f"  warm cache  ours {ours_warm:>10,.0f} texts/s   open_clip {theirs_warm:>9,.0f} texts/s   "
          f"ratio {ours_warm / theirs_warm:5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="number of captions")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs; the best is reported")
    args = parser.parse_args()

    start = time.perf_counter()
    Tokenizer().encode("")
    print(f"vocabulary load: {1e3 * (time.perf_counter() - start):.0f} ms")
    captions = rsicd_like_captions(args.n)
    bench("RSICD captions (ASCII)", captions, args.repeats)
    bench("RSICD captions + non-ASCII word", with_unicode(captions), args.repeats)


if __name__ == "__main__":
    main()
