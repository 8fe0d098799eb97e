"""tallrec_pl/model/collab.py and the item-token path through prompts, encoding, batching, the model,
checkpoints, export, ``predict`` and the serve prompt builder (tiny random LLaMA, synthetic logs)."""

from __future__ import annotations

import pytest
import torch
from helpers import item_token_data as data
from helpers import predict_both_ways, randomize_lora_b, run_args, the_error, with_new_items, write_ml100k

from tallrec_pl.checkpoints import load_lightning_state
from tallrec_pl.commands import main
from tallrec_pl.data import RankDataModule, RecDataModule
from tallrec_pl.data.batching import Collator
from tallrec_pl.data.encode import item_token_of
from tallrec_pl.data.prompts import Sample
from tallrec_pl.errors import TallrecError
from tallrec_pl.items.file import ITEM_TOKENS_FILE, load_item_embeddings
from tallrec_pl.model.module import TALLRecModule
from tallrec_pl.model.scoring import MIN_SHARED_PREFIX, reused_prefix_len, shared_prefix_len

DATA = ["--data.history_len=4", "--data.init_args.split_sizes=[0.6,0.2,0.2]"]


def make_embeddings(ml, out, *extra: str) -> str:
    main(["item-embeddings", f"--data.path={ml}", *DATA, f"--output={out}", "--factors=8", *extra])
    return str(out)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """A log whose last user also rates items nobody rated before (they land in the test split),
    and its item embeddings file."""
    tmp = tmp_path_factory.mktemp("collab")
    ml = with_new_items(write_ml100k(tmp / "ml"))
    return ml, make_embeddings(ml, tmp / "als.safetensors")


def predicted(m: TALLRecModule, dm) -> dict[int, float]:
    """p(Yes) of every test sample by its index, as ``predict`` scores them."""
    scores = {}
    with torch.no_grad():
        for batch in dm.test_dataloader():
            out = m.predict_step(batch, 0)
            scores.update(zip(out["index"].tolist(), out["p_yes"].tolist(), strict=True))
    return scores


def module(tiny_backbone, embeddings, seed=0, **kwargs) -> TALLRecModule:
    torch.manual_seed(seed)
    m = TALLRecModule(backbone=tiny_backbone, dtype="float32", item_embeddings=embeddings, **kwargs)
    m.configure_model()
    randomize_lora_b(m)
    return m.eval()


def projector(m: TALLRecModule) -> dict[str, torch.Tensor]:
    """Every file's projector weights, by their names under ``item_tokens.``."""
    states = m.item_tokens.projector_states()
    return {f"parts.{i}.{k}": v.detach().clone() for i, state in enumerate(states) for k, v in state.items()}


# --- the file and the command ---------------------------------------------------------------


def test_item_embeddings_command_fits_the_whole_train_split_only(log, tmp_path):
    ml, path = log
    loaded = load_item_embeddings(path)
    items, vectors, extra = loaded.items, loaded.vectors, loaded.extra
    dm = RecDataModule(path=str(ml), history_len=4, split_sizes=[0.6, 0.2, 0.2], shots=2)  # shots: not used
    _, windows = dm.log_windows("ml-100k")
    in_train = {i for w in windows["train"] for i in [w.target, *(h for h, _ in w.history)]}
    later = {w.target for w in windows["test"]}
    assert set(items) == in_train and {"21", "22", "23"} <= later - in_train
    assert vectors.shape == (len(items), 8) and vectors.dtype == torch.float32 and extra == {}
    again = make_embeddings(ml, tmp_path / "again.safetensors")
    assert torch.equal(load_item_embeddings(again).vectors, vectors)  # seeded by data.seed


def test_sampled_negatives_are_not_interactions(tmp_path):
    dm = RecDataModule(
        path=str(write_ml100k(tmp_path / "ml")), history_len=4, split_sizes=[0.6, 0.2, 0.2], train_negatives=2
    )
    pairs = dm.train_interactions()
    seen = dm.interacted()
    assert pairs and all(item in seen[user] for user, item in pairs)
    assert any(not w.label for w in dm.log_windows()[1]["train"])  # there were sampled targets to leave out


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: str(p / "nope.safetensors"), "model.item_embeddings not found"),
        (lambda p: (p / "junk.safetensors").write_text("junk") and str(p / "junk.safetensors"), "not a readable"),
    ],
)
def test_bad_embeddings_file_is_one_line(tiny_backbone, log, tmp_path, capsys, make, expected):
    ml, _ = log
    with pytest.raises(SystemExit) as exc:
        main(["fit", *run_args(tiny_backbone, ml, tmp_path / "run"), f"--model.item_embeddings={make(tmp_path)}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("tallrec_pl: error:")]
    assert "Traceback" not in err and len(lines) == 1 and expected in lines[0] and "item-embeddings" in lines[0], err


def test_item_embeddings_of_tallrec_json_is_one_line(rec_json, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["item-embeddings", f"--data.path={rec_json}", f"--output={tmp_path / 'e.safetensors'}"])
    assert exc.value.code == 2
    assert "TALLRec JSON has no item ids" in the_error(capsys.readouterr().err)
    assert not (tmp_path / "e.safetensors").exists()


def test_item_embeddings_help(capsys):
    with pytest.raises(SystemExit):
        main(["item-embeddings", "--help"])
    text = capsys.readouterr().out
    assert "--factors" in text and "dimensions of an item vector" in text and "--data.help" in text


# --- prompts and encoding -------------------------------------------------------------------


def test_cache_key_changes_with_item_tokens_and_the_cache_keeps_them(tiny_backbone, log, tmp_path):
    ml, path = log
    cache = str(tmp_path / "cache")
    on = data(RecDataModule, ml, tiny_backbone, path)
    on.cache_dir = cache
    on.setup()
    again = data(RecDataModule, ml, tiny_backbone, path)
    again.cache_dir = cache
    again.setup()  # read back from the cache
    assert again.encoded == on.encoded and any(r["item_rows"] for r in again.encoded["test"])
    off = data(RecDataModule, ml, tiny_backbone, None)
    off.cache_dir = cache
    off.setup()
    assert "item_rows" not in off.encoded["test"][0]
    splits = [f for f in (tmp_path / "cache").iterdir() if not f.name.startswith("windows-")]
    assert len(splits) == 6  # three splits, twice (beside the log's windows, saved once)


def test_item_token_follows_each_item_with_a_row_and_drop_oldest_keeps_rows_aligned():
    s = Sample(
        "Rate.",
        "Yes.",
        history=[('"A"', True), ('"B"', False), ('"C"', True)],
        target="T",
        history_rows=[3, -1, 5],
        target_row=7,
    )
    assert s.render_input("<x>") == (
        'User Preference: "A" <x>, "C" <x>\nUser Unpreference: "B"\n'
        'Whether the user will like the target movie "T" <x>?'
    )
    assert s.item_rows() == [3, 5, 7]
    assert (
        "<x>" not in s.render_input()
        and s.render_input()
        == Sample("Rate.", "Yes.", history=[('"A"', True), ('"B"', False), ('"C"', True)], target="T").render_input()
    )
    s.drop_oldest()
    assert s.history_rows == [(), (5,)] and s.item_rows() == [5, 7] and s.render_input("<x>").count("<x>") == 2
    cold = Sample("Rate.", "Yes.", history=[('"A"', True)], target="T", history_rows=[-1], target_row=-1)
    assert cold.prompt("<x>") == cold.prompt() and cold.item_rows() == []
    # implicit wording: rows in the order the template places its fields
    implicit = Sample(
        "Rate.",
        "Yes.",
        history=[('"A"', True), ('"B"', True)],
        target="T",
        history_rows=[1, 2],
        target_row=9,
        input_template="Next {target}? After {history}.",
    )
    assert implicit.render_input("<x>") == 'Next T <x>? After "A" <x>, "B" <x>.' and implicit.item_rows() == [9, 1, 2]


def test_items_take_one_token_per_file_that_has_them_and_token_only_prompts_keep_cold_titles():
    # rows from two embeddings files: A is in both, B in neither (cold), the target only in the second
    s = Sample(
        "Rate.",
        "Yes.",
        history=[('"A"', True), ('"B"', False)],
        target="T",
        history_rows=[(0, 10), ()],
        target_row=(12,),
    )
    assert s.render_input("<x>") == (
        'User Preference: "A" <x> <x>\nUser Unpreference: "B"\nWhether the user will like the target movie "T" <x>?'
    )
    assert s.item_rows() == [0, 10, 12]
    short = Sample(**{**s.__dict__, "token_only": True})
    assert short.render_input("<x>") == (
        'User Preference: <x> <x>\nUser Unpreference: "B"\nWhether the user will like the target movie <x>?'
    )
    assert short.item_rows() == s.item_rows()
    assert short.render_input() == s.render_input()  # without item tokens the text stays whole
    # a cold target keeps its title, quoted, in the implicit wording too
    implicit = Sample(
        "Rate.",
        "Yes.",
        history=[('"A"', True)],
        target="T",
        history_rows=[(3,)],
        target_row=(),
        input_template='After {history}: "{target}"?',
        token_only=True,
    )
    assert implicit.render_input("<x>") == 'After <x>: "T"?' and implicit.item_rows() == [3]
    implicit.target_row = (4,)
    assert implicit.render_input("<x>") == "After <x>: <x>?" and implicit.item_rows() == [3, 4]


def test_placeholder_is_a_spare_special_token_and_a_tokenizer_without_one_is_refused(tiny_backbone, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    token = item_token_of(tok)
    assert token not in (tok.eos_token, tok.bos_token)
    assert (
        tok(f'"Movie 1 (1951)" {token}, "x"', add_special_tokens=False)["input_ids"].count(
            tok.convert_tokens_to_ids(token)
        )
        == 1
    )
    bare = Tokenizer(models.BPE())
    bare.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bare.train_from_iterator(["some text"] * 4, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=bare, bos_token="<s>", eos_token="</s>", pad_token="</s>")
    with pytest.raises(TallrecError, match="no special token to spare for item tokens"):
        item_token_of(fast)


def test_item_tokens_equal_rows_after_truncation(tiny_backbone, log):
    ml, path = log
    full = data(RecDataModule, ml, tiny_backbone, path, max_length=1024)
    full.setup()
    lengths = sorted(len(r["input_ids"]) for r in full.encoded["train"])
    dm = data(RecDataModule, ml, tiny_backbone, path, max_length=lengths[len(lengths) // 2])
    dm.setup()
    token_id = dm.tokenizer.convert_tokens_to_ids(dm.item_token)
    truncated = 0
    for r in (r for name in ("train", "valid", "test") for r in dm.encoded[name]):
        assert len(r["input_ids"]) <= dm.max_length
        assert r["input_ids"].count(token_id) == len(r["item_rows"]) == len(r["item_positions"])
        assert all(r["input_ids"][p] == token_id for p in r["item_positions"])
    samples = dm.build_samples()["train"]
    for r, sample in zip(dm.encoded["train"], samples, strict=True):
        # every train item has a row: the newest history items that survived truncation (liked ones first, as
        # the prompt lists them), then the target
        kept = len(r["item_rows"]) - 1
        assert 0 <= kept <= r["hist_len"]
        truncated += kept < r["hist_len"]
        liked = [ok for _, ok in sample.history]
        history = list(zip(sample.meta["history"], liked, strict=True))[r["hist_len"] - kept :]
        rows = dm.item_rows
        expected = [k for i, ok in history if ok for k in rows[i]] + [k for i, ok in history if not ok for k in rows[i]]
        assert r["item_rows"] == [*expected, *rows[sample.meta["item"]]]
    assert truncated > 0
    batch = Collator(dm.tokenizer.pad_token_id)(dm.encoded["train"][:4])
    at = batch["item_rows"] >= 0
    assert (batch["input_ids"][at] == token_id).all() and at.sum() == sum(
        len(r["item_rows"]) for r in dm.encoded["train"][:4]
    )


# --- the model ------------------------------------------------------------------------------


def test_gradients_reach_the_projector_and_the_soft_tokens_matter(tiny_backbone, log):
    ml, path = log
    dm = data(RecDataModule, ml, tiny_backbone, path, batch_size=4)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert (batch["item_rows"] >= 0).any()
    m = module(tiny_backbone, path).train()
    loss, p_yes = m(batch)
    loss.backward()
    grads = [p.grad for p in m.item_tokens.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    m.eval()
    with torch.no_grad():
        _, before = m(batch)
        m.item_tokens.parts[0].proj[-1].bias.add_(1.0)
        _, after = m(batch)
    assert not torch.allclose(before, after)


def test_optimizer_trains_the_projector(tiny_backbone, log):
    ml, path = log
    m = module(tiny_backbone, path)

    class Trainer:
        estimated_stepping_batches = 10

    m._trainer = Trainer()
    try:
        opt = m.configure_optimizers()["optimizer"]
    finally:
        m._trainer = None
    in_opt = {id(p) for group in opt.param_groups for p in group["params"]}
    assert all(id(p) in in_opt for p in m.item_tokens.parameters())
    assert any(id(p) in in_opt for n, p in m.model.named_parameters() if "lora_" in n)


def test_checkpoint_round_trip_and_refusals(tiny_backbone, log, tmp_path):
    ml, path = log
    dm = data(RecDataModule, ml, tiny_backbone, path, eval_batch_size=6)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    a = module(tiny_backbone, path)
    with torch.no_grad():
        a.item_tokens.parts[0].proj[0].weight.mul_(1.5)
        _, p_a = a(batch)
    ckpt = {"state_dict": a.state_dict(), "hyper_parameters": dict(a.hparams)}
    a.on_save_checkpoint(ckpt)
    assert {k for k in ckpt["state_dict"] if not k.startswith("model.")} == {f"item_tokens.{k}" for k in projector(a)}
    torch.save(ckpt, tmp_path / "a.ckpt")
    ckpt = load_lightning_state(str(tmp_path / "a.ckpt"))  # plain tensors: weights_only loads it

    b = module(tiny_backbone, path, seed=1)
    assert any(not torch.equal(v, projector(a)[k]) for k, v in projector(b).items())
    b.on_load_checkpoint(ckpt)
    b.load_state_dict(ckpt["state_dict"], strict=b.strict_loading)
    assert all(torch.equal(v, projector(a)[k]) for k, v in projector(b).items())
    with torch.no_grad():
        _, p_b = b(batch)
    torch.testing.assert_close(p_b, p_a, rtol=0, atol=1e-6)

    other = make_embeddings(ml, tmp_path / "other.safetensors", "--data.seed=1")
    with pytest.raises(TallrecError, match="trained with other item embeddings"):
        module(tiny_backbone, other).on_load_checkpoint(ckpt)
    text_only = module(tiny_backbone, None)
    with pytest.raises(TallrecError, match="trained with collaborative item tokens .*set model.item_embeddings"):
        text_only.on_load_checkpoint(ckpt)
    plain = {"state_dict": text_only.state_dict()}
    text_only.on_save_checkpoint(plain)
    with pytest.raises(TallrecError, match="trained without item tokens"):
        b.on_load_checkpoint(plain)


def test_cold_items_are_text_only_and_score(tiny_backbone, log):
    ml, path = log
    dm = data(RankDataModule, ml, tiny_backbone, path, negatives=3)
    dm.setup()
    samples = dm.build_samples()["test"]
    cold = [s for s in samples if s.meta["item"] in ("21", "22", "23")]
    assert cold and all(s.target_row == () for s in cold) and any(s.target_row for s in samples)
    for s in cold:
        assert s.prompt(dm.item_token).endswith(f'"{s.target}"?\n\n### Response:\n')  # no token after the target
        assert s.prompt(dm.item_token).count(dm.item_token) == sum(len(r) for r in s.history_rows)
    scores = predicted(module(tiny_backbone, path), dm)
    assert len(scores) == len(samples) and all(0 < p < 1 for p in scores.values())
    # off by default: no item tokens anywhere
    plain = data(RankDataModule, ml, tiny_backbone, None, negatives=3)
    plain.setup()
    assert plain.item_token == "" and "item_rows" not in plain.encoded["test"][0]
    assert "item_rows" not in next(iter(plain.test_dataloader()))


def test_shared_prefix_stops_where_item_rows_differ_and_gives_the_same_scores(tiny_backbone, log):
    ids = torch.ones(2, 30, dtype=torch.long)
    rows = torch.full((2, 30), -1)
    rows[0, 12], rows[1, 12] = 4, 5
    assert shared_prefix_len(ids, torch.tensor([30, 30])) == 29
    assert shared_prefix_len(ids, torch.tensor([30, 30]), rows) == 12

    ml, path = log
    dm = data(RankDataModule, ml, tiny_backbone, path, negatives=3)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))  # one ranking group: the history is shared
    n = reused_prefix_len(batch["input_ids"], batch["prompt_len"], batch["item_rows"])
    assert n >= MIN_SHARED_PREFIX and (batch["item_rows"][:, :n] >= 0).any()  # soft tokens inside the prefix
    m = module(tiny_backbone, path)
    with torch.no_grad():
        _, shared = m(batch)
        m.hparams.share_prefix = False
        _, whole = m(batch)
    torch.testing.assert_close(shared, whole, rtol=0, atol=1e-5)


# --- predict, export and serve ----------------------------------------------------------------


def test_fit_predict_export_with_item_tokens(tiny_backbone, log, tmp_path, capsys):
    ml, path = log
    out = tmp_path / "run"
    on = f"--model.item_embeddings={path}"
    main(["fit", *run_args(tiny_backbone, ml, out), on])
    best = next(out.glob("best-*.ckpt"))
    state = load_lightning_state(str(best))["state_dict"]
    trained = {k.removeprefix("item_tokens.parts.0."): v for k, v in state.items() if k.startswith("item_tokens.")}
    assert trained
    exported_file = load_item_embeddings(str(out / "adapter" / ITEM_TOKENS_FILE))
    items, exported = exported_file.items, exported_file.extra
    assert exported.keys() == trained.keys() and all(torch.equal(exported[k], trained[k]) for k in trained)
    assert items == load_item_embeddings(path).items

    # the exported folder alone (adapter + item tokens) scores as the checkpoint does
    rows, other = predict_both_ways(tiny_backbone, ml, out, on)
    assert rows and [r["index"] for r in rows] == list(range(len(rows)))
    assert max(abs(a["p_yes"] - b["p_yes"]) for a, b in zip(rows, other, strict=True)) < 1e-5
    capsys.readouterr()
    with pytest.raises(SystemExit):  # the same checkpoint without its item tokens: refused
        main(["predict", *run_args(tiny_backbone, ml, out), "--ckpt_path=best"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "trained with collaborative item tokens" in err


def test_served_rows_score_as_predict(tiny_backbone, log):
    from tallrec_pl.data.logs import read_log
    from tallrec_pl.serve.api import PromptBuilder
    from tallrec_pl.serve.server import score_requests

    ml, path = log
    dm = data(RankDataModule, ml, tiny_backbone, path, negatives=3)
    dm.setup()
    m = module(tiny_backbone, path)
    by_index = predicted(m, dm)
    groups: dict[int, list[Sample]] = {}
    for s in dm.build_samples()["test"]:
        groups.setdefault(s.meta["group"], []).append(s)
    requests = [
        {
            "history": [
                {"item": {"id": i}, "liked": ok} for i, (_, ok) in zip(g[0].meta["history"], g[0].history, strict=True)
            ],
            "candidates": [{"id": s.meta["item"]} for s in g],
        }
        for g in groups.values()
    ]
    builder = PromptBuilder(
        dm.tokenizer,
        dm.max_length,
        read_log(str(ml)).item_fields,
        dm.item_text,
        dm.domain,
        dm.profile,
        "the test log",
        50,
        20,
        item_rows=dm.item_rows,
        item_token=dm.item_token,
    )
    rows = [builder.build(r) for r in requests]
    flat = [r for req in rows for r in req]

    def prompt(r):  # a request's answer slot is "Yes." whatever the label: compare the prompts
        return r["input_ids"][: r["prompt_len"]], r["item_positions"], r["item_rows"]

    assert [prompt(r) for r in flat] == [prompt(r) for r in dm.encoded["test"]]
    with torch.no_grad():
        served = score_requests(m, Collator(dm.tokenizer.pad_token_id), rows, 4, "cpu")
    got = [p for req in served for p in req]
    assert max(abs(a - by_index[i]) for i, a in enumerate(got)) < 1e-5
    # a title is text only; an id with a row gets its token
    first = requests[0]["history"][0]["item"]["id"]
    title_row, id_row = builder.build(
        {"history": [{"item": {"id": first}, "liked": True}], "candidates": ["Some Title (2000)", {"id": first}]}
    )
    assert title_row["item_rows"] == [*dm.item_rows[first]] and id_row["item_rows"] == [*dm.item_rows[first]] * 2


def test_train_on_inputs_never_teaches_the_placeholder(tiny_backbone, log):
    ml, path = log
    dm = data(RecDataModule, ml, tiny_backbone, path, train_on_inputs=True)
    dm.setup()
    r = dm.encoded["train"][0]
    assert r["item_positions"] and all(r["labels"][p] == -100 for p in r["item_positions"])
    others = [p for p in range(r["prompt_len"]) if p not in r["item_positions"]]
    assert all(r["labels"][p] == r["input_ids"][p] for p in others)  # the rest of the prompt is still a label


def test_projector_stays_float32_under_a_bfloat16_default_and_saves_the_original_vectors(log, tmp_path):
    from tallrec_pl.model.collab import ItemTokens

    _, path = log
    loaded = load_item_embeddings(path)
    items, vectors = loaded.items, loaded.vectors
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # as Lightning builds the model under bf16-true
    try:
        tokens = ItemTokens(items, vectors, hidden=16)
    finally:
        torch.set_default_dtype(default)
    assert {p.dtype for p in tokens.parameters()} == {torch.float32}
    tokens.match_scale(1.0)
    tokens.to(torch.bfloat16)  # what Lightning's precision plugin does to the module afterwards
    assert tokens(torch.tensor([0, 1])).shape == (2, 16)
    tokens.save(str(tmp_path / "out.safetensors"))
    out = load_item_embeddings(str(tmp_path / "out.safetensors"))
    saved_items, saved = out.items, out.vectors
    assert saved_items == items and torch.equal(saved, vectors)  # not the bfloat16-rounded copy
