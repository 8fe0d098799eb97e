"""Load the backbone (resolved by ``tallrec_pl.hub``: the embedded GGUF, a folder or a Hub id) in the
chosen dtype, frozen and ready for adapters."""

from __future__ import annotations

import torch

from tallrec_pl.errors import TallrecError
from tallrec_pl.hardware import DTYPES, DtypeChoice, choose_dtype, probe_shape
from tallrec_pl.hub import check_remote_code, remote_code_hint, resolve
from tallrec_pl.status import status


def resolve_dtype(
    backbone: str, dtype: str, device: torch.device | str = "cpu", trust_remote_code: bool = False
) -> DtypeChoice:
    """``model.dtype`` for this backbone on ``device`` (``auto``: the fastest precision the hardware
    runs, probed at the backbone's own matmul shape), printed in one line with its reason."""
    device = torch.device(device)
    shape = probe_shape(576, 1536)
    if device.type == "cpu" and dtype != "float32":
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(resolve(backbone), trust_remote_code=trust_remote_code)
            shape = probe_shape(config.hidden_size, config.intermediate_size)
        except (OSError, ValueError, AttributeError):
            pass  # a config without these fields: the embedded backbone's shape stands in
    choice = choose_dtype(dtype, device, shape)
    if dtype == "auto":
        status(choice.line())
    return choice


def load_model(
    backbone: str,
    dtype: str = "float32",
    load_in_8bit: bool = False,
    attn_implementation: str | None = "sdpa",
    trust_remote_code: bool = False,
    device: torch.device | str = "cpu",
):
    """The causal LM, in ``dtype`` (``auto``: see ``resolve_dtype``) or 8-bit (bitsandbytes),
    frozen and ready for adapters. ``device`` is where it will run (it decides ``auto``)."""
    from transformers import AutoModelForCausalLM

    dtype = resolve_dtype(backbone, dtype, device, trust_remote_code).dtype
    path = resolve(backbone)
    check_remote_code(path, backbone, trust_remote_code)
    kwargs = {"dtype": DTYPES[dtype], "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if load_in_8bit:
        from transformers import BitsAndBytesConfig

        if torch.device(device).type == "cpu":
            status(
                "warning: model.load_in_8bit on a CPU saved no memory and no time where measured "
                "(bitsandbytes' CPU path; docs/BENCHMARKS.md, host-dependent settings): it is meant for CUDA GPUs"
            )
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise remote_code_hint(err, backbone) or TallrecError(
            f"cannot load backbone {backbone} ({type(err).__name__}: {str(err).splitlines()[0][:160]})",
            "set model.backbone to a model folder with weights, a reachable Hub id or 'embedded'",
        ) from None
    if load_in_8bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model.config.use_cache = False
    return model
