"""What several test modules share: paths found from the repository root (so pytest collects and
runs the same from any working directory), tiny fixtures written to disk, the CLI arguments of a
tiny run, and callbacks that interrupt a run. Fixtures themselves live in conftest.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# serve.yaml configures `serve`, not fit: tests/test_serve.py parses it
CONFIGS = sorted(str(p) for p in (ROOT / "configs").rglob("*.yaml") if p.name != "serve.yaml")
# TALLRec's published splits: ../shared/data beside the checkout, or $TALLREC_SHARED_DATA
SHARED = Path(os.environ.get("TALLREC_SHARED_DATA") or ROOT.parent / "shared" / "data")


def config(name: str) -> str:
    """A shipped config by its name under configs/."""
    return str(ROOT / "configs" / name)


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"reference data {path} is absent (it lives in ../shared/data beside the checkout)"
        if os.environ.get("CI"):  # CI has ../shared: a missing file there is a failure, not a skip
            pytest.fail(message)
        pytest.skip(message)
    return path


def _corpus() -> list[str]:
    from tallrec_pl.data.prompts import ALPACA_NO_INPUT, ALPACA_WITH_INPUT, REC_INSTRUCTION

    words = "User Preference Unpreference Whether the user will like target movie book Yes. No. Movie Title Film"
    return [ALPACA_WITH_INPUT, ALPACA_NO_INPUT, REC_INSTRUCTION.format(domain="movie"), words] * 20


def write_tiny_backbone(folder: Path) -> str:
    """A 2-layer, 32-wide LlamaForCausalLM folder with a byte-level BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
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


def with_new_items(folder, items=(21, 22, 23)):
    """The last user also rates items nobody rated before (so they never occur in train)."""
    with open(folder / "u.data", "a") as fh:
        for k, item in enumerate(items):
            fh.write(f"6\t{item}\t5\t{9000 + k}\n")
    with open(folder / "u.item", "a", encoding="iso-8859-1") as fh:
        for item in items:
            fh.write(f"{item}|New {item} (2001)|01-Jan-2001||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n")
    return folder


def write_alpaca(path: Path, n: int = 24) -> Path:
    """An Alpaca JSON file of ``n`` samples; every other one has an input."""
    records = [
        {
            "instruction": f"Say the number {i}.",
            "input": "" if i % 2 else " ".join(["number", str(i)] * 10),
            "output": f"The number is {i}.",
        }
        for i in range(n)
    ]
    path.write_text(json.dumps(records))
    return path


def run_args(tiny_backbone: str, data_path: Path, out: Path, *extra: str) -> list[str]:
    """CLI arguments of a one-epoch rec-tuning run of the tiny backbone on ``data_path``, into ``out``."""
    return [
        "--config", config("debug.yaml"),
        f"--model.backbone={tiny_backbone}",
        "--model.dtype=float32",
        f"--data.init_args.path={data_path}",
        "--data.init_args.history_len=4",
        "--data.init_args.split_sizes=[0.6,0.2,0.2]",
        "--data.init_args.shots=-1",
        "--data.init_args.val_limit=null",
        "--data.init_args.cache_dir=null",
        f"--checkpoint.dirpath={out}",
        f"--trainer.default_root_dir={out}",
        "--trainer.max_steps=-1",
        "--trainer.max_epochs=1",
        "--trainer.val_check_interval=null",
        "--trainer.limit_test_batches=null",
        "--trainer.limit_predict_batches=null",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
        f"--predictions.output={out / 'predictions.jsonl'}",
        *extra,
    ]  # fmt: skip


def randomize_lora_b(module) -> None:
    """LoRA B starts at zero, so a fresh adapter changes nothing: draw it N(0, 0.5) from the global
    RNG so that the adapter matters in a comparison."""
    with torch.no_grad():
        for n, p in module.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)


def tiny_data(cls, path: Path, backbone: str | None = None, **options):
    """``cls`` (RecDataModule or a subclass) over the tiny log at ``path``: a 4-item history, a 60/20/20 split
    and no cache unless ``options`` say otherwise; ``backbone`` gives its tokenizer. The tests build their
    data modules here, so a change in the data module's options is made once."""
    tiny = {"history_len": 4, "split_sizes": [0.6, 0.2, 0.2], "cache_dir": None}
    if backbone is not None:
        tiny["backbone"] = backbone
    return cls(path=str(path), **{**tiny, **options})


def scoring_model(backbone: str):
    """The tiny model in eval mode with a LoRA adapter that matters (B drawn from the global RNG), float32:
    the tolerances of the scoring tests are float32 ones."""
    from tallrec_pl.model.module import TALLRecModule

    module = TALLRecModule(backbone=backbone, dtype="float32")
    module.configure_model()
    randomize_lora_b(module)
    module.eval()
    return module


def random_adapter(tiny_backbone: str, folder: Path, seed: int) -> str:
    """A PEFT adapter folder for the tiny backbone whose LoRA B is drawn with ``seed`` (so it matters)."""
    from tallrec_pl.model.lora import export_adapter
    from tallrec_pl.model.module import TALLRecModule

    module = TALLRecModule(backbone=tiny_backbone)
    module.configure_model()
    torch.manual_seed(seed)
    randomize_lora_b(module)
    export_adapter(module.model, str(folder), tiny_backbone)
    return str(folder)


def lora_state(ckpt: Path) -> dict[str, torch.Tensor]:
    """The adapter weights a Lightning checkpoint holds."""
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def fit_process(*args: str) -> subprocess.CompletedProcess:
    """``python -m tallrec_pl fit ARGS`` in its own process, as a user runs it."""
    path = [str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH")]  # helpers' callbacks, this checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    # a shell starts background jobs with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the child the default disposition, as a terminal would
    return subprocess.run(
        [sys.executable, "-m", "tallrec_pl", "fit", *args],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


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
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal))


class RecordTrainIndices(L.Callback):
    """Write the train indices each rank saw to ``folder/rank<R>.json`` (the DDP sharding test)."""

    def __init__(self, folder: str) -> None:
        self.folder, self.seen = folder, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += batch["index"].tolist()

    def on_train_end(self, trainer, pl_module) -> None:
        out = Path(self.folder) / f"rank{trainer.global_rank}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"seen": self.seen, "train": len(trainer.datamodule.encoded["train"])}))


def predict_both_ways(backbone: str, data_path: Path, out: Path, *extra: str) -> tuple[list[dict], list[dict]]:
    """The predictions of run ``out``'s best checkpoint, and of its exported adapter folder alone
    (``--model.init_adapter out/adapter``), each a list of rows; ``extra``: options of both."""
    from tallrec_pl.commands import main

    main(["predict", *run_args(backbone, data_path, out), *extra, "--ckpt_path=best"])
    again = out / "from_adapter.jsonl"
    adapter = [f"--model.init_adapter={out / 'adapter'}", f"--predictions.output={again}"]
    main(["predict", *run_args(backbone, data_path, out), *extra, *adapter])
    read = [[json.loads(line) for line in p.read_text().splitlines()] for p in (out / "predictions.jsonl", again)]
    return read[0], read[1]


def item_token_data(cls, ml, backbone: str, embeddings, **kwargs):
    """A ``cls`` data module of the small log ``ml`` (history 4, 60/20/20 split, no cache) with item
    tokens from ``embeddings`` (one file, a list, or None)."""
    return cls(
        path=str(ml),
        backbone=backbone,
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        cache_dir=None,
        item_embeddings=embeddings,
        **kwargs,
    )


def the_error(err: str) -> str:
    """The one error line of a command's stderr (status lines may precede it): exactly one
    ``tallrec_pl: error:`` line and no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("tallrec_pl: error:")]
    assert "Traceback" not in err and len(errors) == 1, err
    assert err.rstrip().splitlines()[-1] == errors[0], err  # nothing after it: no continuation line
    return errors[0]
