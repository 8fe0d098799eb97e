"""The host-dependent settings, each A/B in one process on the embedded backbone: the dtype
(float32 vs bfloat16, what ``model.dtype: auto`` probes), torch threads (one per physical core vs
oversubscribed, as in a container whose CPU quota is below the CPUs it sees), the attention kernel
(SDPA vs eager), ``lean_activations`` in float32 and an 8-bit backbone on the CPU. Each side: a
training step of 2 batches of 8 (forward + backward); sides alternated, 3 rounds after a warm-up,
medians. Run it once as is and once with the float32-only path forced:

    python -m benchmarks.host_settings
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m benchmarks.host_settings

Results: benchmarks/results/host_settings-<native|forced-avx2>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from benchmarks.common import RESULTS, ROOT, arguments, machine, save_json

SHAPES = {
    "micro-batch (512 x 576 @ 576 x 1536)": (512, 576, 1536),
    "TALLRec batch (2048 x 576 @ 576 x 1536)": (2048, 576, 1536),
}
SLOW = 10.0  # a dtype whose matmul is this many times slower than float32 is not trained (minutes a step)


def build(**options):
    from tallrec_pl.model.module import TALLRecModule

    module = TALLRecModule(**{"dtype": "float32", **options})
    module.configure_model()
    module.train()
    return module


def resident_mb() -> float:
    """This process's resident memory now (not its peak), after a garbage collection."""
    import gc

    gc.collect()
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_worker(options: str) -> None:
    """In a fresh process: the resident memory of one built backbone after one training step (every
    weight touched; the weights of several modules in one process share the safetensors mapping)."""
    from tallrec_pl.data import RecDataModule

    dm = RecDataModule(shots=64, seed=0, batch_size=8, cache_dir=None)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    module = build(**json.loads(options))
    loss, _ = module(batch)
    loss.backward()
    del loss
    print("RESIDENT_MB", resident_mb())


def resident_of(options: dict) -> float:
    cmd = [sys.executable, "-m", "benchmarks.host_settings", "--memory", json.dumps(options)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESIDENT_MB")), None)
    if line is None:
        raise SystemExit(f"memory worker failed: {proc.stderr[-2000:]}")
    return float(line.split()[1])


def main() -> None:
    from tallrec_pl import hardware
    from tallrec_pl.data import RecDataModule

    torch.manual_seed(0)
    cores = hardware.physical_cores()
    torch.set_num_threads(cores)
    result = {"machine": machine(), "matmul_gflops": {}}
    for name, shape in SHAPES.items():
        result["matmul_gflops"][name] = {
            d: hardware.matmul_gflops(getattr(torch, d), shape) for d in ("float32", "bfloat16")
        }
    micro = result["matmul_gflops"][next(iter(SHAPES))]
    bf16_slowdown = micro["float32"] / micro["bfloat16"]

    dm = RecDataModule(shots=64, seed=0, batch_size=8, cache_dir=None)
    dm.setup("fit")
    batches = [b for _, b in zip(range(2), dm.train_dataloader(), strict=False)]
    result["tokens_per_step"] = int(sum(b["attention_mask"].sum() for b in batches))

    modules = {}
    variants = {
        "float32 (baseline)": {},
        "eager attention": {"attn_implementation": "eager", "lean_activations": False},
        "sdpa, lean off": {"lean_activations": False},
        "8-bit backbone": {"load_in_8bit": True},
    }
    if bf16_slowdown < SLOW:
        variants["bfloat16"] = {"dtype": "bfloat16"}
    for name, options in variants.items():
        try:
            modules[name] = build(**options)
        except Exception as err:  # e.g. bitsandbytes without a CPU backend: recorded, not fatal
            result.setdefault("failed", {})[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"

    def step(name: str, threads: int = cores) -> float:
        torch.set_num_threads(threads)
        start = time.perf_counter()
        for b in batches:
            loss, _ = modules[name](b)
            loss.backward()
        seconds = time.perf_counter() - start
        torch.set_num_threads(cores)
        return seconds

    sides = {name: (name, cores) for name in modules}
    sides[f"threads {2 * cores} (2 per core)"] = ("float32 (baseline)", 2 * cores)
    sides[f"threads {4 * cores} (4 per core)"] = ("float32 (baseline)", 4 * cores)
    times: dict[str, list[float]] = {side: [] for side in sides}
    for name, threads in sides.values():  # warm-up
        step(name, threads)
    for _ in range(3):
        for side, (name, threads) in sides.items():
            times[side].append(step(name, threads))
    base = statistics.median(times["float32 (baseline)"])
    result["step_seconds"] = {side: statistics.median(v) for side, v in times.items()}
    result["step_vs_baseline"] = {side: statistics.median(v) / base for side, v in times.items()}
    result["rounds"] = times
    result["resident_mb_after_a_step"] = {
        name: resident_of(variants[name]) for name in ("float32 (baseline)", "8-bit backbone") if name in modules
    }
    if bf16_slowdown >= SLOW:
        result["bfloat16_not_trained"] = (
            f"bfloat16 matmul {bf16_slowdown:.0f}x slower than float32 here: a step would take minutes"
        )

    def kept(name: str) -> float:
        seen: dict[int, int] = {}

        def pack(t):
            seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            modules[name](batches[0])
        return sum(seen.values()) / 2**20

    result["kept_for_backward_mb"] = {name: kept(name) for name in ("float32 (baseline)", "sdpa, lean off")}
    tag = "forced-avx2" if result["machine"]["forced"] else "native"
    save_json(RESULTS / f"host_settings-{tag}.json", result)
    print({k: v for k, v in result.items() if k != "rounds"})


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--memory", metavar="OPTIONS", help=argparse.SUPPRESS)  # the worker of resident_of
    opts = parser.parse_args()
    if opts.memory:
        memory_worker(opts.memory)
    else:
        main()
