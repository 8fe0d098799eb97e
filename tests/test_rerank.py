"""Two-stage ranking: the SASRec retriever (tallrec_pl/retrieval/sasrec.py), full-catalogue candidate
groups and hard negatives (tallrec_pl/data/candidates.py), the metrics' misses, the listwise loss and
its whole-group batches, and the `retriever` command into `test` (tiny SASRec, tiny random LLaMA)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import run_args, write_ml100k

from tallrec_pl.commands import main
from tallrec_pl.data import RankDataModule, RecDataModule
from tallrec_pl.data.batching import ShuffledGroupBatchSampler
from tallrec_pl.data.candidates import hard_negatives, retrieved_groups
from tallrec_pl.data.prompts import Sample
from tallrec_pl.data.windows import Kept, Window
from tallrec_pl.errors import TallrecError
from tallrec_pl.model.metrics import ranking_metrics
from tallrec_pl.model.module import TALLRecModule, listwise_loss
from tallrec_pl.retrieval.sasrec import Retriever, RetrieverOptions

pytest.importorskip("recbole")
TINY = RetrieverOptions(
    history_len=4, hidden_size=8, n_layers=1, n_heads=1, inner_size=16, max_epochs=3, batch_size=32, dropout=0.1
)
TINY_ARGS = ["--hidden_size=8", "--n_layers=1", "--n_heads=1", "--inner_size=16", "--max_epochs=3", "--batch_size=32"]
DATA = {"history_len": 4, "split_sizes": [0.6, 0.2, 0.2], "cache_dir": None}


class Fixed:
    """A retriever stand-in: every history gets the same item order (first = best)."""

    def __init__(self, order: list[str]) -> None:
        self.order = order

    def top_k(self, histories, exclude, k):
        return [
            [(i, -float(r)) for r, i in enumerate(i for i in self.order if i not in skip)][:k]
            for _, skip in zip(histories, exclude, strict=True)
        ]

    def ranks(self, histories, exclude, items):
        return [
            [i for i in self.order if i not in skip or i == item].index(item) + 1
            for item, skip in zip(items, exclude, strict=True)
        ]


def sample(w: Window) -> Sample:
    return Sample(instruction="rank", output="Yes." if w.label else "No.", meta={"item": w.target})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    ml = write_ml100k(tmp_path_factory.mktemp("rr") / "ml")
    dm = RecDataModule(path=str(ml), **DATA)
    log, _ = dm.log_windows(dm.resolved_format())
    return (
        ml,
        dm,
        Retriever.fit(
            sorted(log.item_fields), dm.next_items("train"), dm.next_items("valid"), TINY, log=lambda *_: None
        ),
    )


def test_retriever_saves_loads_and_scores_the_same(fitted, tmp_path):
    _, dm, retriever = fitted
    path = tmp_path / "r.pt"
    retriever.save(str(path))
    again = Retriever.load(str(path))
    histories = [h for h, _ in dm.next_items("valid")]
    assert torch.equal(retriever.scores(histories), again.scores(histories))
    again.check(retriever.items, dm.next_items("train"), str(path))  # the same data: accepted


def test_retriever_refuses_another_log_and_other_files(fitted, tmp_path):
    _, dm, retriever = fitted
    other = RecDataModule(path=str(write_ml100k(tmp_path / "other", n_users=7)), **DATA)
    with pytest.raises(TallrecError, match="another log"):
        retriever.check(retriever.items, other.next_items("train"), "r.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(TallrecError, match="not a retriever file"):
        Retriever.load(str(tmp_path / "junk.pt"))


def test_top_k_excludes_rated_items_and_follows_the_scores(fitted):
    _, dm, retriever = fitted
    history = dm.next_items("valid")[0][0]
    scores = retriever.scores([history])[0]
    skip = set(history) | {retriever.items[int(scores.argmax())]}
    top = retriever.top_k([history], [skip], 5)[0]
    assert len(top) == 5 and not {i for i, _ in top} & skip
    values = [v for _, v in top]
    assert values == sorted(values, reverse=True)
    assert values[0] == max(float(scores[k]) for k, i in enumerate(retriever.items) if i not in skip)
    assert retriever.ranks([history] * 2, [skip] * 2, [top[0][0], top[2][0]]) == [1, 3]


def test_rated_before_is_what_the_user_rated_before_the_target():
    kept = Kept([], sequences={"u": ["a", "b", "c", "d", "e"]})
    assert kept.rated_before(Window("u", (("b", True), ("c", False)), "d", True)) == {"a", "b", "c"}
    assert kept.rated_before(Window("u", (), "a", True)) == set()


def test_retrieved_groups_miss_when_the_true_item_is_outside_the_top_k():
    kept = Kept([], sequences={"u": ["a", "b", "x", "y"], "v": ["a", "q"]})
    windows = [
        Window("u", (("a", True), ("b", True)), "x", True),
        Window("v", (("a", True),), "q", True),
        Window("u", (("a", True),), "b", False),
    ]  # disliked: not ranked
    groups = retrieved_groups(windows, kept, Fixed(["a", "x", "b", "c", "d", "q"]), 3, sample)
    by = {g: [s for s in groups if s.meta["group"] == g] for g in (0, 1)}
    assert [s.meta["item"] for s in by[0]] == ["x", "c", "d"]  # a and b were rated before x
    assert [s.meta["positive"] for s in by[0]] == [True, False, False]
    assert [s.meta["retriever_rank"] for s in by[0]] == [1, 2, 3]
    assert [s.meta["item"] for s in by[1]] == ["x", "b", "c"] and not any(s.meta["positive"] for s in by[1])


def test_full_catalogue_metrics_on_a_hand_made_catalogue():
    # group 0: the true item second of 3; group 1: the retriever left it out (a miss)
    m = ranking_metrics([0, 0, 0, 1, 1, 1], [3, 2, 1, 3, 2, 1], [False, True, False, False, False, False])
    assert m["hr@1"] == 0 and m["hr@5"] == 0.5 and m["mrr"] == 0.25
    assert m["ndcg@5"] == pytest.approx(0.5 / math.log2(3))


def test_hard_negatives_come_from_the_top_k_and_were_never_rated():
    kept = Kept([], interacted={"u": {"a", "b", "x"}}, sequences={"u": ["a", "x", "b"]})
    windows = [Window("u", (("a", True),), "x", True), Window("u", (("a", True), ("x", True)), "b", False)]
    out, ranks = hard_negatives(windows, kept, Fixed(["a", "c", "x", "d", "e", "f"]), 2, 3, seed=0)
    assert out[0] == windows[0] and len(out) == 3  # the disliked window is left out
    assert {w.target for w in out[1:]} <= {"c", "d", "e"} and not any(w.label for w in out[1:])
    # ranks among the items not rated before the window (a was): c 1, x 2, d 3, e 4
    assert ranks[out[0]] == 2 and all(ranks[w] == {"c": 1, "d": 3, "e": 4}[w.target] for w in out[1:])
    with pytest.raises(TallrecError, match="data.top_k"):
        hard_negatives(windows, kept, Fixed(["c"]), 4, 3, seed=0)


def test_retriever_prior_orders_by_rank_and_puts_unranked_last():
    from tallrec_pl.model.module import retriever_prior

    prior = retriever_prior(torch.tensor([1, 2, 5, -1]))
    assert prior[0] == 0 and prior[0] > prior[1] > prior[2] > prior[3]


def test_shuffled_group_batches_are_whole_groups_seeded_by_epoch():
    sampler = ShuffledGroupBatchSampler([0, 0, 0, 1, 1, 1, 2, 2, 2], seed=3)
    first = list(sampler)
    assert sorted(map(tuple, first)) == [(0, 1, 2), (3, 4, 5), (6, 7, 8)] and list(sampler) == first
    orders = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        orders.add(tuple(map(tuple, sampler)))
    assert len(orders) > 1


def test_listwise_loss_is_the_softmax_over_each_group():
    margins = torch.tensor([2.0, 0.0, -1.0, 1.0, 3.0], requires_grad=True)
    groups, labels = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([1, 0, 0, 0, 1])
    loss = listwise_loss(margins, groups, labels)
    expected = (-torch.log_softmax(margins[:3], 0)[0] - torch.log_softmax(margins[3:], 0)[1]) / 2
    assert torch.allclose(loss, expected)
    with pytest.raises(TallrecError, match="listwise"):
        listwise_loss(margins, torch.full((5,), -1), labels)


def test_listwise_training_reaches_lora_and_every_item_token_projector(fitted, tiny_backbone, tmp_path):
    ml, _, retriever = fitted
    from tallrec_pl.items.file import save_item_embeddings

    vectors = tmp_path / "sasrec.safetensors"
    save_item_embeddings(str(vectors), *retriever.item_vectors())
    retriever_file = tmp_path / "r.pt"
    retriever.save(str(retriever_file))
    dm = RankDataModule(
        path=str(ml),
        backbone=tiny_backbone,
        train_negatives=3,
        hard_negatives=2,
        retriever=str(retriever_file),
        top_k=5,
        listwise=True,
        item_embeddings=str(vectors),
        candidates="retriever",
        **DATA,
    )
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert len(set(batch["group"].tolist())) == 1 and int(batch["label"].sum()) == 1  # one window and its negatives
    torch.manual_seed(0)
    assert (batch["retriever_rank"] > 0).all()  # every candidate carries its retriever rank (the prior)
    m = TALLRecModule(
        backbone=tiny_backbone, dtype="float32", item_embeddings=str(vectors), loss="both", prior_weight=1.0
    )
    m.configure_model()
    m.train()
    m.log = lambda *a, **k: None  # no trainer attached
    m.training_step(batch, 0).backward()
    trainable = {n: p for n, p in m.named_parameters() if p.requires_grad}
    assert any("item_tokens" in n for n in trainable)
    for name, p in trainable.items():
        if "lora_A" in name:
            continue  # LoRA B starts at zero, so A gets no gradient on the first step
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_retriever_command_then_full_catalogue_test(tiny_backbone, tmp_path, capsys):
    ml = write_ml100k(tmp_path / "ml")
    data = [f"--data.path={ml}", "--data.history_len=4", "--data.init_args.split_sizes=[0.6,0.2,0.2]"]
    main(
        [
            "retriever",
            "--data.class_path=tallrec_pl.data.RankDataModule",
            *data,
            *TINY_ARGS,
            f"--output={tmp_path / 'r.pt'}",
            f"--item_embeddings={tmp_path / 'v.safetensors'}",
        ]
    )
    assert "retriever (20 items) written" in capsys.readouterr().err
    args = run_args(
        tiny_backbone,
        ml,
        tmp_path / "run",
        "--data.class_path=tallrec_pl.data.RankDataModule",
        "--data.init_args.candidates=retriever",
        f"--data.init_args.retriever={tmp_path / 'r.pt'}",
        "--data.init_args.top_k=5",
    )
    main(["predict", *args])
    rows = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    assert rows and len(rows) % 5 == 0  # every liked test window: the retriever's top 5
    with pytest.raises(SystemExit):  # a retriever fit on another log: the one-line error, exit 2
        other = write_ml100k(tmp_path / "other", n_users=7)
        main(
            [
                "predict",
                *run_args(
                    tiny_backbone,
                    other,
                    tmp_path / "run2",
                    "--data.class_path=tallrec_pl.data.RankDataModule",
                    "--data.init_args.candidates=retriever",
                    f"--data.init_args.retriever={tmp_path / 'r.pt'}",
                ),
            ]
        )
    assert "another log" in capsys.readouterr().err


def test_serve_history_only_request_gets_the_retrievers_top_n(fitted, tiny_backbone):
    from tallrec_pl.data.logs import read_log
    from tallrec_pl.serve.api import BadRequest, PromptBuilder
    from tallrec_pl.serve.server import response

    ml, dm, retriever = fitted
    dm = RankDataModule(path=str(ml), backbone=tiny_backbone, **DATA)
    fields = read_log(str(ml)).item_fields
    args = (dm.load_tokenizer(), dm.max_length, fields, dm.item_text, dm.domain, dm.profile, "the test log", 8, 6)
    history = [{"item": {"id": "8"}, "liked": True}, {"item": 15, "liked": False}, {"item": "A title", "liked": True}]
    with pytest.raises(BadRequest, match="no retriever"):
        PromptBuilder(*args).payload({"history": history})
    builder = PromptBuilder(*args, retriever=retriever, top_n=5, prior_weight=1.0)
    out = builder.payload({"history": history})
    expected = [i for i, _ in retriever.top_k([["8", "15"]], [{"8", "15"}], 5)[0]]
    assert out["retrieved"]["items"] == expected and len(out["rows"]) == 5
    assert out["retrieved"]["ranks"] == [1, 2, 3, 4, 5] and out["retrieved"]["retrieve_ms"] >= 0
    # the same rows as a request that sends those candidates itself
    same = builder.payload({"history": history, "candidates": [{"id": i} for i in expected]})
    assert same["rows"] == out["rows"] and "retrieved" not in same
    # ranking: LLM margin + prior_weight * -log(rank); with equal p(Yes) the retriever's order stands
    answer = response([0.5] * 5, None, out["retrieved"], rerank_ms=12.0)
    assert answer["candidates"] == expected and answer["ranking"] == [0, 1, 2, 3, 4]
    assert answer["timings"]["rerank_ms"] == 12.0 and "retrieve_ms" in answer["timings"]
    strong_last = response([0.5, 0.5, 0.5, 0.5, 0.99], None, out["retrieved"])
    assert strong_last["ranking"][0] == 4  # a large margin lifts the retriever's fifth item to the top


def test_serve_builder_from_a_data_section_with_a_retriever(fitted, tiny_backbone, tmp_path):
    from tallrec_pl.serve.api import ServeOptions
    from tallrec_pl.serve.server import prompt_builder

    ml, _, retriever = fitted
    retriever.save(str(tmp_path / "r.pt"))
    dm = RankDataModule(path=str(ml), backbone=tiny_backbone, retriever=str(tmp_path / "r.pt"), top_k=4, **DATA)
    builder = prompt_builder(dm, ServeOptions(max_candidates=3), 0.5)  # as serve builds it: nothing read before
    out = builder.payload({"history": [{"item": 8, "liked": True}]})
    assert len(out["retrieved"]["items"]) == 3 and out["retrieved"]["prior_weight"] == 0.5  # capped by max_candidates


def test_implicit_logs_give_the_retriever_interactions_only(tmp_path):
    rows = "".join(f"u{u},{(u * 3 + i) % 11 + 1},{u * 10 + i}\n" for u in range(4) for i in range(6))
    (tmp_path / "log.csv").write_text("user,item,timestamp\n" + rows)
    (tmp_path / "items.csv").write_text("item,title\n" + "".join(f"{k},Film {k}\n" for k in range(1, 12)))
    dm = RecDataModule(
        path=str(tmp_path / "log.csv"),
        items_path=str(tmp_path / "items.csv"),
        history_len=2,
        split_sizes=[0.6, 0.2, 0.2],
        cache_dir=None,
    )
    pairs = dm.next_items("train")
    interacted = dm.interacted()
    users = [w.user for w in dm.rated_windows("train") if w.label]
    assert len(pairs) == len(users) and all(t in interacted[u] for (_, t), u in zip(pairs, users, strict=True))


def test_listwise_batches_reshuffle_each_epoch_as_lightning_sets_it(fitted, tiny_backbone, tmp_path):
    from lightning.fabric.utilities.data import _set_sampler_epoch

    ml, _, retriever = fitted
    retriever.save(str(tmp_path / "r.pt"))
    dm = RankDataModule(
        path=str(ml),
        backbone=tiny_backbone,
        train_negatives=2,
        hard_negatives=1,
        retriever=str(tmp_path / "r.pt"),
        top_k=5,
        listwise=True,
        negatives=3,
        **DATA,
    )
    dm.setup()
    loader = dm.train_dataloader()
    first = [b["group"][0].item() for b in loader]
    _set_sampler_epoch(loader, 1)
    second = [b["group"][0].item() for b in loader]
    assert sorted(first) == sorted(second) and first != second


def test_listwise_loss_without_group_batches_is_one_line(tiny_backbone, ml100k, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *run_args(tiny_backbone, ml100k, tmp_path, "--model.loss=listwise")])
    assert "needs training batches of whole ranking groups" in capsys.readouterr().err


def test_retriever_command_with_hard_negatives_in_the_config_does_not_need_its_output(tmp_path):
    ml = write_ml100k(tmp_path / "ml")
    main(
        [
            "retriever",
            f"--data.path={ml}",
            "--data.history_len=4",
            "--data.init_args.split_sizes=[0.6,0.2,0.2]",
            "--data.init_args.train_negatives=2",
            "--data.init_args.hard_negatives=2",
            f"--data.init_args.retriever={tmp_path / 'r.pt'}",
            *TINY_ARGS,
            f"--output={tmp_path / 'r.pt'}",
        ]
    )
    assert Retriever.load(str(tmp_path / "r.pt")).items
