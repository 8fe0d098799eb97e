"""Shared fixtures: a tiny random LLaMA with a real (tiny) BPE tokenizer, and small logs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives in ../shared/data beside the checkout)")
    return path


def _corpus() -> list[str]:
    from tallrec_pl.data.prompts import ALPACA_NO_INPUT, ALPACA_WITH_INPUT, REC_INSTRUCTION

    words = "User Preference Unpreference Whether the user will like target movie book Yes. No. Movie Title Film"
    return [ALPACA_WITH_INPUT, ALPACA_NO_INPUT, REC_INSTRUCTION.format(domain="movie"), words] * 20


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """A 2-layer, 32-wide LlamaForCausalLM folder with a byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


def write_ml100k(folder: Path, n_users: int = 6, n_ratings: int = 16) -> Path:
    """A raw MovieLens-100K style folder: ``u.data`` and ``u.item`` (and ``u.user``)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for u in range(1, n_users + 1):
        for k in range(n_ratings):
            item = (u * 7 + k * 3) % 20 + 1
            lines.append(f"{u}\t{item}\t{1 + (u + k) % 5}\t{1000 + u * 100 + k}")
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    items = [
        f"{i}|Movie {i} (19{50 + i})|01-Jan-19{50 + i}||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0"
        for i in range(1, 21)
    ]
    (folder / "u.item").write_text("\n".join(items) + "\n", encoding="iso-8859-1")
    (folder / "u.user").write_text("\n".join(f"{u}|30|M|writer|00000" for u in range(1, n_users + 1)) + "\n")
    return folder


@pytest.fixture
def ml100k(tmp_path) -> Path:
    return write_ml100k(tmp_path / "ml")


@pytest.fixture
def rec_json(tmp_path) -> Path:
    """A TALLRec-format JSON folder (train / valid / test) built from the synthetic log."""
    from tallrec_pl.data.datamodule import RecDataModule

    dm = RecDataModule(
        path=str(write_ml100k(tmp_path / "ml", n_users=8, n_ratings=20)), history_len=4, split_sizes=[0.6, 0.2, 0.2]
    )
    out = tmp_path / "json"
    out.mkdir()
    for name, samples in dm.build_samples().items():
        (out / f"{name}.json").write_text(json.dumps([s.to_json() for s in samples], indent=4))
    return out


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


class StopAfterEpoch(L.Callback):
    """Stop cleanly after ``epochs`` epochs, as an interrupted run would (used by the resume tests)."""

    def __init__(self, epochs: int = 1) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class SignalAt(L.Callback):
    """Send ``signal`` to this process after global step ``step`` (the interruption tests)."""

    def __init__(self, step: int = 5, signal: str = "SIGTERM") -> None:
        self.step, self.signal = step, signal

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import signal

        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal))
