"""tallrec_pl/data/encode.py: labels cover the answer only, truncation drops the oldest history, Yes / No ids."""

from __future__ import annotations

import pytest

from tallrec_pl.data.encode import IGNORE, answer_token_ids, encode_samples
from tallrec_pl.data.prompts import Sample
from tallrec_pl.errors import TallrecError


@pytest.fixture(scope="module")
def tokenizer(tiny_backbone):
    from tallrec_pl.hub import load_tokenizer

    return load_tokenizer(tiny_backbone)


def _sample(n_history: int = 6) -> Sample:
    history = [(f'"Movie {i} (1990)"', i % 2 == 0) for i in range(n_history)]
    return Sample("Given the user's preference ...", "Yes.", history=history, target="Target (2000)")


def test_labels_cover_the_answer_and_eos_only(tokenizer):
    (rec,) = encode_samples([_sample()], tokenizer, max_length=512)
    p = rec["prompt_len"]
    assert rec["labels"][:p] == [IGNORE] * p
    assert rec["labels"][p:] == rec["input_ids"][p:]
    assert rec["input_ids"][-1] == tokenizer.eos_token_id
    assert rec["input_ids"][:p] == tokenizer(_sample().prompt())["input_ids"]
    assert rec["input_ids"][p] == answer_token_ids(tokenizer)[0]
    assert rec["label"] == 1
    (full,) = encode_samples([_sample()], tokenizer, max_length=512, train_on_inputs=True)
    assert full["labels"] == full["input_ids"]


def test_truncation_drops_oldest_history_first(tokenizer):
    sample = _sample(8)
    (whole,) = encode_samples([_sample(8)], tokenizer, max_length=512)
    (cut,) = encode_samples([sample], tokenizer, max_length=len(whole["input_ids"]) - 5)
    assert len(cut["input_ids"]) <= len(whole["input_ids"]) - 5
    kept = [t for t, _ in sample.history]
    assert kept == [t for t, _ in _sample(8).history][-len(kept) :]  # a suffix: the oldest went first
    assert "Target (2000)" in tokenizer.decode(cut["input_ids"])
    assert cut["labels"][cut["prompt_len"] :] == whole["labels"][whole["prompt_len"] :]


def test_sample_that_cannot_fit_is_named(tokenizer):
    with pytest.raises(TallrecError, match="sample 0 needs .* even with no history"):
        encode_samples([_sample(3)], tokenizer, max_length=20, source="x")


def test_tokenizer_without_distinct_yes_no_is_refused():
    class Chars:  # every answer starts with the same token
        name_or_path = "chars"

        def __call__(self, text):
            return {"input_ids": [0 if c in "YN" else ord(c) for c in text]}

    with pytest.raises(TallrecError, match="start with the same token"):
        answer_token_ids(Chars())
