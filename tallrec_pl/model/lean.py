"""Keep less for backward in LLaMA-family training, with the same outputs.

Three parts of what autograd keeps can be recomputed or shared instead (sizes measured in
docs/BENCHMARKS.md):

- SDPA with a padding mask: transformers repeats the key/value heads to the query heads and SDPA
  keeps the repeated copies. :func:`sdpa_gqa_attention` hands SDPA the key/value heads with
  ``enable_gqa=True`` instead.
- SwiGLU ``silu(gate) * up``: autograd keeps gate, silu(gate) and up. :class:`_SwiGLU` keeps
  gate and up and recomputes silu(gate) in backward (gradients bit-identical).
- RMSNorm in a bfloat16 model keeps a float32 copy of its input. :class:`_RMSNorm` keeps the
  input as it came and one scale per token, and recomputes the rest.

The outputs equal transformers' modules' (tests/test_lean.py compares loss and gradients).
:func:`apply` patches the LLaMA, Mistral and Qwen2 classes only, found by class name, after
``fence.require`` has checked the attributes the new forwards read; the attention goes through
transformers' public AttentionInterface. ``model.lean_activations: false`` turns it off.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from tallrec_pl import fence

SDPA_GQA = "sdpa_gqa"
_MLPS = {"LlamaMLP", "MistralMLP", "Qwen2MLP"}
_NORMS = {"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm"}


def sdpa_gqa_attention(
    module,
    query,
    key,
    value,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
):
    """transformers' SDPA attention, but with a mask too on the key/value heads (no repeat)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (
        getattr(module, "num_key_value_groups", 1) == 1
        or query.shape[2] == 1
        or attention_mask is None
        or kwargs.get("position_bias") is not None
        or kwargs.get("softcap") is not None
    )
    if plain:  # without a mask transformers already uses enable_gqa; the rest is theirs as is
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous(), None


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        return torch.ops.aten.silu_backward(grad * up, gate), grad * F.silu(gate)


def _mlp_forward(self, x):
    return self.down_proj(_SwiGLU.apply(self.gate_proj(x), self.up_proj(x)))


def _wide(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)  # float32 as transformers' RMSNorm; float64 stays


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        xf = x.to(_wide(x.dtype))
        scale = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, scale)
        return weight * (xf * scale).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight, scale = ctx.saved_tensors
        normed = x.to(_wide(x.dtype)) * scale
        grad_normed = (grad * weight).to(normed.dtype)
        grad_x = scale * (grad_normed - normed * (grad_normed * normed).mean(-1, keepdim=True))
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = (grad * normed.to(x.dtype)).reshape(-1, x.shape[-1]).sum(0).to(weight.dtype)
        return grad_x.to(x.dtype), grad_w, None


def _norm_forward(self, hidden_states):
    return _RMSNorm.apply(hidden_states, self.weight, self.variance_epsilon)


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    fence.require(
        "transformers",
        hasattr(AttentionInterface, "register") and hasattr(AttentionMaskInterface, "register"),
        "AttentionInterface.register",
        "set model.lean_activations: false",
    )
    AttentionInterface.register(SDPA_GQA, sdpa_gqa_attention)
    AttentionMaskInterface.register(SDPA_GQA, sdpa_mask)


def apply(model: torch.nn.Module) -> int:
    """Patch ``model``'s known MLP and RMSNorm modules and switch SDPA to :data:`SDPA_GQA`;
    returns how many modules were patched."""
    mlps = [m for m in model.modules() if type(m).__name__ in _MLPS]
    norms = [m for m in model.modules() if type(m).__name__ in _NORMS]
    fence.require(
        "transformers",
        all(hasattr(m, a) for m in mlps for a in ("gate_proj", "up_proj", "down_proj", "act_fn"))
        and all(hasattr(m, a) for m in norms for a in ("weight", "variance_epsilon")),
        "the LLaMA-family MLP / RMSNorm attributes",
        "set model.lean_activations: false",
    )
    patched = 0
    for module in mlps:
        if type(module.act_fn).__name__ in ("SiLU", "SiLUActivation"):
            module.forward = functools.partial(_mlp_forward, module)  # a partial pickles; a bound method would not
            patched += 1
    for module in norms:
        module.forward = functools.partial(_norm_forward, module)
        patched += 1
    config = getattr(model, "config", None)
    if patched and config is not None and getattr(config, "_attn_implementation", None) == "sdpa":
        register()
        config._attn_implementation = SDPA_GQA
    return patched
