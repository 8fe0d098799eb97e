"""``python -m tallrec_pl item-embeddings --output F``: ALS item vectors from the whole train split
of the configured log, for ``--model.item_embeddings F``."""

from __future__ import annotations

from tallrec_pl.commands.config import data_parser, parse_data, rec_data
from tallrec_pl.status import status


def run(args: list[str]) -> None:
    from tallrec_pl.items.als import SOURCE, fit_item_embeddings
    from tallrec_pl.items.file import save_item_embeddings

    parser = data_parser(
        "item-embeddings",
        "Fit collaborative item embeddings (ALS, implicit) on the train split of the configured log "
        "(its whole train split, not the few-shot draw), for --model.item_embeddings.",
    )
    parser.add_argument("--output", required=True, help="the .safetensors file to write")
    parser.add_argument("--factors", type=int, default=64, help="dimensions of an item vector")
    parser.add_argument("--iterations", type=int, default=15, help="ALS sweeps")
    parser.add_argument("--regularization", type=float, default=0.01, help="ALS L2 regularization")
    opts, dm = parse_data(parser, args)
    dm = rec_data(dm, "item embeddings are")
    pairs = dm.train_interactions()
    items, vectors = fit_item_embeddings(pairs, opts.factors, dm.seed, opts.iterations, opts.regularization)
    save_item_embeddings(opts.output, items, vectors, source=SOURCE)
    status(
        f"{len(items)} item vectors ({opts.factors} dims, ALS on {len(pairs)} train interactions) "
        f"written to {opts.output}; fit with --model.item_embeddings {opts.output}"
    )
