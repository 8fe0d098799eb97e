"""Speed and memory: our scorer and fit step against TALLRec's evaluate.py and finetune_rec.py
procedures, on the same backbone, data and precision, each side in its own process (so peak
RSS is its own), measured in one run of this script. Scoring passes alternate between the two
processes (a warm-up pass each, then ``--passes`` rounds), so drift in the machine's speed hits
both sides alike; the speed-up is the median of the per-round ratios.

    python benchmarks/speed.py --adapter checkpoints/rec/best-*.ckpt   # writes results/speed.json

Scoring: the first N TALLRec movie test prompts. TALLRec's procedure: left padding, batches
of 32 in file order, ``generate(max_new_tokens=128, output_scores=True)``, p(Yes) from the
first step's scores. Ours: one forward pass, length-sorted batches, two vocabulary rows.
Training: the same samples and micro-batch; TALLRec: HF ``Trainer`` + peft, labels on the
whole sequence (full logits), ``DataCollatorForSeq2Seq``; ours: the Lightning fit step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from common import RESULTS, ROOT, save_json


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(dtype: str, adapter: str | None):
    """Ours: the product's module (its defaults), with ``adapter``'s LoRA weights if given."""
    from tallrec_pl.model.module import TALLRecModule

    module = TALLRecModule(dtype=dtype)
    module.configure_model()
    if adapter:
        copy_adapter(adapter, module.model)
    module.eval()
    return module


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
    from tallrec_pl.data.datamodule import RecDataModule

    dm = RecDataModule(shots=256, seed=seed, cache_dir=None)
    splits = dm.build_samples()
    return dm, splits["test"][:n], splits["train"]


def score_ours(args):
    """One scoring pass of ours over the first ``args.n`` test prompts, as a function."""
    score = our_scorer(args.dtype, args.adapter, args.n, args.batch)

    def one_pass():
        start = time.perf_counter()
        p_yes, tokens = score()  # tokenising is part of the timed work
        seconds = time.perf_counter() - start
        return {"samples_per_s": len(p_yes) / seconds, "seconds": seconds, "prompt_tokens": tokens, "p_yes": p_yes,
                "matmul_flops": matmul_flops(args.dtype)}  # the machine's peak right after the pass, same process

    return one_pass


def our_scorer(dtype: str, adapter: str | None, n: int, batch: int):
    """Ours set up as the product's test / predict run it (adapter merged): a function that scores
    the first ``n`` test prompts and returns (p(Yes) in file order, prompt tokens scored)."""
    from tallrec_pl.model.backbone import load_tokenizer

    module = load(dtype, adapter)
    module.merge_adapter()
    tok = load_tokenizer("embedded")
    _, samples, _ = test_samples(n)
    return lambda: score_batches(module, tok, samples, batch)


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
        yield collate([records[i] for i in order[b:b + batch]])


def score_batches(module, tok, samples, batch: int) -> tuple[list[float], int]:
    """Our scoring of ``samples``: tokenise, length-sorted batches, one forward each.
    Returns p(Yes) in file order and the prompt tokens scored."""
    import torch

    p_yes, tokens = [0.0] * len(samples), 0  # encode_samples keeps every rec sample or raises
    with torch.inference_mode():
        for rows in scoring_batches(tok, samples, batch):
            _, p = module(rows)
            tokens += int(rows["attention_mask"].sum())
            for i, v in zip(rows["index"].tolist(), p.tolist()):
                p_yes[i] = v
    return p_yes, tokens


def score_tallrec(args):
    """One pass of TALLRec's evaluate.py procedure over the same prompts, as a function."""
    import torch

    from tallrec_pl.model.backbone import load_tokenizer

    from tallrec_pl.data.encode import answer_token_ids
    from tallrec_pl.model.backbone import load_model

    # evaluate.py: the plain backbone, or PeftModel.from_pretrained(backbone, adapter) unmerged;
    # transformers' default attention (sdpa) unless --ref_attn says otherwise
    model = load_reference(args.dtype, args.adapter, args.ref_attn).eval() if args.adapter else load_model("embedded", args.dtype, attn_implementation=args.ref_attn).eval()
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
                enc = tok(prompts[b:b + 32], return_tensors="pt", padding=True)
                out = model.generate(**enc, max_new_tokens=128, do_sample=False, num_beams=1, return_dict_in_generate=True, output_scores=True,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
                scores = out.scores[0].softmax(dim=-1)
                # evaluate.py's own formula: a softmax over the two *probabilities*, not logits
                # (sigmoid of p_yes - p_no, squashed toward 0.5); kept, as it is the procedure
                tallrec += scores[:, [yes, no]].float().softmax(dim=-1)[:, 0].tolist()
                pair = scores[:, [yes, no]].float()
                p_yes += (pair[:, 0] / pair.sum(dim=1)).tolist()  # = softmax over the two logits: ours
                steps.append(len(out.scores))
        seconds = time.perf_counter() - start
        return {"samples_per_s": len(prompts) / seconds, "seconds": seconds, "generated_steps_per_batch": steps, "p_yes": p_yes,
                "tallrec_formula": tallrec}

    return one_pass


def train_ours(args) -> dict:
    import lightning as L
    import torch

    from tallrec_pl.data.datamodule import RecDataModule
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

    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[Clock()])
    trainer.fit(module, datamodule=dm)
    steps = len(times) - 1
    seconds = times[-1] - times[1]  # the first step warms up: timed from the second
    return {"samples_per_s": (steps - 1) * args.micro / seconds, "seconds": seconds, "steps": steps, "timed_tokens": sum(tokens[1:]),
            "matmul_flops": matmul_flops(args.dtype)}


def train_tallrec(args) -> dict:
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from tallrec_pl.model.backbone import load_tokenizer

    torch.manual_seed(0)
    model = load_reference(args.dtype, None, args.ref_attn)
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

    targs = TrainingArguments(output_dir=str(RESULTS / "tmp_hf"), per_device_train_batch_size=args.micro, num_train_epochs=1, learning_rate=3e-4,
                              logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True, bf16=False, dataloader_num_workers=0,
                              remove_unused_columns=False)
    trainer = Trainer(model=model, args=targs, train_dataset=data,
                      data_collator=DataCollatorForSeq2Seq(tok, pad_to_multiple_of=8, return_tensors="pt", padding=True), callbacks=[Clock()])
    trainer.train()
    steps = len(times) - 1
    seconds = times[-1] - times[1]
    return {"samples_per_s": (steps - 1) * args.micro / seconds, "seconds": seconds, "steps": steps}


PER_TOKEN = 2 * 106e6  # forward FLOPs a token: 2 x the backbone's non-embedding parameters


def matmul_flops(dtype: str) -> float:
    """Dense matmul FLOP/s at the model's shapes (tokens x 576 @ 576 x 1536)."""
    import torch

    dt = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    a, b = torch.randn(4096, 576, dtype=dt), torch.randn(576, 1536, dtype=dt)
    for _ in range(3):
        a @ b
    n, start = 20, time.perf_counter()
    for _ in range(n):
        a @ b
    return 2 * 4096 * 576 * 1536 * n / (time.perf_counter() - start)


WORKERS = {"score_ours": score_ours, "score_tallrec": score_tallrec, "train_ours": train_ours, "train_tallrec": train_tallrec}


def child(args) -> None:
    if args.worker.startswith("score"):  # serve passes on request, so that the parent can alternate the two sides
        one_pass = WORKERS[args.worker](args)
        print("READY", flush=True)
        for line in sys.stdin:
            if line.strip() != "run":
                break
            print("RESULT " + json.dumps(one_pass()), flush=True)
        print("RESULT " + json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)
        return
    result = WORKERS[args.worker](args)
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


def alternate(args, adapter: str | None, ref_attn: str) -> dict:
    """Ours and TALLRec's scoring, each in its own process, passes alternated (one warm-up pass
    each, then ``args.passes`` rounds): both sides see the same machine state, round by round."""
    import statistics

    procs = {}
    for side, worker, attn in (("ours", "score_ours", args.ref_attn), ("tallrec", "score_tallrec", ref_attn)):
        procs[side] = subprocess.Popen(_cmd(worker, args, adapter, attn), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        _expect(procs[side], "READY", worker)

    def request(side: str) -> dict:
        procs[side].stdin.write("run\n")
        procs[side].stdin.flush()
        return json.loads(_expect(procs[side], "RESULT ", side)[7:])

    runs = {"ours": [], "tallrec": []}
    for round_ in range(args.passes + 1):
        for side in ("ours", "tallrec"):
            result = request(side)
            if round_:  # round 0 warms both up
                runs[side].append(result)
    row = {}
    for side, proc in procs.items():
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        rss = json.loads(_expect(proc, "RESULT ", side)[7:])["peak_rss_mb"]
        proc.wait()
        last = runs[side][-1]
        rates = [r["samples_per_s"] for r in runs[side]]
        row[side] = {**{k: v for k, v in last.items() if k not in ("samples_per_s", "seconds")}, "samples_per_s": statistics.median(rates),
                     "samples_per_s_rounds": rates, "seconds": statistics.median(r["seconds"] for r in runs[side]), "peak_rss_mb": rss}
    ratios = [a["samples_per_s"] / b["samples_per_s"] for a, b in zip(runs["ours"], runs["tallrec"])]
    row["speedup_rounds"] = ratios
    # utilisation per round: that pass's effective FLOP/s (every prompt token counted as computed)
    # over the matmul FLOP/s measured right after it
    effective = [r["prompt_tokens"] * PER_TOKEN / r["seconds"] for r in runs["ours"]]
    util = [e / r["matmul_flops"] for e, r in zip(effective, runs["ours"])]
    row["utilisation"] = {"ratio": statistics.median(util), "rounds": util, "effective_flops": statistics.median(effective),
                          "matmul_flops": statistics.median(r["matmul_flops"] for r in runs["ours"])}
    row["speedup"] = statistics.median(ratios)
    return row


def _expect(proc, prefix: str, what: str) -> str:
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise SystemExit(f"{what} ended without {prefix.strip()!r} (exit {proc.wait()})")


def _cmd(worker: str, args, adapter: str | None, ref_attn: str) -> list[str]:
    return [sys.executable, __file__, "--worker", worker, "--dtype", args.dtype, "--n", str(args.n), "--batch", str(args.batch),
            "--train_n", str(args.train_n), "--micro", str(args.micro), "--ref_attn", ref_attn] + (["--adapter", adapter] if adapter else [])


def spawn(worker: str, args, adapter: str | None) -> dict:
    cmd = _cmd(worker, args, adapter, args.ref_attn)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{worker} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[7:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--adapter", help="a rec-tuned Lightning checkpoint (the adapter used for the tuned scoring row)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--n", type=int, default=256, help="test prompts scored")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train_n", type=int, default=64, help="training samples (one epoch)")
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--only", choices=["score", "train"], default=None)
    parser.add_argument("--passes", type=int, default=3, help="timed scoring rounds (ours, then TALLRec's, alternated); medians count")
    parser.add_argument("--ref_attn", default="sdpa", help="attention kernel of the TALLRec side (transformers' default: sdpa)")
    parser.add_argument("--ref_eager_row", action="store_true", help="also score the tuned TALLRec side with eager attention")
    args = parser.parse_args()
    if args.worker:
        return child(args)
    import math

    out = RESULTS / f"speed-{args.dtype}.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results["config"] = {k: getattr(args, k) for k in ("dtype", "n", "batch", "train_n", "micro", "passes", "ref_attn")}
    plan = []
    if args.only in (None, "score"):
        plan += [("score_untuned", None), ("score_tuned", args.adapter)] if args.adapter else [("score_untuned", None)]
        plan += [("score_tuned_ref_eager", args.adapter)] if args.adapter and args.ref_eager_row else []
    if args.only in (None, "train"):
        plan += [("train", None)]
    for name, adapter in plan:
        if name.startswith("score"):  # score_tuned_ref_eager: the reference side with eager attention
            row = alternate(args, adapter, "eager" if name == "score_tuned_ref_eager" else args.ref_attn)
            ours_p, ref_p, formula = row["ours"].pop("p_yes"), row["tallrec"].pop("p_yes"), row["tallrec"].pop("tallrec_formula")
            row["max_p_yes_diff"] = max(abs(a - b) for a, b in zip(ours_p, ref_p))
            row["max_diff_vs_tallrec_formula"] = max(abs(a - b) for a, b in zip(ours_p, formula))
        else:
            ours, ref = spawn("train_ours", args, None), spawn("train_tallrec", args, None)
            row = {"ours": ours, "tallrec": ref}
            row["speedup"] = row["ours"]["samples_per_s"] / row["tallrec"]["samples_per_s"]
        row["rss_ratio"] = row["ours"]["peak_rss_mb"] / row["tallrec"]["peak_rss_mb"]
        results[name] = row
        print(f"{name}: ours {row['ours']['samples_per_s']:.2f}/s vs TALLRec {row['tallrec']['samples_per_s']:.2f}/s "
              f"= {row['speedup']:.2f}x, peak RSS {row['ours']['peak_rss_mb']:.0f} vs {row['tallrec']['peak_rss_mb']:.0f} MB", flush=True)
        save_json(out, results)
    if args.only in (None, "train"):  # the training row was measured in this run
        r = results["train"]["ours"]
        # forward 2N + backward to the activations 2N a token (the frozen weights get no gradient)
        effective = r["timed_tokens"] * 2 * PER_TOKEN / r["seconds"]
        results["train"]["utilisation"] = {"ratio": effective / r["matmul_flops"], "effective_flops": effective, "matmul_flops": r["matmul_flops"]}
    results.pop("utilisation", None)  # older layout: one matmul figure for rows measured at other times
    results.pop("matmul_flops", None)
    save_json(out, results)
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=1, default=str)[:3000])
    del math


if __name__ == "__main__":
    main()
