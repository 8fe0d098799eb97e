"""The procedures speed.py measures, as functions other benchmark scripts share: ours and
TALLRec's scoring and training (each set up once, then timed by the caller), the test samples
they run on, and the machine's matmul peak. No process handling here: that is speed.py's."""

from __future__ import annotations

import resource
import time

from benchmarks.common import RESULTS


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(dtype: str, adapter: str | None, device: str = "cpu"):
    """Ours: the product's module (its defaults), with ``adapter``'s LoRA weights if given."""
    from tallrec_pl.model.module import TALLRecModule

    module = TALLRecModule(dtype=dtype)
    module.configure_model()
    if adapter:
        copy_adapter(adapter, module.model)
    module.eval()
    return module.to(device)


def to_device(batch: dict, device: str) -> dict:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def load_reference(dtype: str, adapter: str | None, attn: str = "sdpa"):
    """TALLRec's side: the backbone from transformers and a stock peft LoRA (r 8, alpha 16,
    dropout 0.05 on q_proj, v_proj), nothing of the product's model code."""
    from peft import get_peft_model

    from tallrec_pl.model.backbone import load_model
    from tallrec_pl.model.lora import LoraOptions

    model = get_peft_model(load_model("embedded", dtype, attn_implementation=attn), LoraOptions().peft_config())
    if adapter:
        copy_adapter(adapter, model)
    return model


def copy_adapter(path: str, model) -> None:
    """LoRA weights from a Lightning checkpoint of the product (keys `model.<peft name>`)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(state["model." + name])


def test_samples(n: int, seed: int = 0):
    from tallrec_pl.data import RecDataModule

    dm = RecDataModule(shots=256, seed=seed, cache_dir=None)
    splits = dm.build_samples()
    return dm, splits["test"][:n], splits["train"]


def rate(samples: int, start: float) -> dict:
    """Samples a second and seconds since ``start`` (a perf_counter reading)."""
    seconds = time.perf_counter() - start
    return {"samples_per_s": samples / seconds, "seconds": seconds}


def score_ours(args):
    """One scoring pass of ours over the first ``args.n`` test prompts, as a function."""
    score = our_scorer(args.dtype, args.adapter, args.n, args.batch, args.device)

    def one_pass():
        start = time.perf_counter()
        p_yes, tokens = score()  # tokenising is part of the timed work
        return {
            **rate(len(p_yes), start),
            "prompt_tokens": tokens,
            "p_yes": p_yes,
            "matmul_flops": matmul_flops(args.dtype, args.device),
        }  # the peak right after the pass, same process

    return one_pass


def our_scorer(dtype: str, adapter: str | None, n: int, batch: int, device: str = "cpu"):
    """Ours set up as the product's test / predict run it (adapter merged): a function that scores
    the first ``n`` test prompts and returns (p(Yes) in file order, prompt tokens scored)."""
    from tallrec_pl.hub import load_tokenizer

    module = load(dtype, adapter, device)
    module.merge_adapter()
    tok = load_tokenizer("embedded")
    _, samples, _ = test_samples(n)
    return lambda: score_batches(module, tok, samples, batch, device)


def scoring_batches(tok, samples, batch: int):
    """Our scoring batches of ``samples``, collated, in the order the scorer runs them: tokenised,
    indexed in file order, length-sorted (tokenising happens at the first batch, inside any timing)."""
    from tallrec_pl.data.batching import Collator, LengthSortedSampler
    from tallrec_pl.data.encode import encode_samples

    records = encode_samples(samples, tok, 512)
    for i, r in enumerate(records):
        r["index"] = i
    order = list(LengthSortedSampler([len(r["input_ids"]) for r in records]))
    collate = Collator(tok.pad_token_id)
    for b in range(0, len(order), batch):
        yield collate([records[i] for i in order[b : b + batch]])


def score_batches(module, tok, samples, batch: int, device: str = "cpu") -> tuple[list[float], int]:
    """Our scoring of ``samples``: tokenise, length-sorted batches, one forward each.
    Returns p(Yes) in file order and the prompt tokens scored."""
    import torch

    p_yes, tokens = [0.0] * len(samples), 0  # encode_samples keeps every rec sample or raises
    with torch.inference_mode():
        for rows in scoring_batches(tok, samples, batch):
            _, p = module(to_device(rows, device))
            tokens += int(rows["attention_mask"].sum())
            for i, v in zip(rows["index"].tolist(), p.tolist(), strict=False):
                p_yes[i] = v
    return p_yes, tokens


def score_tallrec(args):
    """One pass of TALLRec's evaluate.py procedure over the same prompts, as a function."""
    import torch

    from tallrec_pl.data.encode import answer_token_ids
    from tallrec_pl.hub import load_tokenizer
    from tallrec_pl.model.backbone import load_model

    # evaluate.py: the plain backbone, or PeftModel.from_pretrained(backbone, adapter) unmerged;
    # transformers' default attention (sdpa) unless --ref_attn says otherwise
    model = (
        load_reference(args.dtype, args.adapter, args.ref_attn).eval()
        if args.adapter
        else load_model("embedded", args.dtype, attn_implementation=args.ref_attn).eval()
    ).to(args.device)
    tok = load_tokenizer("embedded")
    tok.padding_side = "left"
    yes, no = answer_token_ids(tok)
    _, samples, _ = test_samples(args.n)
    prompts = [s.prompt() for s in samples]
    model.config.use_cache = True

    def one_pass():
        start = time.perf_counter()
        p_yes, tallrec, steps = [], [], []
        with torch.no_grad():
            for b in range(0, len(prompts), 32):
                enc = tok(prompts[b : b + 32], return_tensors="pt", padding=True).to(args.device)
                out = model.generate(
                    **enc,
                    max_new_tokens=128,
                    do_sample=False,
                    num_beams=1,
                    return_dict_in_generate=True,
                    output_scores=True,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
                scores = out.scores[0].softmax(dim=-1)
                # evaluate.py's own formula: a softmax over the two *probabilities*, not logits
                # (sigmoid of p_yes - p_no, squashed toward 0.5); kept, as it is the procedure
                tallrec += scores[:, [yes, no]].float().softmax(dim=-1)[:, 0].tolist()
                pair = scores[:, [yes, no]].float()
                p_yes += (pair[:, 0] / pair.sum(dim=1)).tolist()  # = softmax over the two logits: ours
                steps.append(len(out.scores))
        return {
            **rate(len(prompts), start),
            "generated_steps_per_batch": steps,
            "p_yes": p_yes,
            "tallrec_formula": tallrec,
        }

    return one_pass


def train_ours(args) -> dict:
    import lightning as L
    import torch

    from tallrec_pl.data import RecDataModule
    from tallrec_pl.model.module import TALLRecModule

    torch.manual_seed(0)
    dm = RecDataModule(shots=args.train_n, seed=0, batch_size=args.micro, cache_dir=None)
    module = TALLRecModule(dtype=args.dtype, warmup_steps=0)
    times = []

    tokens = []

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            times.append(time.perf_counter())
            tokens.append(int(batch["attention_mask"].sum()))

        def on_train_end(self, *a):
            times.append(time.perf_counter())

    trainer = L.Trainer(
        max_epochs=1,
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[Clock()],
    )
    trainer.fit(module, datamodule=dm)
    steps = len(times) - 1
    seconds = times[-1] - times[1]  # the first step warms up: timed from the second
    return {
        "samples_per_s": (steps - 1) * args.micro / seconds,
        "seconds": seconds,
        "steps": steps,
        "timed_tokens": sum(tokens[1:]),
        "matmul_flops": matmul_flops(args.dtype, args.device),
    }


def train_tallrec(args) -> dict:
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from tallrec_pl.hub import load_tokenizer

    torch.manual_seed(0)
    model = load_reference(args.dtype, None, args.ref_attn).to(args.device)
    model.train()
    tok = load_tokenizer("embedded")
    _, _, train = test_samples(0)
    train = train[: args.train_n]

    def tokenize(s):  # TALLRec's generate_and_tokenize_prompt with train_on_inputs=True
        enc = tok(s.prompt() + s.output, truncation=True, max_length=512)
        enc["input_ids"].append(tok.eos_token_id)
        enc["attention_mask"].append(1)
        enc["labels"] = list(enc["input_ids"])
        return dict(enc)

    data = [tokenize(s) for s in train]
    times = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            times.append(time.perf_counter())

        def on_train_end(self, *a, **k):
            times.append(time.perf_counter())

    targs = TrainingArguments(
        output_dir=str(RESULTS / "tmp_hf"),
        per_device_train_batch_size=args.micro,
        num_train_epochs=1,
        learning_rate=3e-4,
        logging_steps=1000,
        save_strategy="no",
        report_to=[],
        use_cpu=args.device == "cpu",
        bf16=False,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=data,
        data_collator=DataCollatorForSeq2Seq(tok, pad_to_multiple_of=8, return_tensors="pt", padding=True),
        callbacks=[Clock()],
    )
    trainer.train()
    steps = len(times) - 1
    seconds = times[-1] - times[1]
    return {"samples_per_s": (steps - 1) * args.micro / seconds, "seconds": seconds, "steps": steps}


PER_TOKEN = 2 * 106e6  # forward FLOPs a token: 2 x the backbone's non-embedding parameters


def matmul_flops(dtype: str, device: str = "cpu") -> float:
    """Dense matmul FLOP/s at the model's shapes (tokens x 576 @ 576 x 1536) on ``device``."""
    import torch

    dt = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    a = torch.randn(4096, 576, dtype=dt, device=device)
    b = torch.randn(576, 1536, dtype=dt, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    n, start = 20 if device == "cpu" else 200, time.perf_counter()
    for _ in range(n):
        a @ b
    sync()
    return 2 * 4096 * 576 * 1536 * n / (time.perf_counter() - start)


WORKERS = {
    "score_ours": score_ours,
    "score_tallrec": score_tallrec,
    "train_ours": train_ours,
    "train_tallrec": train_tallrec,
}
