"""LoRA dropout: a cheaper mask on CPU swapped into PEFT's layers, and the per-step seed that
makes a resumed run drop the same units as an unbroken one.

PEFT has no hook for the dropout module a LoRA layer uses, so ``use_fast_dropout`` replaces the
entries of each layer's ``lora_dropout`` ModuleDict, after ``fence.require`` has checked that
PEFT still keeps them there.
"""

from __future__ import annotations

import torch

from tallrec_pl import fence


class FastDropout(torch.nn.Module):
    """Dropout whose mask costs one random 64-bit word per four elements.

    ``torch.nn.Dropout`` draws one random number per element, a cost that shows on a CPU
    (docs/BENCHMARKS.md, training parts). Here each element keeps its input iff a uniform 16-bit
    lane of a random 64-bit word is at least round(p * 65536), and the kept ones are scaled by
    65536 / (65536 - that), so the output's expectation is the input exactly. The draws come from
    torch's generator, so seeding repeats them (resumed runs rely on it). On other devices it is
    ``F.dropout``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.cut = round(p * 65536)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cut == 0:
            return x
        if x.device.type != "cpu":
            return torch.nn.functional.dropout(x, self.p, True)
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
        keep = (words.view(torch.int16)[:n] >= self.cut - 32768).view(x.shape)
        return torch.where(keep, x * (65536 / (65536 - self.cut)), 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def lora_dropout_slots(model: torch.nn.Module):
    """(ModuleDict, adapter name) of every LoRA layer's dropout in ``model``."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    fence.require(
        "peft",
        "lora_dropout" in LoraLayer.other_param_names
        and all(isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict) for m in layers),
        "where a LoRA layer keeps its dropout (a ModuleDict lora_dropout per layer)",
        "set model.lora.dropout: 0",
    )
    for layer in layers:
        yield from ((layer.lora_dropout, name) for name in list(layer.lora_dropout))


def use_fast_dropout(model: torch.nn.Module) -> int:
    """Swap the LoRA layers' ``nn.Dropout`` for :class:`FastDropout`; returns how many."""
    swapped = 0
    for drops, name in lora_dropout_slots(model):
        if type(drops[name]) is torch.nn.Dropout:
            drops[name] = FastDropout(drops[name].p)
            swapped += 1
    return swapped


def seed_step(base_seed: int, rank: int, step: int) -> None:
    """Reseed torch's global generator from (run seed, rank, optimizer step) before a training
    batch: the dropout masks then do not depend on what drew from the generator before (sanity
    validation, a resume), so a resumed run drops the same units as an unbroken one. The global
    generator is the one both FastDropout and ``F.dropout`` on other devices draw from."""
    torch.manual_seed((base_seed * 1_000_003 + rank * 7919 + step) % 2**63)
