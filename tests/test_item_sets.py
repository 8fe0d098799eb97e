"""Several item-embeddings files at once (``model.item_embeddings`` as a list), token-only prompts
through the data modules, and ``item-embeddings --source`` (tiny random LLaMA, synthetic logs and
synthetic vectors standing in for image embeddings made elsewhere)."""

from __future__ import annotations

import pytest
import torch
from helpers import item_token_data as data
from helpers import predict_both_ways, randomize_lora_b, run_args, the_error, with_new_items, write_ml100k

from tallrec_pl.checkpoints import load_lightning_state
from tallrec_pl.commands import main
from tallrec_pl.data import RankDataModule, RecDataModule
from tallrec_pl.errors import TallrecError
from tallrec_pl.items.file import item_tokens_file, load_item_embeddings, load_item_rows, save_item_embeddings
from tallrec_pl.model.module import TALLRecModule

DATA = ["--data.history_len=4", "--data.init_args.split_sizes=[0.6,0.2,0.2]"]
IMAGE_ITEMS = [str(i) for i in range(1, 24, 2)]  # every other item, cold items 21 and 23 among them


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A log with cold items, its ALS file, and a synthetic "image" file of another width that holds
    only every other item (two of the cold ones too)."""
    tmp = tmp_path_factory.mktemp("sets")
    ml = with_new_items(write_ml100k(tmp / "ml"))
    als = str(tmp / "als.safetensors")
    main(["item-embeddings", f"--data.path={ml}", *DATA, f"--output={als}", "--factors=8"])
    image = str(tmp / "image.safetensors")
    gen = torch.Generator().manual_seed(0)
    save_item_embeddings(image, IMAGE_ITEMS, torch.randn(len(IMAGE_ITEMS), 12, generator=gen), source="clip")
    return ml, als, image


def module(backbone, embeddings, seed=0) -> TALLRecModule:
    torch.manual_seed(seed)
    m = TALLRecModule(backbone=backbone, dtype="float32", item_embeddings=embeddings)
    m.configure_model()
    randomize_lora_b(m)
    return m.eval()


def builder(dm, ml):
    """serve's prompt builder of data module ``dm`` (set up), with the item table of log ``ml``."""
    from tallrec_pl.data.logs import read_log
    from tallrec_pl.serve.api import PromptBuilder

    setup = dm.prompt_builder().as_kwargs()
    return PromptBuilder(**{**setup, "item_fields": read_log(str(ml)).item_fields}, max_candidates=50, max_history=20)


def test_rows_stack_the_files_in_order_and_items_get_the_tokens_they_have(files, tmp_path):
    _, als, image = files
    als_items = load_item_embeddings(als).items
    rows = load_item_rows([als, image])
    n = len(als_items)
    for item in {*als_items, *IMAGE_ITEMS}:
        want = ((als_items.index(item),) if item in als_items else ()) + (
            (n + IMAGE_ITEMS.index(item),) if item in IMAGE_ITEMS else ()
        )
        assert rows[item] == want
    assert rows["21"] == (n + IMAGE_ITEMS.index("21"),) and "22" not in rows  # cold: image only, or nothing
    with pytest.raises(TallrecError, match="lists .* twice"):
        RecDataModule(path="x", item_embeddings=[als, als])
    twice = str(tmp_path / "twice.safetensors")
    save_item_embeddings(twice, ["1", "2", "1"], torch.zeros(3, 2))
    with pytest.raises(TallrecError, match="lists item 1 twice"):
        load_item_rows([twice])


def test_two_files_train_each_projector_and_route_each_row_to_its_file(tiny_backbone, files):
    ml, als, image = files
    dm = data(RecDataModule, ml, tiny_backbone, [als, image], batch_size=8)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    n = len(load_item_embeddings(als).items)
    assert (batch["item_rows"] >= n).any() and ((batch["item_rows"] >= 0) & (batch["item_rows"] < n)).any()
    m = module(tiny_backbone, [als, image]).train()
    loss, _ = m(batch)
    loss.backward()
    for part in m.item_tokens.parts:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    only_first = module(tiny_backbone, [als, image]).train()  # a batch without rows of the second file:
    only_first.item_tokens(torch.tensor([0, 1])).sum().backward()  # its projector is still in the graph (DDP)
    assert all(p.grad is not None for p in only_first.item_tokens.parts[1].parameters())
    rows = torch.tensor([0, n, n + 3, 2])
    with torch.no_grad():
        got = m.item_tokens(rows)
        first, second = m.item_tokens.parts
        torch.testing.assert_close(got[[0, 3]], first(rows[[0, 3]]))
        torch.testing.assert_close(got[[1, 2]], second(rows[[1, 2]] - n))


def test_two_file_checkpoint_round_trip_and_order_matters(tiny_backbone, files, tmp_path):
    ml, als, image = files
    a = module(tiny_backbone, [als, image])
    with torch.no_grad():
        a.item_tokens.parts[1].proj[0].weight.mul_(1.5)
    ckpt = {"state_dict": a.state_dict(), "hyper_parameters": dict(a.hparams)}
    a.on_save_checkpoint(ckpt)
    kept = {k for k in ckpt["state_dict"] if k.startswith("item_tokens.")}
    assert {k.split(".")[2] for k in kept} == {"0", "1"} and len(ckpt["item_embeddings"]["files"]) == 2
    torch.save(ckpt, tmp_path / "a.ckpt")
    ckpt = load_lightning_state(str(tmp_path / "a.ckpt"))
    b = module(tiny_backbone, [als, image], seed=1)
    b.on_load_checkpoint(ckpt)
    b.load_state_dict(ckpt["state_dict"], strict=b.strict_loading)
    for pa, pb in zip(a.item_tokens.parameters(), b.item_tokens.parameters(), strict=True):
        assert torch.equal(pa, pb)
    with pytest.raises(TallrecError, match="trained with other item embeddings"):
        module(tiny_backbone, [image, als]).on_load_checkpoint(ckpt)
    with pytest.raises(TallrecError, match="trained with other item embeddings"):
        module(tiny_backbone, als).on_load_checkpoint(ckpt)


def test_a_one_file_checkpoint_of_the_old_names_still_loads(tiny_backbone, files):
    _, als, _ = files
    a = module(tiny_backbone, als)
    ckpt = {"state_dict": a.state_dict(), "hyper_parameters": dict(a.hparams)}
    a.on_save_checkpoint(ckpt)
    ckpt["state_dict"] = {k.replace("item_tokens.parts.0.", "item_tokens."): v for k, v in ckpt["state_dict"].items()}
    assert any(k.startswith("item_tokens.proj.") for k in ckpt["state_dict"])
    plain = module(tiny_backbone, als, seed=1)  # the module's own load hook renames them too
    plain.load_state_dict(dict(ckpt["state_dict"]), strict=False)
    b = module(tiny_backbone, als, seed=1)
    b.on_load_checkpoint(ckpt)
    b.load_state_dict(ckpt["state_dict"], strict=b.strict_loading)
    for pa, pb, pc in zip(
        a.item_tokens.parameters(), b.item_tokens.parameters(), plain.item_tokens.parameters(), strict=True
    ):
        assert torch.equal(pa, pb) and torch.equal(pa, pc)


def test_fit_export_predict_and_serve_rows_with_two_files(tiny_backbone, files, tmp_path):
    ml, als, image = files
    out = tmp_path / "run"
    on = f"--model.item_embeddings=[{als},{image}]"
    main(["fit", *run_args(tiny_backbone, ml, out), on])
    for k, path in enumerate((als, image)):
        exported = load_item_embeddings(str(out / "adapter" / item_tokens_file(k)))
        assert exported.items == load_item_embeddings(path).items and exported.extra
    # the exported folder alone (adapter + item tokens) scores as the checkpoint does
    rows, other = predict_both_ways(tiny_backbone, ml, out, on)
    assert rows and max(abs(a["p_yes"] - b["p_yes"]) for a, b in zip(rows, other, strict=True)) < 1e-5
    # a served request of ids gets one token per file that holds the item, as predict's rows do
    dm = data(RecDataModule, ml, tiny_backbone, [als, image])
    dm.setup()
    served = builder(dm, ml)
    both = next(i for i in IMAGE_ITEMS if len(dm.item_rows.get(i, ())) == 2)
    (row,) = served.build({"history": [{"item": {"id": both}, "liked": True}], "candidates": [{"id": "21"}]})
    assert row["item_rows"] == [*dm.item_rows[both], *dm.item_rows["21"]]


# --- token-only prompts -------------------------------------------------------------------------


def test_token_only_prompts_are_short_and_cold_items_keep_their_titles(tiny_backbone, files):
    ml, als, image = files
    hybrid = data(RankDataModule, ml, tiny_backbone, als, negatives=3)
    short = data(RankDataModule, ml, tiny_backbone, als, negatives=3, token_only=True)
    hybrid.setup()
    short.setup()
    for h, s in zip(hybrid.encoded["test"], short.encoded["test"], strict=True):
        assert s["item_rows"] == h["item_rows"] and s["label"] == h["label"]
        assert len(s["input_ids"]) < len(h["input_ids"])
    samples = short.build_samples()["test"]
    cold = [s for s in samples if s.meta["item"] in ("21", "22", "23")]
    assert cold and all(f'"{s.target}"?' in s.prompt(short.item_token) for s in cold)
    warm = next(s for s in samples if s.target_row)
    assert warm.target not in warm.prompt(short.item_token)  # no title is written out for an item with a vector
    m = module(tiny_backbone, als)
    with torch.no_grad():
        scores = [m.predict_step(b, 0)["p_yes"] for b in short.test_dataloader()]
    assert sum(len(s) for s in scores) == len(samples)
    # serve writes the same short prompts for a request of ids
    first = [s for s in samples if s.meta["group"] == samples[0].meta["group"]]
    past = zip(first[0].meta["history"], first[0].history, strict=True)
    request = {
        "history": [{"item": {"id": i}, "liked": ok} for i, (_, ok) in past],
        "candidates": [{"id": s.meta["item"]} for s in first],
    }
    served = builder(short, ml).build(request)
    for got, want in zip(served, short.encoded["test"][: len(first)], strict=True):
        assert got["input_ids"][: got["prompt_len"]] == want["input_ids"][: want["prompt_len"]]
        assert got["item_rows"] == want["item_rows"]
    # two files: items in the image file alone (21, 23) read as their one token
    both = data(RankDataModule, ml, tiny_backbone, [als, image], negatives=3, token_only=True)
    both.setup()
    only_image = [s for s in both.build_samples()["test"] if s.meta["item"] in ("21", "23")]
    assert only_image and all(s.target not in s.prompt(both.item_token) for s in only_image)


def test_token_only_without_item_embeddings_is_one_line(tiny_backbone, files, tmp_path, capsys):
    ml, _, _ = files
    with pytest.raises(SystemExit) as exc:
        main(["fit", *run_args(tiny_backbone, ml, tmp_path / "run"), "--data.init_args.token_only=true"])
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tallrec_pl: error:")]
    assert len(lines) == 1 and "data.token_only" in lines[0] and "model.item_embeddings" in lines[0]


# --- item-embeddings --source -------------------------------------------------------------------


def test_source_genre_year_and_kg_write_named_files(files, tmp_path):
    ml, _, _ = files
    out = tmp_path / "genre.safetensors"
    main(["item-embeddings", f"--data.path={ml}", *DATA, f"--output={out}", "--source=genre_year"])
    genre = load_item_embeddings(str(out))
    assert genre.source == "genre_year" and "22" in genre.items  # content vectors cover cold items too
    kg, link = tmp_path / "x.kg", tmp_path / "x.link"
    kg.write_text(
        "head_id:token\trelation_id:token\ttail_id:token\n"
        + "".join(f"m.{i}\tfilm.genre\tg.{i % 3}\n" for i in range(1, 24))
    )
    link.write_text("item_id:token\tentity_id:token\n" + "".join(f"{i}\tm.{i}\n" for i in range(1, 24)))
    out = tmp_path / "kg.safetensors"
    main(
        [
            "item-embeddings",
            f"--data.path={ml}",
            *DATA,
            f"--output={out}",
            "--source=kg",
            f"--kg={kg}",
            f"--link={link}",
            "--factors=6",
            "--epochs=2",
        ]
    )
    graph = load_item_embeddings(str(out))
    assert graph.source == "kg" and graph.vectors.shape == (23, 6)


def test_unknown_source_is_one_line(files, tmp_path, capsys):
    ml, _, _ = files
    with pytest.raises(SystemExit) as exc:
        main(["item-embeddings", f"--data.path={ml}", f"--output={tmp_path / 'e.safetensors'}", "--source=clip"])
    assert exc.value.code == 2
    err = the_error(capsys.readouterr().err)
    assert "--source 'clip'" in err and "genre_year" in err
