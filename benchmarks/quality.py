"""Quality table: movie test AUC of the embedded backbone, zero-shot and rec-tuned at 16 / 64 /
256 shots (seeds 0, 1, 2) and on a capped full train split, plus the best movie adapter on
books; and TALLRec's two stages: one Alpaca stage-1 adapter (scored alone, like the paper's
Alpaca-LoRA row), then 256-shot rec-tuning from it (seeds 0, 1, 2). Resumable: a finished run's
result file is read back, not redone.

    python -m benchmarks.quality            # all runs, then docs/BENCHMARKS.md quality section
    python -m benchmarks.quality --only 16  # one shot size
    python -m benchmarks.quality --only 16 --variant inputs  # a sweep setting (VARIANTS) at one shot size
"""

from __future__ import annotations

import functools
import json
import statistics

from benchmarks.common import RESULTS, ROOT, RUNS, SHARED, Progress, arguments, auc, cli, read_predictions, save_json

CONFIG = "configs/rec.yaml"
# 2-core CPU budget (TALLRec trains up to 200 epochs with early stopping): epochs per shot size
# and when to validate. A run's name carries its epoch count, so a changed budget is a new run and
# the earlier results stay readable (the report shows both).
# 16 and 64 shots get 64 and 128 optimizer steps: at 16 steps 16 shots scored below zero-shot and
# at 64 steps 64 shots' validation AUC was still rising; 256 shots' levelled off by epoch 3 of 8.
EPOCHS = {16: 32, 64: 16, 256: 8}
VALIDATE = {
    16: ["--trainer.check_val_every_n_epoch=4"],
    64: ["--trainer.check_val_every_n_epoch=2"],
    256: ["--trainer.check_val_every_n_epoch=1"],
}
TRAIN = ["--model.lr=5e-4", "--trainer.accumulate_grad_batches=1", "--trainer.enable_progress_bar=false"]
STAGE1 = "alpaca-stage1"  # one epoch of configs/alpaca.yaml on the 1k Alpaca sample in ../shared
TWO_STAGE_SHOTS = 256
FULL_STEPS = 250  # the 8000-sample split: 250 optimizer steps of 8 (2000 samples), not 200 epochs
SEEDS = (0, 1, 2)
OUT = RESULTS / "quality"
# settings the sweep adds on top of the runs above (a run's name ends with the variant's name)
ALL_LINEAR = "[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
VARIANTS = {
    "inputs": ["--data.init_args.train_on_inputs=true"],  # TALLRec's loss on the whole prompt
    "all-linear": [f"--model.lora.target_modules={ALL_LINEAR}"],  # LoRA on every linear layer
    # early stopping on val/auc: validated twice as often, stopped after 2 checks without a better AUC
    "early-stop": ["--early_stopping.patience=2", "--early_stopping.monitor=val/auc"],
    # item tokens (issue 26): ALS vectors of CONFIG's whole train split, the item table's genres and year,
    # TransE on ML-100K's knowledge graph (each made once, see item_embeddings), alone or beside ALS
    "collab": [f"--model.item_embeddings={RUNS / 'als64-rec.safetensors'}"],
    "collab-short": [f"--model.item_embeddings={RUNS / 'als64-rec.safetensors'}", "--data.init_args.token_only=true"],
    "genre": [f"--model.item_embeddings={RUNS / 'genre_year-rec.safetensors'}"],
    "kg": [f"--model.item_embeddings={RUNS / 'kg-rec.safetensors'}"],
    "collab+genre": [
        f"--model.item_embeddings=[{RUNS / 'als64-rec.safetensors'},{RUNS / 'genre_year-rec.safetensors'}]"
    ],
    "collab+kg": [f"--model.item_embeddings=[{RUNS / 'als64-rec.safetensors'},{RUNS / 'kg-rec.safetensors'}]"],
}
SOURCES = {"als64-rec": "als", "genre_year-rec": "genre_year", "kg-rec": "kg"}


def item_embeddings(variant: str) -> None:
    """The files a variant names: `item-embeddings --source S` on CONFIG (ALS on the whole train split,
    64 factors; genres and year; TransE on the knowledge graph beside the log)."""
    for name, source in SOURCES.items():
        out = RUNS / f"{name}.safetensors"
        if str(out) in " ".join(VARIANTS[variant]) and not out.exists():
            cli(
                "item-embeddings", "--config", CONFIG, f"--output={out}", f"--source={source}", log=RUNS / f"{name}.log"
            )


EARLY_STOP_VALIDATE = {
    16: ["--trainer.check_val_every_n_epoch=2"],
    64: ["--trainer.check_val_every_n_epoch=1"],
    256: ["--trainer.check_val_every_n_epoch=1"],
}


def predict_auc(name: str, ckpt_dir, extra: list[str], log) -> dict:
    out = RUNS / name / "test_predictions.jsonl"
    args = ["predict", "--config", CONFIG, f"--checkpoint.dirpath={ckpt_dir}", f"--predictions.output={out}", *extra]
    cli(*args, log=log)
    scores, labels = read_predictions(out)
    return {"test_auc": auc(scores, labels), "n_test": len(scores), **kept_predictions(out)}


def kept_predictions(path) -> dict:
    """The run's test scores, kept in its result file (benchmarks/runs/ is not committed), so the
    report can redraw its ROC from a fresh checkout."""
    scores, labels = read_predictions(path)
    return {"p_yes": [round(s, 6) for s in scores], "label": labels}


@functools.cache
def config_batch() -> int:
    import yaml

    return yaml.safe_load((ROOT / CONFIG).read_text())["data"]["init_args"]["batch_size"]


def steps(shots: int, epochs: int) -> int:
    """Optimizer steps of a run: CONFIG's batch size, one step per batch (no accumulation, TRAIN)."""
    return epochs * -(-shots // config_batch())


def run_name(shots: int, seed: int, two_stage: bool = False, variant: str | None = None) -> str:
    return f"movie-{shots}-e{EPOCHS[shots]}{'-alpaca' if two_stage else ''}{'-' + variant if variant else ''}-s{seed}"


def stage1_adapter() -> str:
    """TALLRec's stage 1, trained once: a LoRA adapter instruction-tuned on Alpaca (PEFT folder)."""
    ckpt = RUNS / STAGE1
    if not (ckpt / "fit.done").exists():
        alpaca = SHARED / "alpaca" / "alpaca_data_1k.json"
        if not alpaca.exists():
            raise SystemExit(
                f"{alpaca} is absent: the two-stage runs need the Alpaca sample (or drop them with --only)"
            )
        fit_once(
            ckpt,
            "--config",
            "configs/alpaca.yaml",
            f"--data.init_args.path={alpaca}",
            f"--checkpoint.dirpath={ckpt}",
            f"--trainer.default_root_dir={ckpt}",
            "--trainer.enable_progress_bar=false",
        )
    return str(ckpt / "adapter")


def fit_once(ckpt, *args: str) -> None:
    """``fit ARGS`` into run folder ``ckpt``: a finished fit is not redone, an interrupted one goes
    on from last.ckpt."""
    if (ckpt / "fit.done").exists():
        return
    resume = ["--ckpt_path=last"] if (ckpt / "last.ckpt").exists() else []
    cli("fit", *args, *resume, log=ckpt / "log.txt")
    (ckpt / "fit.done").write_text("")


def run(name: str, shots: int, seed: int, two_stage: bool = False, variant: str | None = None) -> dict:
    path = OUT / f"{name}.json"
    if path.exists():
        result = json.loads(path.read_text())
        written = RUNS / name / "test_predictions.jsonl"
        if "p_yes" not in result and written.exists():  # a result from before scores were kept
            result.update(kept_predictions(written))
            save_json(path, result)
        return result
    ckpt = RUNS / name
    log = ckpt / "log.txt"
    start = [f"--model.init_adapter={stage1_adapter()}"] if two_stage else []
    if shots == 0:
        result = predict_auc(name, ckpt, start, log)
    else:
        common = [
            f"--checkpoint.dirpath={ckpt}",
            f"--trainer.default_root_dir={ckpt}",
            f"--data.init_args.seed={seed}",
            f"--seed_everything={seed}",
            *start,
        ]
        if shots > 0:
            validate = EARLY_STOP_VALIDATE[shots] if variant == "early-stop" else VALIDATE[shots]
            train = [f"--data.init_args.shots={shots}", f"--trainer.max_epochs={EPOCHS[shots]}", *validate]
        else:
            train = [
                "--data.init_args.shots=-1",
                f"--trainer.max_steps={FULL_STEPS}",
                "--trainer.max_epochs=1",
                "--trainer.val_check_interval=50",
            ]
        extra = VARIANTS[variant] if variant else []
        fit_once(ckpt, "--config", CONFIG, *common, *TRAIN, *train, *extra)  # a finished fit is rescored
        result = predict_auc(name, ckpt, [*common, *extra, "--ckpt_path=best"], log)
    result.update({"name": name, "shots": shots, "seed": seed})
    if variant:
        result["variant"] = variant
        result["args"] = VARIANTS[variant]
    if two_stage:
        result["stage1"] = STAGE1
    if shots > 0:
        result["epochs"] = EPOCHS[shots]
    save_json(path, result)
    return result


def cross_domain(best: str) -> dict:
    """The best movie adapter scored on TALLRec's book split (first 1000 samples)."""
    path = OUT / "book-from-movie.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    if done.get("adapter") == best:  # a new best movie run is rescored
        return done
    book = SHARED / "tallrec" / "book" / "valid.json"
    if not book.exists():
        return {"skipped": f"{book} is absent"}
    subset = RUNS / "book1000.json"
    subset.write_text(json.dumps(json.loads(book.read_text())[:1000]))
    ckpt = RUNS / best
    out = RUNS / "book-from-movie" / "predictions.jsonl"
    common = [f"--data.init_args.test_path={subset}", "--data.init_args.domain=book", f"--predictions.output={out}"]
    log = RUNS / "book-from-movie" / "log.txt"
    cli("predict", "--config", CONFIG, f"--checkpoint.dirpath={ckpt}", "--ckpt_path=best", *common, log=log)
    tuned = auc(*read_predictions(out))
    zero = done.get("book_auc_zero_shot")  # the untuned backbone's score does not depend on the adapter
    if zero is None:
        cli("predict", "--config", CONFIG, f"--checkpoint.dirpath={RUNS / 'book-zero'}", *common, log=log)
        zero = auc(*read_predictions(out))
    result = {"adapter": best, "book_auc": tuned, "book_auc_zero_shot": zero, "n": 1000}
    save_json(path, result)
    return result


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--only", type=int, help="run one shot size only (0 zero-shot, -1 full)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="a sweep setting: its seeds at --only shots")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    opts = parser.parse_args()
    if opts.variant:
        if not opts.only or opts.only < 1:
            raise SystemExit("--variant needs --only with a shot size (16, 64 or 256)")
        item_embeddings(opts.variant)
        for seed in opts.seeds:
            r = run(run_name(opts.only, seed, variant=opts.variant), opts.only, seed, variant=opts.variant)
            print(f"{r['name']}: test AUC {r['test_auc']:.4f}", flush=True)
        return
    # seed 0 of every size first, then the other 256-shot seeds: a partial sweep still answers most
    order = (
        [(n, 0) for n in (256, 16, 64)] + [(256, s) for s in SEEDS[1:]] + [(n, s) for s in SEEDS[1:] for n in (16, 64)]
    )
    few_shot = [("zero-shot", 0, 0, False)] + [(run_name(n, s), n, s, False) for n, s in order]
    two_stage = [("alpaca-only", 0, 0, True)] + [
        (run_name(TWO_STAGE_SHOTS, s, True), TWO_STAGE_SHOTS, s, True) for s in SEEDS
    ]
    full = [("movie-full-s0", -1, 0, False)]
    plan = [p for p in few_shot + two_stage + full if opts.only is None or p[1] == opts.only]
    progress = Progress(len(plan))
    results = []
    for name, shots, seed, staged in plan:
        if opts.only is None and name == full[0][0]:  # books first: the capped full run is the longest
            best = max((r for r in results if r["shots"] > 0), key=lambda r: r["test_auc"])[
                "name"
            ]  # the current protocol's runs
            print(f"book from movie: {cross_domain(best)}", flush=True)
        cached = (OUT / f"{name}.json").exists()
        r = run(name, shots, seed, staged)
        results.append(r)
        progress.line(name, f"test AUC {r['test_auc']:.4f}" + (" (read back)" if cached else ""))
    summary = {}
    for n in (16, 64, 256):
        for staged in (False, True):
            vals = [
                r["test_auc"] for r in results if r["shots"] == n and ("stage1" in r) == staged
            ]  # the current EPOCHS only
            if vals:
                summary[f"{n}{' after stage 1' if staged else ''}"] = {
                    "mean": statistics.mean(vals),
                    "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                    "runs": vals,
                }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
