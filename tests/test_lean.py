"""tallrec_pl/model/lean.py: lean activations give autograd's loss and gradients and keep less."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize_lora_b

from tallrec_pl.model.lora import LoraOptions
from tallrec_pl.model.module import TALLRecModule


def _saved_bytes(module, batch) -> tuple[torch.Tensor, int]:
    seen: dict[int, int] = {}

    def pack(t):
        seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = module(batch)
    return loss, sum(seen.values())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lean_activations_same_loss_and_grads_less_kept(tiny_backbone, setup, dtype):
    batch = setup[1]
    runs = {}
    for lean in (False, True):
        torch.manual_seed(0)
        module = TALLRecModule(
            backbone=tiny_backbone, dtype=dtype, lean_activations=lean, lora=LoraOptions(dropout=0.0)
        )
        module.configure_model()
        torch.manual_seed(1)
        randomize_lora_b(module)
        module.train()
        loss, kept = _saved_bytes(module, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.model.named_parameters() if p.requires_grad}
        with torch.no_grad():
            _, p_yes = module(batch)
        runs[lean] = (loss.detach(), grads, kept, p_yes, module.model.get_base_model().config._attn_implementation)
    (l0, g0, k0, p0, a0), (l1, g1, k1, p1, a1) = runs[False], runs[True]
    assert (a0, a1) == ("sdpa", "sdpa_gqa")
    tol = 1e-5 if dtype == "float32" else 2e-2
    assert torch.allclose(l0.float(), l1.float(), atol=tol, rtol=0)
    assert torch.allclose(p0, p1, atol=tol, rtol=0)
    for n in g0:
        assert torch.allclose(g0[n].float(), g1[n].float(), atol=tol * max(1.0, float(g0[n].abs().max())), rtol=0), n
    assert k1 < 0.9 * k0, (k1, k0)  # repeated key/value heads, silu(gate) and float32 norm copies no longer kept


def test_lean_swiglu_and_rmsnorm_gradients_are_autograd_ones():
    from tallrec_pl.model.lean import _RMSNorm, _SwiGLU

    torch.manual_seed(0)
    gate, up = (
        torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True),
        torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(_SwiGLU.apply, (gate, up))
    x, w = (
        torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True),
        torch.randn(16, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda a, b: _RMSNorm.apply(a, b, 1e-5), (x, w))


def test_lean_model_pickles_and_copies_to_itself():
    import copy
    import pickle

    from transformers import LlamaConfig, LlamaForCausalLM

    from tallrec_pl.model import lean

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    assert lean.apply(model) == 4  # MLP and three RMSNorms
    x = torch.randint(0, 50, (2, 7))
    expected = model(x).logits
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        mlp = clone.model.layers[0].mlp
        assert mlp.forward.args[0] is mlp  # the patched forward belongs to the copy, not the original
        assert torch.equal(clone(x).logits, expected)


def test_llama_family_module_of_another_shape_is_refused():
    """lean.apply finds modules by class name and checks the attributes its forwards read."""
    from tallrec_pl.errors import TallrecError
    from tallrec_pl.model import lean

    LlamaMLP = type("LlamaMLP", (torch.nn.Module,), {})  # a future MLP without gate_proj / up_proj
    model = torch.nn.Sequential(LlamaMLP())
    with pytest.raises(TallrecError, match="LLaMA-family MLP / RMSNorm attributes"):
        lean.apply(model)
