"""``python -m tallrec_pl retriever --output F``: SASRec (RecBole's model class) fit on the train
split's next items, for ``--data.retriever F``; ``--item_embeddings F2`` also writes its item table
as an item-embeddings file (LLaRA's hybrid tokens)."""

from __future__ import annotations

from dataclasses import fields

from tallrec_pl.commands.config import data_parser, parse_data, rec_data
from tallrec_pl.status import status


def run(args: list[str]) -> None:
    from tallrec_pl.items.file import save_item_embeddings
    from tallrec_pl.retrieval.sasrec import Retriever

    parser = data_parser(
        "retriever",
        "Fit a SASRec retriever on the train split of the configured log (every window's next item), keep the "
        "epoch with the lowest valid next-item loss, and save it for --data.retriever.",
    )
    parser.add_argument("--output", required=True, help="the retriever file to write")
    parser.add_argument("--item_embeddings", help="also write SASRec's item table here (for model.item_embeddings)")
    add_options(parser)
    opts, dm = parse_data(parser, args)
    dm = rec_data(dm, "a retriever is")
    train, valid = dm.next_items("train"), dm.next_items("valid")
    retriever = Retriever.fit(dm.catalogue(), train, valid, settings(opts, dm), log=status)
    retriever.save(opts.output)
    status(
        f"retriever ({len(retriever.items)} items) written to {opts.output}; use it with --data.retriever {opts.output}"
    )
    if opts.item_embeddings:
        save_item_embeddings(opts.item_embeddings, *retriever.item_vectors(), source="sasrec")
        status(f"SASRec item vectors written to {opts.item_embeddings}")


def add_options(parser) -> None:
    """SASRec's settings as options (null: RetrieverOptions' default); data.history_len is the windows' own."""
    from tallrec_pl.retrieval.sasrec import RetrieverOptions

    for f in fields(RetrieverOptions):
        if f.name != "history_len":
            kind = {"int": int, "float": float}[f.type]  # the dataclass's annotations are strings
            parser.add_argument(f"--{f.name}", type=kind, default=None, help=f"SASRec / training ({f.default})")


def settings(opts, dm):
    """The options given, the data's seed unless --seed, and the windows' history length."""
    from tallrec_pl.retrieval.sasrec import RetrieverOptions

    given = {f.name: getattr(opts, f.name, None) for f in fields(RetrieverOptions)}
    chosen = {k: v for k, v in given.items() if v is not None}
    chosen.setdefault("seed", dm.seed)
    return RetrieverOptions(**{**chosen, "history_len": dm.history_len})
