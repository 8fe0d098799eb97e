"""``python -m tallrec_pl item-embeddings --output F [--source S]``: an item-embeddings file of the
configured log, for ``--model.item_embeddings F`` (or a list of such files):

- ``als`` (default): collaborative vectors, ALS on the whole train split's interactions;
- ``genre_year``: the item table's genres and release year (no interactions read);
- ``kg``: TransE entity vectors of the log's knowledge graph (RecBole ``<name>.kg`` and
  ``<name>.link`` beside its ``.inter``, or ``--kg`` / ``--link``).

Vectors made elsewhere (image or text encoders) are written with
``tallrec_pl.items.file.save_item_embeddings`` (README, "Item tokens")."""

from __future__ import annotations

from pathlib import Path

from tallrec_pl.commands.config import data_parser, parse_data, rec_data
from tallrec_pl.errors import TallrecError
from tallrec_pl.status import status

SOURCES = ("als", "genre_year", "kg")
OPTIONS = {  # flag -> add_argument's keywords
    "--output": {"required": True, "help": "the .safetensors file to write"},
    "--source": {"default": "als", "help": f"what the vectors come from: {', '.join(SOURCES)}"},
    "--factors": {"type": int, "default": None, "help": "dimensions of an item vector (ALS 64, kg 32)"},
    "--iterations": {"type": int, "default": 15, "help": "ALS sweeps"},
    "--regularization": {"type": float, "default": 0.01, "help": "ALS L2 regularization"},
    "--epochs": {"type": int, "default": 30, "help": "TransE epochs over the graph (kg)"},
    "--kg": {"help": "the knowledge graph (RecBole .kg: head, relation, tail); default beside the log"},
    "--link": {"help": "item -> entity links (RecBole .link); default beside the log"},
}


def run(args: list[str]) -> None:
    from tallrec_pl.items.file import save_item_embeddings

    parser = data_parser(
        "item-embeddings",
        "Write item vectors of the configured log for --model.item_embeddings: ALS on its whole train split "
        "(not the few-shot draw), its items' genres and year, or TransE on its knowledge graph.",
    )
    for flag, spec in OPTIONS.items():
        parser.add_argument(flag, **spec)
    opts, dm = parse_data(parser, args)
    if opts.source not in SOURCES:
        raise TallrecError(f"--source {opts.source!r} is not known", f"use one of {', '.join(SOURCES)}")
    dm = rec_data(dm, "item embeddings are")
    if dm.resolved_format() == "tallrec-json":
        raise TallrecError(
            "item embeddings are made from the items of a log, and TALLRec JSON has no item ids",
            "point data.path at a log (ml-100k, recbole, csv, parquet)",
        )
    items, vectors, how = _vectors(opts, dm)
    save_item_embeddings(opts.output, items, vectors, source=opts.source)
    status(
        f"{len(items)} item vectors ({vectors.shape[1]} dims, {how}) written to {opts.output}; "
        f"fit with --model.item_embeddings {opts.output}"
    )


def _vectors(opts, dm):
    """(item ids, float32 tensor [items, d], a few words on how) for ``opts.source``."""
    import torch

    if opts.source == "als":
        from tallrec_pl.items.als import fit_item_embeddings

        pairs = dm.train_interactions()
        factors = opts.factors or 64
        items, vectors = fit_item_embeddings(pairs, factors, dm.seed, opts.iterations, opts.regularization)
        return items, vectors, f"ALS on {len(pairs)} train interactions"
    from tallrec_pl.items import content

    if opts.source == "genre_year":
        items, vectors = content.genre_year(dm.item_table())
        return items, torch.from_numpy(vectors), "genres and release year of the item table"
    stem = Path(dm.log_file()).with_suffix("")
    kg, link = opts.kg or f"{stem}.kg", opts.link or f"{stem}.link"
    items, vectors = content.kg_transe(kg, link, dim=opts.factors or 32, epochs=opts.epochs, seed=dm.seed)
    return items, torch.from_numpy(vectors), f"TransE on {kg}"
