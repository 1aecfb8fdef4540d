"""Train-step throughput and peak memory: remoteclip_jax vs open_clip PyTorch, same machine and run.

    python scripts/bench_train.py                       # ViT-B-32, batch 32, float32, 3 timed steps
    python scripts/bench_train.py --steps 5 --dtype bfloat16 --peak-tflops 989   # e.g. on an H100
    python scripts/bench_train.py --torch-compile --e2e --restart ...   # the optional rows
    python scripts/bench_train.py --patch-dropout 0.5 --only jax   # FLIP's speed-up, same run

Each framework runs in its own child process (so peak memory is its own) on the same random
batch size, with the same optimizer (AdamW, open_clip's parameter groups) and loss (CLIP, local
loss). Prints pairs/s, seconds per step, peak memory, the JAX/PyTorch throughput ratio, and the
model-FLOP utilisation (MFU) of both: pairs/s x FLOPs per pair / peak FLOP/s of the devices.
FLOPs per pair come from the towers' shapes (`remoteclip_jax.models.flops`: 3x the forward
products, the same figure on every backend; XLA's own count is printed beside it where the
backend gives one, but on GPUs it misses cuBLAS and cuDNN calls). The peak comes from a table
for GPUs/TPUs (bf16 dense), `--peak-tflops`, or, on a CPU, an estimate from the core count, clock
and vector width that the output flags as such.

Optional rows: `--patch-dropout RATE` (ours with FLIP patch dropout, the speed-up over ours
without it in the same run); `--torch-compile` (open_clip under `torch.compile`); `--e2e` (our real training
loop: records of 224-px JPEGs through the grain pipeline, decode and augmentation, so a
data-bound loop shows beside the bare step; `--workers` decoding processes); `--restart` (our
init + compile twice with one fresh persistent compilation cache: a cold start, then a restart).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cpu_peak_flops() -> tuple[float, str]:
    """A rough float32 peak of this CPU: cores × GHz × FLOPs per cycle (FMA vector width)."""
    flags, mhz = "", 0.0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = line
                elif line.startswith("cpu MHz"):
                    mhz = max(mhz, float(line.split(":")[1]))
    except OSError:
        pass
    per_cycle = 64 if "avx512f" in flags else 32 if "fma" in flags else 8  # f32 FLOP/cycle/core
    cores = len(os.sched_getaffinity(0))
    ghz = (mhz or 2000.0) / 1000.0
    return cores * ghz * 1e9 * per_cycle, (f"CPU estimate: {cores} cores x {ghz:.2f} GHz x "
                                           f"{per_cycle} f32 FLOP/cycle")


def _time_steps(one_step, steps: int) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds (all threads) per step.

    CPU seconds are less sensitive than wall time to other jobs on a shared machine.
    """
    walls, cpus = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        one_step()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2]


def _batch(np, batch: int, image_size: int, context_length: int):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch, image_size, image_size, 3)).astype(np.float32)
    texts = rng.integers(1, 49407, size=(batch, context_length)).astype(np.int32)
    texts[:, 20] = 49407
    texts[:, 21:] = 0
    return images, texts


def run_jax(args) -> dict:
    import jax
    import numpy as np

    import remoteclip_jax as rc
    from remoteclip_jax.config import get_base_config
    from remoteclip_jax.train import sharding, state as state_lib, step as step_lib

    config = get_base_config()
    config.model, config.dtype, config.remat = args.model, args.dtype, args.remat
    # Constant lr 5e-4 without warmup, as the PyTorch side.
    config.optim.warmup_steps, config.optim.schedule, config.train.steps = 0, "const", 1000
    config.train.patch_dropout = args.patch_dropout if args.child == "jax-pd" else 0.0
    model = rc.create_model(args.model, dtype=args.dtype, remat=args.remat,
                            patch_dropout=config.train.patch_dropout)
    mesh = sharding.make_mesh(config.mesh)
    images, texts = _batch(np, args.batch, model.image_size, model.context_length)
    batch = sharding.shard_batch({"images": images, "texts": texts}, mesh)
    t0 = time.perf_counter()
    state, _ = state_lib.create_train_state(model, config, mesh, jax.random.PRNGKey(0))
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    train_step = step_lib.make_train_step(model, config, mesh)
    rng = jax.random.PRNGKey(1)
    t0 = time.perf_counter()
    compiled = train_step.lower(state, batch, rng).compile()
    compile_s = time.perf_counter() - t0
    flops = None
    try:
        analysis = compiled.cost_analysis()
        analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
        flops = float(analysis.get("flops", 0.0)) or None
    except Exception:  # best effort: not every backend reports it
        pass
    xla_mib = None
    try:  # what the compiled step itself needs: arguments + outputs + temporaries − donated
        m = compiled.memory_analysis()
        xla_mib = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                   - m.alias_size_in_bytes) / 2 ** 20
    except Exception:
        pass
    rss_before_steps = _peak_rss_mib()  # init + compilation
    for _ in range(args.warmup):
        state, metrics = compiled(state, batch, rng)
    jax.block_until_ready(state)

    def one_step():
        nonlocal state, metrics
        state, metrics = compiled(state, batch, rng)
        jax.block_until_ready(state)

    step_s, cpu_s = _time_steps(one_step, args.steps)
    device = jax.devices()[0]
    peak_dev = None
    try:
        stats = device.memory_stats() or {}
        peak_dev = stats.get("peak_bytes_in_use")
    except Exception:
        pass
    from remoteclip_jax.train import metrics as metrics_lib
    return {"framework": "jax", "step_s": step_s, "cpu_s": cpu_s, "init_s": init_s,
            "compile_s": compile_s, "start_s": init_s + compile_s,
            "loss": float(metrics["loss"]), "device": device.device_kind,
            "platform": device.platform, "devices": jax.device_count(),
            "peak_rss_mib": _peak_rss_mib(),
            "peak_device_mib": peak_dev / 2 ** 20 if peak_dev else None,
            "xla_flops_per_step": flops, "xla_step_mib": xla_mib,
            "peak_rss_before_steps_mib": rss_before_steps,
            "table_peak_flops": metrics_lib.peak_flops_per_device(device)}


def run_torch(args) -> dict:
    import math

    import numpy as np
    import open_clip
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = open_clip.create_model(args.model, precision="fp32").to(device).train()
    forward = torch.compile(model) if args.child == "torch-compile" else model
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731,E501
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
         {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.05}],
        lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = open_clip.loss.ClipLoss()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images, texts = _batch(np, args.batch, size, model.context_length)
    images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    texts = torch.from_numpy(texts).long().to(device)
    autocast = (torch.autocast(device, dtype=torch.bfloat16) if args.dtype == "bfloat16"
                else torch.autocast(device, enabled=False))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            img, txt, scale = forward(images, texts)
            loss = loss_fn(img, txt, scale)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return loss

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        loss = step()
    sync()

    def one_step():
        nonlocal loss
        loss = step()
        sync()

    step_s, cpu_s = _time_steps(one_step, args.steps)
    return {"framework": args.child, "step_s": step_s, "cpu_s": cpu_s, "loss": float(loss.item()),
            "threads": torch.get_num_threads(), "peak_rss_mib": _peak_rss_mib(),
            "peak_device_mib": (torch.cuda.max_memory_allocated() / 2 ** 20
                                if device == "cuda" else None)}


def run_e2e(args) -> dict:
    """Our real training loop (records -> grain -> decode/augment -> sharded step) on 224-px JPEGs."""
    import json
    import pathlib
    import tempfile

    from absl import flags

    import bench_pipeline
    from remoteclip_jax.config import get_base_config, source
    from remoteclip_jax.train import loop

    flags.FLAGS.mark_as_parsed()  # grain reads absl flags even outside absl.app.run
    with tempfile.TemporaryDirectory() as tmp:
        records = pathlib.Path(tmp) / "records"
        what = bench_pipeline.build_records(records, min(4 * args.batch, 2048), side=224)
        config = get_base_config()
        config.model, config.dtype, config.remat = args.model, args.dtype, args.remat
        config.optim.warmup_steps, config.optim.schedule = 0, "const"
        config.data.batch_size = args.batch
        config.data.num_workers = args.workers
        config.data.sources = {"jpegs": source(kind="records", path=str(records))}
        config.train.steps = args.warmup + args.steps
        config.train.log_every = max(args.warmup, 1)
        config.train.checkpoint_every = 10 ** 9  # the final step still writes one
        config.train.export = False
        config.compilation_cache = ""
        workdir = pathlib.Path(tmp) / "run"
        loop.train_and_evaluate(config, workdir)
        rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        rates = [r["train/pairs_per_s"] for r in rows if "train/pairs_per_s" in r][1:]
    return {"framework": "e2e", "pairs_per_s": sorted(rates)[len(rates) // 2] if rates else None,
            "data": what, "workers": args.workers}


def _child(framework: str, args, env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", framework, "--model", args.model,
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--dtype", args.dtype, "--workers", str(args.workers),
           "--patch-dropout", str(args.patch_dropout)] + (
               ["--remat"] if args.remat else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env={**os.environ, **(env or {})})
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode or not lines:
        raise SystemExit(f"{framework} benchmark failed (exit {out.returncode}):\n"
                         f"{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def _peak(args, r) -> tuple[float | None, str]:
    if args.peak_tflops > 0:
        return args.peak_tflops * 1e12, "--peak-tflops"
    if r.get("table_peak_flops"):
        return r["table_peak_flops"], f"table ({r['device']}, bf16 dense)"
    if r["platform"] == "cpu":
        peak, source = _cpu_peak_flops()
        return peak, source + " [ESTIMATE]"
    return None, ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--batch", type=int, default=32, help="global batch (pairs per step)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after compilation")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate jax/torch this many times; report each one's fastest round")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--remat", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="peak TFLOP/s per device for MFU (default: table or CPU estimate)")
    p.add_argument("--only", choices=["jax", "torch"], help="run one framework only")
    p.add_argument("--torch-compile", action="store_true",
                   help="also time open_clip under torch.compile")
    p.add_argument("--e2e", action="store_true",
                   help="also time our real training loop on 224-px JPEG records")
    p.add_argument("--workers", type=int, default=0,
                   help="--e2e: grain worker processes decoding images")
    p.add_argument("--restart", action="store_true",
                   help="also start ours twice with one fresh compilation cache (cold, cached)")
    p.add_argument("--patch-dropout", type=float, default=0.0, metavar="RATE",
                   help="also time ours with FLIP patch dropout at RATE (e.g. 0.5)")
    p.add_argument("--child", choices=["jax", "jax-pd", "torch", "torch-compile", "e2e"],
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        runners = {"jax": run_jax, "jax-pd": run_jax, "torch": run_torch,
                   "torch-compile": run_torch, "e2e": run_e2e}
        print(json.dumps(runners[args.child](args)))
        return 0

    from remoteclip_jax.models import flops as flops_lib

    # Alternate the frameworks round by round, so both see similar load on a shared machine;
    # keep each framework's fastest round.
    frameworks = [fw for fw in ("jax", "torch") if args.only in (None, fw)]
    if args.torch_compile:
        frameworks.append("torch-compile")
    if args.patch_dropout:
        frameworks.append("jax-pd")
    results = {}
    for round_ in range(args.rounds):
        for fw in frameworks:
            print(f"round {round_ + 1}/{args.rounds}: running {fw} ...", flush=True)
            r = _child(fw, args)
            if fw not in results or r["step_s"] < results[fw]["step_s"]:
                r["cpu_s"] = min(r["cpu_s"], results.get(fw, r)["cpu_s"])
                results[fw] = r
            else:
                results[fw]["cpu_s"] = min(r["cpu_s"], results[fw]["cpu_s"])
    gflop = flops_lib.train_flops_per_pair(args.model) / 1e9
    print(f"\nmodel {args.model}, batch {args.batch}, {args.dtype}, median of {args.steps} timed "
          f"steps, best of {args.rounds} round(s); {gflop:.1f} GFLOP per pair (model FLOPs)")
    jax_r = results.get("jax")
    peak, peak_source = _peak(args, jax_r) if jax_r else (None, "")
    for fw, r in results.items():
        mem = (f"peak device {r['peak_device_mib']:.0f} MiB" if r.get("peak_device_mib")
               else f"peak RSS {r['peak_rss_mib']:.0f} MiB")
        extra = (f", compile {r['compile_s']:.1f} s, init {r['init_s']:.1f} s"
                 if fw.startswith("jax") else f", {r['threads']} threads")
        if fw == "jax" and r.get("xla_step_mib"):
            extra += (f"\n         (XLA: the step needs {r['xla_step_mib']:.0f} MiB incl. state; "
                      f"peak RSS was {r['peak_rss_before_steps_mib']:.0f} MiB before the first "
                      f"step)")
        print(f"  {fw:6s} {args.batch / r['step_s']:8.2f} pairs/s  {r['step_s']:.3f} s/step  "
              f"({r['cpu_s']:.2f} CPU-s/step)  {mem}  loss {r['loss']:.4f}{extra}")
    if "jax" in results and "torch" in results:
        ratio = results["torch"]["step_s"] / results["jax"]["step_s"]
        print(f"  throughput ratio jax/torch: {ratio:.2f}x")
        cpu_ratio = results["torch"]["cpu_s"] / results["jax"]["cpu_s"]
        print(f"  pairs per CPU-second ratio jax/torch: {cpu_ratio:.2f}x (robust to other load)")
        mem_key = "peak_device_mib" if results["jax"].get("peak_device_mib") else "peak_rss_mib"
        if results["torch"].get(mem_key):
            print(f"  peak memory ratio jax/torch: "
                  f"{results['jax'][mem_key] / results['torch'][mem_key]:.2f}x ({mem_key})")
    if "torch-compile" in results and "jax" in results:
        ratio = results["torch-compile"]["step_s"] / results["jax"]["step_s"]
        print(f"  throughput ratio jax/torch.compile: {ratio:.2f}x")
    if "jax-pd" in results and "jax" in results:
        ratio = results["jax"]["step_s"] / results["jax-pd"]["step_s"]
        print(f"  patch dropout {args.patch_dropout:g} speed-up (jax, same run): {ratio:.2f}x")
    if peak:
        for fw, r in results.items():
            if fw == "jax-pd":
                continue  # fewer tokens: the full model's FLOPs per pair do not apply
            achieved = args.batch / r["step_s"] * gflop * 1e9
            devices = r.get("devices", 1)
            print(f"  MFU ({fw}): {100 * achieved / (peak * devices):.1f}%  = "
                  f"{achieved / 1e12:.3f} TFLOP/s / {devices} x {peak / 1e12:.2f} TFLOP/s peak "
                  f"({peak_source})")
    else:
        print("  MFU: unknown (no peak for this device); pass --peak-tflops")
    if jax_r and jax_r.get("xla_flops_per_step"):
        print(f"  XLA's cost analysis counts {jax_r['xla_flops_per_step'] / args.batch / 1e9:.1f} "
              f"GFLOP/pair for the compiled step (incl. optimizer, loss; misses library calls "
              f"on GPUs)")
    if args.e2e:
        print("running our training loop (e2e) ...", flush=True)
        e2e = _child("e2e", args)
        line = f"  e2e loop: {e2e['pairs_per_s']:.2f} pairs/s ({e2e['data']}, {e2e['workers']} workers)"
        if jax_r:
            line += f", {e2e['pairs_per_s'] * jax_r['step_s'] / args.batch:.2f}x the bare step"
        print(line)
    if args.restart:
        import tempfile

        with tempfile.TemporaryDirectory() as cache:
            env = {"JAX_COMPILATION_CACHE_DIR": cache,
                   "JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES": "all"}
            print("starting ours twice with one fresh compilation cache ...", flush=True)
            cold, warm = _child("jax", args, env), _child("jax", args, env)
        print(f"  init + compile: cold {cold['start_s']:.1f} s (init {cold['init_s']:.1f}, compile "
              f"{cold['compile_s']:.1f}), cached restart {warm['start_s']:.1f} s (init "
              f"{warm['init_s']:.1f}, compile {warm['compile_s']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
