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

    from tallrec_pl.data.datamodule import RecDataModule

    dm = RecDataModule(path=str(write_ml100k(tmp_path_factory.mktemp("ml") / "ml")), tokenizer=tiny_backbone,
                       history_len=4, split_sizes=[0.6, 0.2, 0.2], cache_dir=None)
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
    assert len(v.history) < len(sample.history) and v.history == sample.history[-len(v.history):]
    with torch.no_grad():
        ex = explain_variants(module, v)
    kept = copy.deepcopy(sample)
    kept.history = list(v.history)
    for e in ex.evidence:
        assert abs(e.effect - (ex.p_yes - alone(module, without(kept, e.position), tok, short))) < 1e-5


def test_a_ready_prompt_cannot_be_explained(rec):
    from tallrec_pl.data.prompts import Sample
    from tallrec_pl.errors import TallrecError

    module, _, tok = rec
    with pytest.raises(TallrecError, match="need a sample with a history"):
        build_variants(Sample("Say hi.", "Yes.", input="x"), tok, 512)
