"""tallrec_pl/model/explain.py: counterfactual evidence, exact against scoring each variant alone."""

from __future__ import annotations

import copy

import pytest
import torch

from tallrec_pl.data.batching import Collator
from tallrec_pl.data.encode import encode_samples
from tallrec_pl.model.explain import build_variants, explain_sample, explain_variants


@pytest.fixture(scope="module")
def rec(setup, tiny_backbone, tmp_path_factory):
    """(module, test samples with histories, tokenizer) on the tiny random LLaMA."""
    from helpers import write_ml100k

    from tallrec_pl.data import RecDataModule

    dm = RecDataModule(
        path=str(write_ml100k(tmp_path_factory.mktemp("ml") / "ml")),
        backbone=tiny_backbone,
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        cache_dir=None,
    )
    samples = [s for s in dm.build_samples()["test"] if s.history]
    return setup[0], samples[:3], dm.load_tokenizer()


def alone(module, sample, tokenizer, max_length=512) -> float:
    """p(Yes) of one prompt scored by itself, as predict scores it."""
    record = encode_samples([copy.deepcopy(sample)], tokenizer, max_length)[0]
    batch = Collator(tokenizer.pad_token_id)([dict(record, index=0)])
    with torch.no_grad():
        return float(module(batch)[1][0])


def without(sample, k):
    out = copy.deepcopy(sample)
    out.history.pop(k)
    return out


def flipped(sample, k):
    out = copy.deepcopy(sample)
    text, liked = out.history[k]
    out.history[k] = (text, not liked)
    return out


def test_each_effect_equals_scoring_the_removal_alone(rec):
    module, samples, tok = rec
    worst = 0.0
    for sample in samples:
        with torch.no_grad():
            ex = explain_sample(module, sample, tok, 512, flip=True)
        full = alone(module, sample, tok)
        assert abs(ex.p_yes - full) < 1e-5
        assert len(ex.evidence) == len(sample.history) == 4
        for e in ex.evidence:
            assert (e.liked, f'"{e.item}"') == (sample.history[e.position][1], sample.history[e.position][0])
            worst = max(worst, abs(e.effect - (full - alone(module, without(sample, e.position), tok))))
            worst = max(worst, abs(e.flip_effect - (full - alone(module, flipped(sample, e.position), tok))))
        assert ex.tokens_run < ex.tokens_plain  # the shared prefix ran once
    assert worst < 1e-5
    effects = [e.effect for s in samples for e in explain_sample(module, s, tok, 512).evidence]
    assert max(abs(x) for x in effects) > 1e-4  # the adapter and the items matter: not a vacuous check


def test_a_removed_item_renders_as_a_shorter_history(rec):
    module, samples, tok = rec
    v = build_variants(samples[0], tok, 512)
    for k, row in enumerate(v.rows):
        want = encode_samples([without(samples[0], k)], tok, 512)[0]
        assert row["input_ids"] == want["input_ids"] and row["prompt_len"] == want["prompt_len"]


def test_truncated_prompts_explain_the_items_they_show(rec):
    module, samples, tok = rec
    sample = samples[0]
    full_len = len(encode_samples([copy.deepcopy(sample)], tok, 512)[0]["input_ids"])
    short = full_len - 4  # the oldest item has to go
    v = build_variants(sample, tok, short)
    assert len(v.history) < len(sample.history) and v.history == sample.history[-len(v.history) :]
    with torch.no_grad():
        ex = explain_variants(module, v)
    kept = copy.deepcopy(sample)
    kept.history = list(v.history)
    dropped = len(sample.history) - len(v.history)
    assert [e.position for e in ex.evidence] == list(range(dropped, len(sample.history)))  # positions as given
    assert [e.item_id for e in ex.evidence] == [str(i) for i in sample.meta["history"][dropped:]]
    for e in ex.evidence:
        assert abs(e.effect - (ex.p_yes - alone(module, without(kept, e.position - dropped), tok, short))) < 1e-5


def test_a_ready_prompt_cannot_be_explained(rec):
    from tallrec_pl.data.prompts import Sample
    from tallrec_pl.errors import TallrecError

    module, _, tok = rec
    with pytest.raises(TallrecError, match="need a sample with a history"):
        build_variants(Sample("Say hi.", "Yes.", input="x"), tok, 512)


# --- predict --predictions.explain ------------------------------------------------------------


def test_predict_writes_each_samples_evidence(rec, tiny_backbone, ml100k, tmp_path):
    import json

    from helpers import run_args

    from tallrec_pl.commands import main
    from tallrec_pl.data import RecDataModule
    from tallrec_pl.model.lora import export_adapter

    module, _, tok = rec
    export_adapter(module.model, str(tmp_path / "adapter"), tiny_backbone)
    out = tmp_path / "run"
    main(
        [
            "predict",
            *run_args(tiny_backbone, ml100k, out),
            f"--model.init_adapter={tmp_path / 'adapter'}",
            "--predictions.explain=true",
            "--predictions.explain_flip=true",
        ]
    )
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    dm = RecDataModule(
        path=str(ml100k), backbone=tiny_backbone, history_len=4, split_sizes=[0.6, 0.2, 0.2], cache_dir=None
    )
    samples = dm.build_samples()["test"]
    assert len(rows) == len(samples) > 2
    for row in rows[:3]:
        sample = samples[row["index"]]
        assert [(e["item"], e["liked"]) for e in row["evidence"]] == [(t.strip('"'), ok) for t, ok in sample.history]
        assert [e["item_id"] for e in row["evidence"]] == [str(i) for i in sample.meta["history"]]
        full = alone(module, sample, tok)
        assert abs(row["p_yes"] - full) < 1e-4
        for e in row["evidence"]:
            assert abs(e["effect"] - (full - alone(module, without(sample, e["position"]), tok))) < 1e-4
            assert abs(e["flip_effect"] - (full - alone(module, flipped(sample, e["position"]), tok))) < 1e-4


def test_explain_flip_alone_is_refused():
    from tallrec_pl.callbacks import PredictionWriter
    from tallrec_pl.errors import TallrecError

    with pytest.raises(TallrecError, match="set predictions.explain: true too"):
        PredictionWriter(explain_flip=True)


# --- serve: "explain": true -------------------------------------------------------------------


def test_sentence_is_built_from_the_evidence_only():
    from tallrec_pl.model.explain import Evidence, sentence

    def ev(item, liked, effect):
        return Evidence(0, item, "", liked, effect)

    top = [
        ev("Fargo (1996)", True, 0.2),
        ev("Heat (1995)", False, -0.1),
        ev("Star Wars (1977)", True, 0.05),
        ev("Babe (1995)", False, 0.01),
    ]
    assert sentence(top) == (
        "Recommended because you liked Fargo (1996) and Star Wars (1977); you disliked "
        "Babe (1995). Counting against it: you disliked Heat (1995)."
    )
    assert sentence([ev("Heat (1995)", True, -0.1)]) == (
        "No item of your history raised this score. Counting against it: you liked Heat (1995)."
    )
    assert sentence([]) == "No item of your history changed this score."


def serve_builder(tiny_backbone, ml100k, **limits):
    from tallrec_pl.data import RecDataModule
    from tallrec_pl.data.logs import read_log
    from tallrec_pl.serve.api import PromptBuilder

    dm = RecDataModule(path=str(ml100k), backbone=tiny_backbone, history_len=4, cache_dir=None)
    return PromptBuilder(
        dm.load_tokenizer(),
        dm.max_length,
        read_log(str(ml100k)).item_fields,
        dm.item_text,
        dm.domain,
        dm.profile,
        "the test log",
        8,
        6,
        **limits,
    )


BAD_EXPLAIN = [
    ({"explain": "yes", "candidates": ["a"]}, "'explain' must be true or false, not a string"),
    ({"explain": 1, "candidates": ["a"]}, "'explain' must be true or false, not a number"),
    ({"explain": None, "candidates": ["a"]}, "'explain' must be true or false, not null"),
    ({"explain": True, "instruction": "Say hi."}, "'explain' needs a rec request"),
    (
        {"explain": True, "history": [{"item": 1, "liked": True}] * 3, "candidates": ["a", "b"]},
        "needs 6 variants, more than serve.max_explain_rows=5",
    ),
]


@pytest.mark.parametrize("body,message", BAD_EXPLAIN)
def test_bad_explain_values_are_refused_with_their_problem(tiny_backbone, ml100k, body, message):
    from tallrec_pl.serve.api import BadRequest

    with pytest.raises(BadRequest) as err:
        serve_builder(tiny_backbone, ml100k, max_explain_rows=5).payload(body)
    assert err.value.status == 422 and message in str(err.value)


def through_guard(builder, body: dict) -> tuple[dict | None, list]:
    """(the JSON the model worker's route receives, what the client was sent) for one POST."""
    import asyncio
    import json

    from tallrec_pl.serve.api import Guard

    raw, got, sent = json.dumps(body).encode(), {}, []

    async def app(scope, receive, send):
        got["body"] = json.loads((await receive())["body"])

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": "/predict", "method": "POST", "headers": [(b"content-length", b"%d" % len(raw))]}
    asyncio.run(Guard(app, builder, None, 1 << 20)(scope, receive, send))
    return got.get("body"), sent


def test_served_explanations_equal_brute_force(rec, tiny_backbone, ml100k):
    from tallrec_pl.serve.server import explain_requests, response, score_requests

    module, _, tok = rec
    builder = serve_builder(tiny_backbone, ml100k)
    history = [
        {"item": 3, "liked": True},
        {"item": {"id": "5"}, "liked": False},
        {"item": "Movie 9 (1959)", "liked": True},
        {"item": {"id": "11"}, "liked": True},
    ]
    body = {"history": history, "candidates": [{"id": "2"}, "Movie 7 (1957)"], "explain": True}
    payload, sent = through_guard(builder, body)
    assert not sent and payload["explain"]["top"] == 3
    with torch.no_grad():
        scores = score_requests(module, Collator(tok.pad_token_id), [payload["rows"]], 4, "cpu")[0]
        answer = response(scores, explain_requests(module, [payload])[0])
    assert answer["ranking"] == sorted(range(2), key=lambda i: -scores[i])
    samples = builder.samples({k: v for k, v in body.items() if k != "explain"})
    for k, (sample, ex) in enumerate(zip(samples, answer["explanations"], strict=True)):
        assert ex["candidate"] == k and abs(ex["p_yes"] - scores[k]) < 1e-5
        full = alone(module, sample, tok)
        effects = [full - alone(module, without(sample, j), tok) for j in range(len(history))]
        want = sorted(range(len(history)), key=lambda j: -abs(effects[j]))[:3]
        assert [e["position"] for e in ex["evidence"]] == want
        for e in ex["evidence"]:
            assert abs(e["effect"] - effects[e["position"]]) < 1e-5
        assert [e.get("item_id", "") for e in ex["evidence"]] == [["3", "5", "", "11"][j] for j in want]
        for e in ex["evidence"]:  # the sentence names each item on the side its effect shows
            verb = "liked" if e["liked"] else "disliked"
            side = ex["sentence"].split("Counting against it:")[e["effect"] < 0]
            assert e["item"] in side and verb in side
    payload, _ = through_guard(builder, {**body, "explain": False})
    assert "explain" not in payload and explain_requests(module, [payload]) == [None]
    assert "explanations" not in response([0.5], None)


# --- benchmarks/explain_faithfulness.py ---------------------------------------------------------


def test_faithfulness_benchmark_runs_on_a_tiny_model(tiny_backbone, ml100k, tmp_path):
    import json

    from benchmarks import explain_faithfulness as bench

    out = tmp_path / "explain.json"
    bench.main(
        [
            "--backbone",
            tiny_backbone,
            f"--data.init_args.path={ml100k}",
            "--data.init_args.history_len=4",
            "--data.init_args.split_sizes=[0.6,0.2,0.2]",
            "--data.init_args.cache_dir=null",
            "--data.init_args.shots=-1",
            "--samples",
            "4",
            "--output",
            str(out),
            "--plot",
            str(tmp_path / "e.png"),
        ]
    )
    summary = json.loads(out.read_text())
    assert summary["samples"] == 4 and (tmp_path / "e.png").stat().st_size > 1000
    drops = {(r["strategy"], r["k"]): r["mean_drop"] for r in summary["removals"]}
    assert set(drops) == {(s, k) for s in ("top", "random", "bottom") for k in (1, 2, 3)}
    # removing the top item is the explanation's own largest effect; removing the bottom one, its smallest
    module = bench.load_module(None, tiny_backbone, "float32")
    dm = bench.parse(
        [
            f"--data.init_args.path={ml100k}",
            "--data.init_args.history_len=4",
            "--data.init_args.split_sizes=[0.6,0.2,0.2]",
            "--data.init_args.shots=-1",
        ]
    )[1]
    dm.connect(module.tokenizer)
    samples = dm.build_samples()["test"]
    picked = [samples[i] for i in bench.spread_indices(len(samples), 4)]
    with torch.no_grad():
        effects = [[e.effect for e in explain_sample(module, s, dm.tokenizer, dm.max_length).evidence] for s in picked]
    assert abs(drops[("top", 1)] - sum(max(e) for e in effects) / 4) < 1e-6
    assert abs(drops[("bottom", 1)] - sum(min(e) for e in effects) / 4) < 1e-6
    assert drops[("top", 1)] > drops[("bottom", 1)]


def test_the_model_worker_answers_explained_and_plain_requests_together(rec, tiny_backbone, ml100k):
    """RecScorer's decode / predict / encode steps, as LitServe calls them for a batch of two requests."""
    from lightning.pytorch.plugins.precision import Precision

    from tallrec_pl.serve.server import RecScorer

    module, _, tok = rec
    builder = serve_builder(tiny_backbone, ml100k)
    body = {"history": [{"item": 3, "liked": True}, {"item": {"id": "5"}, "liked": False}], "candidates": [1, 2]}
    scorer = RecScorer({}, None, "32-true", 4, max_batch_size=8, batch_timeout=0.01)
    scorer.module, scorer.plugin, scorer.torch_device = module, Precision(), torch.device("cpu")
    scorer.collate = Collator(tok.pad_token_id)
    requests = [scorer.decode_request(through_guard(builder, b)[0]) for b in ({**body, "explain": True}, body)]
    explained, plain = [scorer.encode_response(r) for r in scorer.unbatch(scorer.predict(scorer.batch(requests)))]
    assert explained["scores"] == plain["scores"] and explained["ranking"] == plain["ranking"]
    assert "explanations" not in plain and len(explained["explanations"]) == 2
    assert [e["candidate"] for e in explained["explanations"]] == [0, 1]
    assert all(abs(e["p_yes"] - s) < 1e-5 for e, s in zip(explained["explanations"], plain["scores"], strict=True))
    assert {e["item_id"] for e in explained["explanations"][0]["evidence"]} == {"3", "5"}
