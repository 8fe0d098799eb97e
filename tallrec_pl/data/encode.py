"""Text to token ids: prompt + answer + EOS, loss labels, and the answer position.

The tokenizer enters the pipeline here and nowhere before. No token id is written as a
number: the Yes / No ids and EOS come from the tokenizer at run time.
"""

from __future__ import annotations

from tallrec_pl.data import record
from tallrec_pl.data.prompts import ALPACA_NO_INPUT, ALPACA_WITH_INPUT, Sample
from tallrec_pl.errors import TallrecError

IGNORE = -100  # the label value torch's cross-entropy skips


def answer_token_ids(tokenizer) -> tuple[int, int]:
    """The first token of ``Yes.`` and of ``No.`` as they follow ``### Response:\\n``."""
    stub = ALPACA_NO_INPUT.format(instruction="Answer.")
    base = tokenizer(stub)["input_ids"]
    firsts = []
    for answer in ("Yes.", "No."):
        ids = tokenizer(stub + answer)["input_ids"]
        if ids[: len(base)] != base or len(ids) <= len(base):
            raise TallrecError(
                f"tokenizer {tokenizer.name_or_path}: the prompt's tokens change when {answer!r} follows them",
                "use a tokenizer that splits the answer from '### Response:\\n' (LLaMA-family tokenizers do)",
            )
        firsts.append(ids[len(base)])
    if firsts[0] == firsts[1]:
        raise TallrecError(
            f"tokenizer {tokenizer.name_or_path}: 'Yes.' and 'No.' start with the same token ({firsts[0]})",
            "p(Yes) needs two distinct first tokens; use another tokenizer",
        )
    return firsts[0], firsts[1]


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts)["input_ids"] if texts else []


def encode_samples(
    samples: list[Sample],
    tokenizer,
    max_length: int,
    train_on_inputs: bool = False,
    source: str = "",
    batch: int = 512,
    skip_unfit: bool = False,
    item_token: str = "",
    offset: int = 0,
) -> list[dict]:
    """Encode ``samples`` in order; over-long ones lose their oldest history items first.

    Each result holds ``input_ids``, ``labels`` (IGNORE on the prompt unless
    ``train_on_inputs``), ``prompt_len`` (the answer starts there) and the fields of
    :mod:`tallrec_pl.data.record` (all but ``index``, which the caller sets). With
    ``skip_unfit``, samples that cannot fit even shortened are left out (instruction data)
    instead of stopping with an error. With ``item_token`` (collaborative item tokens, see
    ``item_token_of``) the prompt carries that token after each item with an embedding row, and
    the result also holds ``item_positions`` and ``item_rows``: where those tokens are, and their rows.
    ``offset``: the split index of the first sample (errors name a sample by it).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise TallrecError(f"tokenizer {tokenizer.name_or_path} has no EOS token", "use a tokenizer with an eos_token")
    out: list[dict] = []
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        prompts = [s.prompt(item_token) for s in chunk]
        p_ids = _tokenize(tokenizer, prompts)
        f_ids = _tokenize(tokenizer, [p + s.output for p, s in zip(prompts, chunk, strict=False)])
        for k, sample in enumerate(chunk):
            p, f = p_ids[k], f_ids[k]
            if len(f) + 1 > max_length:
                try:
                    p, f = _shorten(sample, tokenizer, max_length, f"{source} sample {offset + start + k}", item_token)
                except TallrecError:
                    if skip_unfit:
                        continue
                    raise
            out.append(_record(p, f, eos, sample, train_on_inputs, f"{source} sample {offset + start + k}"))
            if item_token:
                out[-1].update(
                    _item_tokens(
                        p,
                        sample,
                        tokenizer.convert_tokens_to_ids(item_token),
                        item_token,
                        f"{source} sample {offset + start + k}",
                    )
                )
                for i in out[-1]["item_positions"]:  # train_on_inputs: never teach the model to write the placeholder
                    out[-1]["labels"][i] = IGNORE
    return out


def item_token_of(tokenizer) -> str:
    """The placeholder of collaborative item tokens: a special token of ``tokenizer`` that is not
    BOS, EOS or padding (its embedding is replaced, so which one does not matter). Special tokens
    are never merged with their neighbours, so it is one token id wherever it stands; checked here."""
    roles = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
    extra = [t.content for i, t in sorted(tokenizer.added_tokens_decoder.items()) if t.special and i not in roles]
    for token in [*extra, tokenizer.unk_token, tokenizer.pad_token]:  # unknown and padding only as a last resort
        tid = tokenizer.convert_tokens_to_ids(token) if token else None
        if tid is None or tid in (tokenizer.bos_token_id, tokenizer.eos_token_id) or token in ALPACA_WITH_INPUT:
            continue
        probe = tokenizer(f'x "A" {token}, "B" {token}?', add_special_tokens=False)["input_ids"]
        if probe.count(tid) == 2 and tokenizer(token, add_special_tokens=False)["input_ids"] == [tid]:
            return token
    raise TallrecError(
        f"tokenizer {tokenizer.name_or_path} has no special token to spare for item tokens (besides BOS, EOS and "
        "padding)",
        "drop model.item_embeddings, or use a backbone whose tokenizer has more special tokens",
    )


def _item_tokens(p: list[int], sample: Sample, token_id: int, token: str, where: str) -> dict:
    positions = [i for i, t in enumerate(p) if t == token_id]
    rows = sample.item_rows()
    if len(positions) != len(rows):
        raise TallrecError(
            f"{where}: the prompt holds {len(positions)} item tokens {token!r} but its items have {len(rows)} "
            "embedding rows (an item text contains that token)",
            f"remove {token!r} from the item table's text",
        )
    return {"item_positions": positions, "item_rows": rows}


def _record(p: list[int], f: list[int], eos: int, sample: Sample, train_on_inputs: bool, where: str) -> dict:
    if f[: len(p)] != p:
        raise TallrecError(
            f"{where}: the tokenizer merges the prompt's last token with the answer", "use a LLaMA-family tokenizer"
        )
    ids = f + [eos]
    labels = list(ids) if train_on_inputs else [IGNORE] * len(p) + ids[len(p) :]
    return {"input_ids": ids, "labels": labels, "prompt_len": len(p), **record.from_sample(sample)}


def _shorten(
    sample: Sample, tokenizer, max_length: int, where: str, item_token: str = ""
) -> tuple[list[int], list[int]]:
    """Drop history (or cut the input text) until prompt + answer + EOS fit ``max_length``."""
    while True:
        prompt = sample.prompt(item_token)
        f = tokenizer(prompt + sample.output)["input_ids"]
        overflow = len(f) + 1 - max_length
        if overflow <= 0:
            return tokenizer(prompt)["input_ids"], f
        if sample.history is not None:
            if sample.drop_oldest():
                continue
            raise TallrecError(
                f"{where} needs {len(f) + 1} tokens even with no history, more than data.max_length={max_length}",
                "raise data.max_length",
            )
        in_ids = tokenizer(sample.input, add_special_tokens=False)["input_ids"]
        if not in_ids:
            raise TallrecError(
                f"{where} needs {len(f) + 1} tokens with an empty input, more than data.max_length={max_length}",
                "raise data.max_length",
            )
        sample.input = tokenizer.decode(in_ids[: max(0, len(in_ids) - overflow)])
