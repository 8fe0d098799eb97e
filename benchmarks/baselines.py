"""Sequential baselines measured on the LLM rows' data: RecBole 1.2.1's GRU4Rec, Caser and SASRec.

    python -m benchmarks.baselines            # resumable: one result file per run, finished runs skipped
    python -m benchmarks.baselines --only SASRec-like-rec-16-s0
    python -m benchmarks.baselines --groups 500   # the ranking runs on 500 groups (result names end -g500)

Two tables (definitions in benchmarks/DEVIATIONS.md, "Sequential baselines"):
- AUC: trained on the few-shot windows of configs/rec.yaml (16 / 64 / 256 shots, seeds 0-2, the same draw
  as the LLM rows) and on its whole train split, scored on the same 1000 test samples. Objective: binary
  cross-entropy of RecBole's ``predict`` score (history representation . target item embedding) on the
  window's label; the probability is its sigmoid. Also the next-item objective (RecBole's CE) on the whole
  train split.
- Ranking: trained with the next-item objective on the whole train split of configs/rank.yaml, scored on its
  groups (the true liked item among 19 unrated ones), as benchmarks/ranking.py scores most-popular and ALS.

The models, their defaults (properties/model/*.yaml), losses and ``predict`` are RecBole's; the loop that
feeds them our windows is here (why: DEVIATIONS.md).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.common import RESULTS, arguments, auc, machine, save_json

OUT = RESULTS / "baselines"
MODELS = ("GRU4Rec", "Caser", "SASRec")
SHOTS = (16, 64, 256, -1)  # -1: the whole train split
SEEDS = (0, 1, 2)
GROUPS = 100  # configs/rank.yaml: data.limit_groups, as the ranking table's other rows
HISTORY_LEN = 10  # configs/rec.yaml and rank.yaml: data.history_len
# at most 50 epochs (RecBole's default is 300), to keep a run under ~3 CPU minutes; early stopping as RecBole's:
# stopping_step epochs without a better valid score end the run
MAX_EPOCHS = 50
TRAIN = {"train_batch_size": 2048, "learning_rate": 1e-3, "stopping_step": 10}  # RecBole's overall.yaml defaults


@dataclass(frozen=True)
class Run:
    model: str
    objective: str  # "like": BCE on the window's label; "next": RecBole's CE over all items
    data: str  # "rec": configs/rec.yaml windows (AUC table); "rank": configs/rank.yaml (ranking table)
    shots: int
    seed: int
    groups: int = GROUPS  # ranking runs: how many groups they are scored on

    @property
    def name(self) -> str:
        name = f"{self.model}-{self.objective}-{self.data}-{'full' if self.shots < 0 else self.shots}-s{self.seed}"
        return name + (f"-g{self.groups}" if self.data == "rank" and self.groups != GROUPS else "")


def all_runs(groups: int = GROUPS) -> list[Run]:
    if groups != GROUPS:  # only the ranking runs depend on the groups
        return [Run(m, "next", "rank", -1, s, groups) for m in MODELS for s in SEEDS]
    runs = [Run(m, "like", "rec", n, s) for m in MODELS for n in SHOTS for s in SEEDS]
    runs += [Run(m, "next", "rec", -1, s) for m in MODELS for s in SEEDS]
    return runs + [Run(m, "next", "rank", -1, s) for m in MODELS for s in SEEDS]


# --- data: the product's own samples as RecBole-style tensors --------------------------------------


def rec_splits(shots: int, seed: int):
    """configs/rec.yaml's samples: train (few-shot draw or whole), valid, test (the LLM rows' 1000)."""
    from tallrec_pl.data import RecDataModule

    dm = RecDataModule(shots=shots, seed=seed, cache_dir=None)
    samples = dm.build_samples()
    log, _ = dm.log_windows()
    return samples, sorted(log.item_fields)


def rank_splits(groups: int):
    """configs/rank.yaml's whole train and valid splits and the ranking groups, built as benchmarks/ranking.py's
    ``groups_and_log`` builds them (the groups do not depend on the few-shot draw)."""
    from benchmarks.ranking import RANK
    from tallrec_pl.data import RankDataModule

    dm = RankDataModule(limit_groups=groups, cache_dir=None, **RANK)
    samples = dm.build_samples(sampled=False)
    log, _ = dm.log_windows()
    return samples, sorted(log.item_fields)


class Catalogue:
    """What RecBole's models read from a Dataset: the number of item and user ids, [PAD] = 0 included."""

    def __init__(self, items: list[str], users: list[str]) -> None:
        self.item_id = {i: k + 1 for k, i in enumerate(items)}
        self.user_id = {u: k + 1 for k, u in enumerate(users)}
        self.user_num = len(users) + 1

    def num(self, field: str) -> int:
        return len(self.item_id) + 1 if field == "item_id" else self.user_num

    def tensors(self, samples) -> dict:
        """Histories left-aligned and right-padded with 0 (RecBole's layout); an empty history is one [PAD]
        item of length 1 (RecBole never builds one; the model then scores from its [PAD] embedding alone).
        Users the model was not trained on map to the [PAD] user."""
        import torch

        seq = torch.zeros(len(samples), HISTORY_LEN, dtype=torch.long)
        for row, s in enumerate(samples):
            hist = [self.item_id[i] for i in s.meta["history"]][-HISTORY_LEN:]
            seq[row, : len(hist)] = torch.tensor(hist, dtype=torch.long)
        return {
            "item_id_list": seq,
            "item_length": torch.tensor([max(1, min(HISTORY_LEN, len(s.meta["history"]))) for s in samples]),
            "user_id": torch.tensor([self.user_id.get(s.meta["user"], 0) for s in samples]),
            "item_id": torch.tensor([self.item_id[s.meta["item"]] for s in samples]),
            "label": torch.tensor([float(s.output == "Yes.") for s in samples]),
        }


def recbole_config(model: str) -> dict:
    """RecBole's defaults for ``model``: overall.yaml, the dataset template, the model's yaml, as Config merges them
    (RecBole's Config itself imports its evaluator, which needs scikit-learn; these keys are all the models read)."""
    import recbole

    props = Path(recbole.__file__).parent / "properties"
    config: dict = {}
    for path in (props / "overall.yaml", props / "dataset" / "sample.yaml", props / "model" / f"{model}.yaml"):
        config.update(yaml.safe_load(path.read_text()) or {})
    for key, value in config.items():  # RecBole's loader reads 1e-4 as a float, PyYAML's as a string
        if isinstance(value, str):
            try:
                config[key] = float(value)
            except ValueError:
                pass
    config.update(MAX_ITEM_LIST_LENGTH=HISTORY_LEN, device="cpu")
    return config


# --- training and scoring ----------------------------------------------------------------------------


def build_model(name: str, catalogue: Catalogue, seed: int):
    import torch
    from recbole.model import sequential_recommender

    torch.manual_seed(seed)
    return getattr(sequential_recommender, name)(recbole_config(name), catalogue)


def regulariser(model):
    """The extra terms of the model's own ``calculate_loss`` (Caser's L2), for the like objective."""
    if type(model).__name__ != "Caser":
        return 0.0
    weights = [
        model.user_embedding.weight,
        model.item_embedding.weight,
        model.conv_v.weight,
        model.fc1.weight,
        model.fc2.weight,
    ]
    return model.reg_weight * model.reg_loss(weights) + model.reg_loss_conv_h()


def loss(model, batch: dict, objective: str):
    import torch.nn.functional as F
    from recbole.data.interaction import Interaction

    inter = Interaction(batch)
    if objective == "next":
        return model.calculate_loss(inter)  # RecBole's CE over all items
    return F.binary_cross_entropy_with_logits(model.predict(inter), batch["label"]) + regulariser(model)


def scores(model, tensors: dict, softmax: bool = False) -> list[float]:
    """RecBole's ``predict`` (history representation . target item embedding); with ``softmax``, the log of
    p(next item = target | history), a softmax of ``full_sort_predict`` over all items."""
    import torch
    from recbole.data.interaction import Interaction

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(tensors["label"]), 1024):
            inter = Interaction({k: v[i : i + 1024] for k, v in tensors.items()})
            if softmax:
                logp = torch.log_softmax(model.full_sort_predict(inter), dim=-1)
                out.append(logp.gather(1, inter["item_id"][:, None])[:, 0])
            else:
                out.append(model.predict(inter))
    return torch.cat(out).tolist()


def valid_score(model, valid: dict, objective: str) -> float:
    """Higher is better: AUC on the valid split (like), minus the mean next-item CE on it (next)."""
    import torch

    if objective == "like":
        return auc(scores(model, valid), valid["label"].long().tolist())
    model.eval()
    with torch.inference_mode():
        return -float(loss(model, valid, "next"))


def train(run: Run, model, train_t: dict, valid_t: dict) -> dict:
    """Adam at RecBole's learning rate and batch size; the best epoch by the valid score is kept."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=TRAIN["learning_rate"])
    gen = torch.Generator().manual_seed(run.seed)
    n, bs = len(train_t["label"]), TRAIN["train_batch_size"]
    best, best_state, best_epoch, epoch = float("-inf"), None, -1, 0
    for epoch in range(1, MAX_EPOCHS + 1):
        model.train()
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            opt.zero_grad()
            loss(model, {k: v[idx] for k, v in train_t.items()}, run.objective).backward()
            opt.step()
        score = valid_score(model, valid_t, run.objective)
        if score > best:
            best, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= TRAIN["stopping_step"]:
            break
    model.load_state_dict(best_state)
    return {"epochs_run": epoch, "best_epoch": best_epoch, "valid_score": best, "steps": epoch * -(-n // bs)}


def measure(run: Run) -> dict:
    import torch

    torch.set_num_threads(2)
    start = time.process_time()
    wall = time.perf_counter()
    splits, items = rec_splits(run.shots, run.seed) if run.data == "rec" else rank_splits(run.groups)
    catalogue = Catalogue(items, sorted({s.meta["user"] for s in splits["train"]}))
    train_t, valid_t, test_t = (catalogue.tensors(splits[k]) for k in ("train", "valid", "test"))
    model = build_model(run.model, catalogue, run.seed)
    result = {
        "name": run.name,
        **run.__dict__,
        "train_samples": len(splits["train"]),
        "config": TRAIN | {"max_epochs": MAX_EPOCHS},
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_users_trained": float((test_t["user_id"] > 0).float().mean()),
    }  # the rest get Caser's [PAD] user
    result.update(train(run, model, train_t, valid_t))
    test_scores = scores(model, test_t)
    if run.data == "rec":
        labels = test_t["label"].long().tolist()
        if run.objective == "next":  # the model's probability: p(next item = target | history)
            result["test_auc_logit"] = auc(test_scores, labels)
            test_scores = scores(model, test_t, softmax=True)
        result["test_auc"] = auc(test_scores, labels)
        result["test_samples"] = len(test_scores)
    else:
        from benchmarks.ranking import evaluate

        result["ranking"] = evaluate(splits["test"], test_scores)
        result["groups"] = len(test_scores) // 20
    result["cpu_seconds"] = time.process_time() - start
    result["wall_seconds"] = time.perf_counter() - wall
    result["machine"] = machine()
    return result


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--only", nargs="*", help="run names (default: all)")
    parser.add_argument("--pending", action="store_true", help="list the runs without a result file and stop")
    parser.add_argument("--groups", type=int, default=GROUPS, help="ranking groups (other than 100: ranking runs only)")
    opts = parser.parse_args()
    runs = [r for r in all_runs(opts.groups) if not opts.only or r.name in opts.only]
    if opts.pending:
        print("\n".join(r.name for r in runs if not (OUT / f"{r.name}.json").exists()))
        return
    for k, run in enumerate(runs, 1):
        path = OUT / f"{run.name}.json"
        if path.exists():
            continue
        result = measure(run)
        save_json(path, result)
        figure = (
            f"test AUC {result['test_auc']:.4f}"
            if "test_auc" in result
            else f"NDCG@10 {result['ranking']['ndcg@10']:.3f}"
        )
        print(
            f"[{k}/{len(runs)}] {run.name}: {figure}, best epoch {result['best_epoch']} of {result['epochs_run']}, "
            f"{result['cpu_seconds']:.0f} CPU s",
            flush=True,
        )
    print(json.dumps({"finished": sum((OUT / f"{r.name}.json").exists() for r in runs), "runs": len(runs)}))


if __name__ == "__main__":
    main()
