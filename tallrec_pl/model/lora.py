"""LoRA options, adapter export and the checked stage-1 handoff (reading, checking and copying
adapter weights)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch

from tallrec_pl.checkpoints import load_lightning_state
from tallrec_pl.errors import TallrecError, require_path

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PROVENANCE = "tallrec_pl.json"  # which backbone an exported adapter was trained on


@dataclass
class LoraOptions:
    """LoRA adapter shape (TALLRec: r=8, alpha=16, dropout 0.05 on q_proj and v_proj).

    Args:
        r: Rank of the update matrices.
        alpha: Scaling numerator (the update is scaled by alpha / r).
        dropout: Dropout on the adapter's input.
        target_modules: Names of the linear layers that get adapters.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self) -> None:
        if self.r < 1:
            raise TallrecError(f"model.lora.r={self.r} must be at least 1", "use e.g. model.lora.r: 8")
        if not self.alpha > 0:
            raise TallrecError(
                f"model.lora.alpha={self.alpha} must be positive (the update is scaled by alpha / r)",
                "use e.g. model.lora.alpha: 16",
            )
        if not 0 <= self.dropout < 1:
            raise TallrecError(f"model.lora.dropout={self.dropout} must be in [0, 1)", "use e.g. 0.05")
        if not self.target_modules:
            raise TallrecError("model.lora.target_modules is empty", "name at least one layer, e.g. [q_proj, v_proj]")

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(
            task_type="CAUSAL_LM",
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
        )


def check_targets(model: torch.nn.Module, targets: list[str], backbone: str) -> None:
    """Every name in ``model.lora.target_modules`` must name a module of ``model`` as peft matches
    plain names (the whole name, or its last dotted parts), else a one-line error that lists the
    backbone's linear layer names."""
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise TallrecError(
            f"model.lora.target_modules {missing} not found in {backbone}",
            f"its linear layers are named {', '.join(linear)}",
        )


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that training changes, by their names in ``model``."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def read_adapter(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    """LoRA weights and their description (r, targets, backbone) from a PEFT folder or a .ckpt.

    Weight names are returned as PEFT writes them (``base_model.model....lora_A.weight``).
    """
    require_path(path, "model.init_adapter", "pass a PEFT adapter folder or a stage-1 .ckpt")
    if os.path.isdir(path):
        from safetensors.torch import load_file

        cfg_file = require_path(
            os.path.join(path, ADAPTER_CONFIG), "adapter config", "a PEFT adapter folder holds adapter_config.json"
        )
        weights = require_path(
            os.path.join(path, ADAPTER_WEIGHTS), "adapter weights", f"a PEFT adapter folder holds {ADAPTER_WEIGHTS}"
        )
        with open(cfg_file) as fh:
            cfg = json.load(fh)
        info = {"r": cfg.get("r"), "target_modules": sorted(cfg.get("target_modules") or []), "backbone": None}
        if os.path.exists(os.path.join(path, PROVENANCE)):
            with open(os.path.join(path, PROVENANCE)) as fh:
                info["backbone"] = json.load(fh).get("backbone")
        return load_file(weights), info
    ckpt = load_lightning_state(path)
    hp = ckpt.get("hyper_parameters", {})
    lora = hp.get("lora") or {}
    lora = lora if isinstance(lora, dict) else vars(lora)
    info = {
        "r": lora.get("r"),
        "target_modules": sorted(lora.get("target_modules") or []),
        "backbone": hp.get("backbone"),
    }
    # Lightning keys are "model.<peft name>"; PEFT files drop the adapter name "default". Other keys
    # (item_tokens.*, the projector of collaborative item tokens) are read by collab.read_item_tokens.
    state = {
        k.removeprefix("model.").replace(".default.", "."): v
        for k, v in ckpt.get("state_dict", {}).items()
        if k.startswith("model.")
    }
    return state, info


def check_adapter(path: str, info: dict, backbone: str, lora: LoraOptions) -> None:
    """Refuse an adapter made for another backbone, rank or set of target modules."""
    if info["backbone"] is not None and info["backbone"] != backbone:
        raise TallrecError(
            f"adapter {path} was trained on backbone {info['backbone']!r}, not {backbone!r}",
            "use the same model.backbone as stage 1",
        )
    if info["r"] is not None and info["r"] != lora.r:
        raise TallrecError(
            f"adapter {path} has LoRA rank {info['r']}, but model.lora.r is {lora.r}", f"set model.lora.r: {info['r']}"
        )
    if info["target_modules"] and info["target_modules"] != sorted(lora.target_modules):
        raise TallrecError(
            f"adapter {path} targets {info['target_modules']}, but model.lora.target_modules is "
            f"{sorted(lora.target_modules)}",
            f"set model.lora.target_modules: {info['target_modules']}",
        )


def match_state(
    path: str, state: dict[str, torch.Tensor], params: dict[str, torch.nn.Parameter]
) -> dict[str, torch.Tensor]:
    """Map PEFT-named ``state`` onto ``params`` (names with ``.default.``); refuse any mismatch."""
    wanted = {n.replace(".default.", "."): n for n in params}
    if set(state) != set(wanted):
        missing = sorted(set(wanted) - set(state))
        extra = sorted(set(state) - set(wanted))
        example = (missing or extra)[0]
        raise TallrecError(
            f"adapter {path} does not fit this model: {len(missing)} LoRA weights missing, {len(extra)} unexpected "
            f"(e.g. {example})",
            "it was made for another backbone or other target modules; use a matching adapter",
        )
    for name, tensor in state.items():
        have = params[wanted[name]].shape
        if tuple(tensor.shape) != tuple(have):
            raise TallrecError(
                f"adapter {path}: {name} has shape {tuple(tensor.shape)}, this model expects {tuple(have)}",
                "it was made for another backbone or LoRA rank; use a matching adapter",
            )
    return {wanted[k]: v for k, v in state.items()}


def export_adapter(peft_model, folder: str, backbone: str, item_tokens=None) -> None:
    """Write ``folder`` in PEFT format (loads with ``PeftModel.from_pretrained``), atomically;
    with ``item_tokens`` (``collab.ItemTokenSet``) each file's projector and vectors go beside the adapter."""
    tmp = f"{folder}.tmp{os.getpid()}"
    peft_model.save_pretrained(tmp, safe_serialization=True)
    with open(os.path.join(tmp, PROVENANCE), "w") as fh:
        json.dump({"backbone": backbone}, fh)
    if item_tokens is not None:
        item_tokens.save_beside(tmp)
    if os.path.exists(folder):
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)


def copy_lora(path: str, state: dict[str, torch.Tensor], peft_model: torch.nn.Module) -> None:
    """Copy PEFT-named LoRA weights from ``path`` into ``peft_model`` (any mismatch is refused)."""
    params = {n: p for n, p in peft_model.named_parameters() if "lora_" in n}
    with torch.no_grad():
        for name, value in match_state(path, state, params).items():
            params[name].copy_(value)


def merge_weights(peft_model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fold the LoRA update into the adapted weights (evaluation runs one matmul per projection
    instead of three). Returns (weight, its original on CPU) pairs for ``restore_weights``, which
    puts them back bit for bit: subtracting the update again would not undo bfloat16 rounding."""
    from peft.tuners.lora import LoraLayer

    weights = [m.get_base_layer().weight for m in peft_model.modules() if isinstance(m, LoraLayer)]
    saved = [(w, w.detach().to("cpu", copy=True)) for w in weights]
    peft_model.merge_adapter()
    return saved


def restore_weights(peft_model, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Undo ``merge_weights``: PEFT's unmerge (its bookkeeping), then the exact original weights."""
    peft_model.unmerge_adapter()
    with torch.no_grad():
        for weight, original in saved:
            weight.copy_(original)
