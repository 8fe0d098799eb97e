"""Speed and memory: our scorer and fit step against TALLRec's evaluate.py and finetune_rec.py
procedures (benchmarks/procedures.py), on the same backbone, data and precision, each side in its own process (so peak
RSS is its own), measured in one run of this script. Scoring passes alternate between the two
processes (a warm-up pass each, then ``--passes`` rounds), so drift in the machine's speed hits
both sides alike; the speed-up is the median of the per-round ratios.

    python -m benchmarks.speed --adapter checkpoints/rec/best-*.ckpt   # writes results/speed.json

Scoring: the first N TALLRec movie test prompts. TALLRec's procedure: left padding, batches
of 32 in file order, ``generate(max_new_tokens=128, output_scores=True)``, p(Yes) from the
first step's scores. Ours: one forward pass, length-sorted batches, two vocabulary rows.
Training: the same samples and micro-batch; TALLRec: HF ``Trainer`` + peft, labels on the
whole sequence (full logits), ``DataCollatorForSeq2Seq``; ours: the Lightning fit step.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import RESULTS, ROOT, arguments, machine, save_json
from benchmarks.procedures import PER_TOKEN, WORKERS, peak_rss_mb


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
        procs[side] = subprocess.Popen(
            _cmd(worker, args, adapter, attn), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
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
        row[side] = {
            **{k: v for k, v in last.items() if k not in ("samples_per_s", "seconds")},
            "samples_per_s": statistics.median(rates),
            "samples_per_s_rounds": rates,
            "seconds": statistics.median(r["seconds"] for r in runs[side]),
            "peak_rss_mb": rss,
        }
    ratios = [a["samples_per_s"] / b["samples_per_s"] for a, b in zip(runs["ours"], runs["tallrec"], strict=False)]
    row["speedup_rounds"] = ratios
    # utilisation per round: that pass's effective FLOP/s (every prompt token counted as computed)
    # over the matmul FLOP/s measured right after it
    effective = [r["prompt_tokens"] * PER_TOKEN / r["seconds"] for r in runs["ours"]]
    util = [e / r["matmul_flops"] for e, r in zip(effective, runs["ours"], strict=False)]
    row["utilisation"] = {
        "ratio": statistics.median(util),
        "rounds": util,
        "effective_flops": statistics.median(effective),
        "matmul_flops": statistics.median(r["matmul_flops"] for r in runs["ours"]),
    }
    row["speedup"] = statistics.median(ratios)
    return row


def _expect(proc, prefix: str, what: str) -> str:
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise SystemExit(f"{what} ended without {prefix.strip()!r} (exit {proc.wait()})")


def _cmd(worker: str, args, adapter: str | None, ref_attn: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.speed",
        "--worker",
        worker,
        "--dtype",
        args.dtype,
        "--n",
        str(args.n),
        "--batch",
        str(args.batch),
        "--train_n",
        str(args.train_n),
        "--micro",
        str(args.micro),
        "--ref_attn",
        ref_attn,
        "--device",
        args.device,
    ] + (["--adapter", adapter] if adapter else [])


def spawn(worker: str, args, adapter: str | None) -> dict:
    cmd = _cmd(worker, args, adapter, args.ref_attn)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{worker} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[7:])


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--worker")
    parser.add_argument(
        "--adapter", help="a rec-tuned Lightning checkpoint (the adapter used for the tuned scoring row)"
    )
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both sides run")
    parser.add_argument("--n", type=int, default=256, help="test prompts scored")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train_n", type=int, default=64, help="training samples (one epoch)")
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--only", choices=["score", "train"], default=None)
    parser.add_argument(
        "--passes", type=int, default=3, help="timed scoring rounds (ours, then TALLRec's, alternated); medians count"
    )
    parser.add_argument(
        "--ref_attn", default="sdpa", help="attention kernel of the TALLRec side (transformers' default: sdpa)"
    )
    parser.add_argument(
        "--ref_eager_row", action="store_true", help="also score the tuned TALLRec side with eager attention"
    )
    args = parser.parse_args()
    if args.worker:
        return child(args)
    info = machine()
    # one result file per dtype, device and CPU path: the tables of each kind of machine side by side
    tag = "-cuda" if args.device == "cuda" else ("-forced-avx2" if info["forced"] else "")
    out = RESULTS / f"speed-{args.dtype}{tag}.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results["config"] = {
        k: getattr(args, k) for k in ("dtype", "device", "n", "batch", "train_n", "micro", "passes", "ref_attn")
    }
    results["machine"] = info
    plan = []
    if args.only in (None, "score"):
        plan += [("score_untuned", None), ("score_tuned", args.adapter)] if args.adapter else [("score_untuned", None)]
        plan += [("score_tuned_ref_eager", args.adapter)] if args.adapter and args.ref_eager_row else []
    if args.only in (None, "train"):
        plan += [("train", None)]
    for name, adapter in plan:
        if name.startswith("score"):  # score_tuned_ref_eager: the reference side with eager attention
            row = alternate(args, adapter, "eager" if name == "score_tuned_ref_eager" else args.ref_attn)
            ours_p, ref_p, formula = (
                row["ours"].pop("p_yes"),
                row["tallrec"].pop("p_yes"),
                row["tallrec"].pop("tallrec_formula"),
            )
            row["max_p_yes_diff"] = max(abs(a - b) for a, b in zip(ours_p, ref_p, strict=False))
            row["max_diff_vs_tallrec_formula"] = max(abs(a - b) for a, b in zip(ours_p, formula, strict=False))
        else:
            ours, ref = spawn("train_ours", args, None), spawn("train_tallrec", args, None)
            row = {"ours": ours, "tallrec": ref}
            row["speedup"] = row["ours"]["samples_per_s"] / row["tallrec"]["samples_per_s"]
        row["rss_ratio"] = row["ours"]["peak_rss_mb"] / row["tallrec"]["peak_rss_mb"]
        results[name] = row
        print(
            f"{name}: ours {row['ours']['samples_per_s']:.2f}/s vs TALLRec {row['tallrec']['samples_per_s']:.2f}/s "
            f"= {row['speedup']:.2f}x, peak RSS {row['ours']['peak_rss_mb']:.0f} vs "
            f"{row['tallrec']['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        save_json(out, results)
    if args.only in (None, "train"):  # the training row was measured in this run
        r = results["train"]["ours"]
        # forward 2N + backward to the activations 2N a token (the frozen weights get no gradient)
        effective = r["timed_tokens"] * 2 * PER_TOKEN / r["seconds"]
        results["train"]["utilisation"] = {
            "ratio": effective / r["matmul_flops"],
            "effective_flops": effective,
            "matmul_flops": r["matmul_flops"],
        }
    save_json(out, results)
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=1, default=str)[:3000])


if __name__ == "__main__":
    main()
