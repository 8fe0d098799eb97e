"""What FastDropout and lean activations change in a bfloat16 training step, each A/B in one
process (4 batches of 8 forward + backward, sides alternated, 3 rounds after a warm-up;
medians), and how many bytes autograd keeps for one batch.

    python -m benchmarks.training_parts
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks.common import RESULTS, arguments, save_json


def main() -> None:
    from tallrec_pl.data import RecDataModule
    from tallrec_pl.model.dropout import FastDropout, lora_dropout_slots
    from tallrec_pl.model.module import TALLRecModule

    torch.manual_seed(0)
    dm = RecDataModule(shots=64, seed=0, batch_size=8, cache_dir=None)
    dm.setup("fit")
    batches = [b for _, b in zip(range(4), dm.train_dataloader(), strict=False)]
    modules = {}
    for lean in (True, False):
        module = TALLRecModule(dtype="bfloat16", lean_activations=lean)
        module.configure_model()
        module.train()
        modules[lean] = module

    def step(module) -> float:
        start = time.perf_counter()
        for b in batches:
            loss, _ = module(b)
            loss.backward()
        return time.perf_counter() - start

    def kept(module) -> float:
        seen: dict[int, int] = {}

        def pack(t):
            seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(batches[0])
        return sum(seen.values()) / 2**20

    def set_dropout(module, fast: bool) -> None:
        for drops, name in lora_dropout_slots(module.model):
            drops[name] = FastDropout(0.05) if fast else torch.nn.Dropout(0.05)
        module.model.train()

    def ab(sides: dict) -> dict:
        times = {name: [] for name in sides}
        for setup in sides.values():  # warm-up
            step(setup())
        for _ in range(3):
            for name, setup in sides.items():
                times[name].append(step(setup()))
        med = {name: statistics.median(v) for name, v in times.items()}
        return {"seconds_4_batches": med, "rounds": times}

    def with_dropout(fast: bool):
        def setup():
            set_dropout(modules[True], fast)
            return modules[True]

        return setup

    result = {"tokens_first_batch": int(batches[0]["input_ids"].numel())}
    result["dropout"] = ab({"fast": with_dropout(True), "nn.Dropout": with_dropout(False)})
    set_dropout(modules[True], True)
    result["lean"] = ab({"lean": lambda: modules[True], "plain": lambda: modules[False]})
    result["kept_mb"] = {"lean": kept(modules[True]), "plain": kept(modules[False])}
    drop, lean = result["dropout"]["seconds_4_batches"], result["lean"]["seconds_4_batches"]
    result["dropout"]["speedup"] = drop["nn.Dropout"] / drop["fast"]
    result["lean"]["speedup"] = lean["plain"] / lean["lean"]
    save_json(RESULTS / "training_parts.json", result)
    print({k: v for k, v in result.items()})


if __name__ == "__main__":
    arguments(__doc__).parse_args()  # no options: --help says what it measures
    main()
