"""TAPT sequence packing and the sparse MLM head, on the real MiniLM and 20 Newsgroups texts.

Packing must keep every token once (only the last partial block is dropped), never turn a special
token into a target, survive a resume, and still train; the sparse head must give the dense head's
loss and gradients.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch

from tests.conftest import skip_or_fail
from tests.worker.ml.tiny import make_corpus
from worker.ml.masking import IGNORE, encode_with_words, pack_blocks
from worker.ml.mlm_loss import masked_lm_loss_sum
from worker.ml.progress import RecordingReporter
from worker.ml.tapt import TaptConfig, _PackedCorpus, _Tapt, run_tapt, training_corpus

pytestmark = pytest.mark.filterwarnings("ignore:TAPT lr")


@pytest.fixture(scope="module")
def minilm() -> str:
    from worker.ml.models import offline_default_path

    try:
        path = offline_default_path()
    except Exception as exc:  # noqa: BLE001 - the offline model is an optional install
        skip_or_fail(f"offline MiniLM not installed: {exc}")
    if not Path(path).is_dir():
        skip_or_fail(f"offline MiniLM not installed at {path}")
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(minilm):
    from worker.ml.models import load_tokenizer

    return load_tokenizer(minilm)


@pytest.fixture(scope="module")
def news() -> list[str]:
    from worker.simulate.benchmark_data import load_dataset

    try:
        texts, _ = load_dataset("20ng", "train")
    except Exception as exc:  # noqa: BLE001 - the data set is optional here
        skip_or_fail(f"20 Newsgroups not available: {exc}")
    return [t for t in texts if t.strip()][:120]


def test_pack_blocks_keeps_every_token_once_in_order():
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(5, 100, size=n)) for n in (3, 17, 1, 40, 9, 0, 25)]
    words = [list(range(len(row))) for row in ids]
    order = [6, 2, 0, 4, 1, 3, 5]
    blocks, block_words = pack_blocks(ids, words, order, 8)
    stream = [token for i in order for token in ids[i]]
    assert blocks.shape == (len(stream) // 8, 8) and blocks.dtype == np.int64
    assert blocks.flatten().tolist() == stream[: blocks.size]  # all but the last partial block
    assert len(stream) - blocks.size < 8
    assert block_words.shape == blocks.shape and (block_words >= 0).all()
    assert (block_words.min(axis=1) == 0).all()  # renumbered per block
    # whole words stay apart across texts: word ids never fall back within a block
    assert (np.diff(block_words, axis=1) >= 0).all()


def test_pack_blocks_short_corpus_gives_one_short_block():
    ids, word_ids = [[1, 7, 2], [1, 8, 9, 2]], [[-1, 0, -1], [-1, 0, 1, -1]]
    blocks, words = pack_blocks(ids, word_ids, [1, 0], 32)
    assert blocks.tolist() == [[1, 8, 9, 2, 1, 7, 2]]
    assert words.tolist() == [[-1, 0, 1, -1, -1, 2, -1]]  # the second text's word is distinct
    empty, _ = pack_blocks([[], []], [[], []], [0, 1], 4)
    assert empty.shape == (0, 4)


def test_packed_corpus_blocks_cover_the_texts(tokenizer, news):
    config = TaptConfig(batch_size=8, max_length=64, packing=True)
    corpus = training_corpus(tokenizer, news, config)
    assert isinstance(corpus, _PackedCorpus)
    whole, _ = encode_with_words(tokenizer, news, None)
    assert max(len(row) for row in whole) > 64  # long texts are used beyond max_length
    seen: Counter[int] = Counter()
    for number in range(corpus.per_epoch):
        input_ids, attention, _ = corpus.micro_batch(number)
        assert input_ids.shape[1] == 64 and 0 < input_ids.shape[0] <= 8
        assert bool(attention.all())
        seen.update(input_ids.flatten().tolist())
    expected = Counter(token for row in whole for token in row)
    assert sum(seen.values()) == corpus.blocks_per_epoch * 64 == corpus.tokens // 64 * 64
    assert not seen - expected  # nothing invented
    assert sum((expected - seen).values()) < 64  # only the dropped remainder is missing
    # the next epoch re-packs in another order; any micro-batch is reproducible from its number
    again = training_corpus(tokenizer, news, config)
    assert torch.equal(again.micro_batch(corpus.per_epoch + 1)[0],
                       corpus.micro_batch(corpus.per_epoch + 1)[0])
    assert not torch.equal(corpus.micro_batch(0)[0], corpus.micro_batch(corpus.per_epoch)[0])


@pytest.mark.parametrize("whole_words", [False, True])
def test_masks_never_select_special_or_separator_tokens(minilm, tokenizer, news, whole_words):
    from worker.ml.models import load_masked_lm
    from worker.ml.runtime import make_precision

    config = TaptConfig(
        batch_size=8, max_length=64, whole_word_masking=whole_words, mlm_probability=0.3
    )
    model, new_head = load_masked_lm(minilm)
    run = _Tapt(model, tokenizer, config, make_precision(torch.device("cpu"), "fp32"), new_head)
    corpus = training_corpus(tokenizer, news, config)
    specials = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    n_separators = n_targets = n_maskable = 0
    for number in range(corpus.per_epoch):
        original = corpus.micro_batch(number)[0]
        inputs, mask, labels = run.masked(corpus.micro_batch(number), (0, 1, number))
        assert mask is None  # packed blocks carry no padding, so attention runs unmasked
        targets = labels != IGNORE
        is_special = torch.isin(original, specials)
        assert not (targets & is_special).any()
        assert torch.equal(inputs[is_special], original[is_special])  # separators untouched
        assert torch.equal(labels[targets], original[targets])
        n_separators += int((original == tokenizer.sep_token_id).sum())
        n_targets += int(targets.sum())
        n_maskable += int((~is_special).sum())
    assert n_separators > corpus.per_epoch  # blocks do hold several texts
    assert 0.2 < n_targets / n_maskable < 0.4


def test_sparse_head_gives_the_dense_loss_and_gradients(minilm, tokenizer, news):
    from worker.ml.models import load_masked_lm
    from worker.ml.runtime import make_precision

    config = TaptConfig(batch_size=4, max_length=48)
    model, new_head = load_masked_lm(minilm)
    model.eval()  # no dropout: both heads see the same hidden states
    run = _Tapt(model, tokenizer, config, make_precision(torch.device("cpu"), "fp32"), new_head)
    corpus = training_corpus(tokenizer, news, config)
    inputs, mask, labels = run.masked(corpus.micro_batch(0), (0, 1, 0))
    results = []
    for sparse in (True, False):
        model.zero_grad(set_to_none=True)
        loss, count = masked_lm_loss_sum(model, inputs, mask, labels, masked_only=sparse)
        (loss / count).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((float(loss.detach()), count, grads))
    (sparse_loss, n_sparse, sparse_grads), (dense_loss, n_dense, dense_grads) = results
    assert n_sparse == n_dense == int((labels != IGNORE).sum()) > 0
    assert sparse_loss == pytest.approx(dense_loss, rel=1e-5)
    assert sparse_grads.keys() == dense_grads.keys()
    for name, grad in dense_grads.items():
        # Norm-relative: a gradient summed over every position (token-type embeddings) differs
        # element-wise in float32 with the order of summation, not in substance.
        error = float((sparse_grads[name] - grad).norm())
        assert error <= 1e-4 * float(grad.norm()) + 1e-7, (name, error, float(grad.norm()))
    # an all-ones mask and no mask give the same loss (packed blocks pass None)
    with torch.no_grad():
        unmasked, _ = masked_lm_loss_sum(model, inputs, None, labels)
        ones, _ = masked_lm_loss_sum(model, inputs, torch.ones_like(inputs), labels)
    assert float(unmasked) == pytest.approx(float(ones), rel=1e-5)


def test_short_packed_tapt_run_lowers_the_mlm_loss(minilm, news, tmp_path):
    config = TaptConfig(
        max_steps=16, batch_size=8, max_length=32, eval_every=8, patience=3, lr=1e-4, seed=3
    )
    reporter = RecordingReporter()
    result = run_tapt(
        news[:100],
        base_model=minilm,
        out_dir=tmp_path / "tapt",
        config=config,
        heldout_texts=news[100:116],
        reporter=reporter,
    )
    record = json.loads((tmp_path / "tapt" / "tapt.json").read_text())
    assert record["layout"] == "packed" and record["new_head"] is True
    assert record["train_tokens_per_epoch"] > 100 * 32  # whole texts, not the first 32 tokens
    assert result.ppl_after < 0.5 * result.ppl_before  # measured: 50,185 -> 5,794
    metrics = [cast(dict[str, float], event["metrics"]) for event in reporter.events]
    losses = [m["loss"] for m in metrics]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 1.0  # nats; measured 9.2 -> 7.3
    assert all(m["tokens_per_s"] > 0 for m in metrics)


def test_a_run_resumes_in_the_layout_it_started_with(tiny_bert, tmp_path):
    from contract.errors import Cancelled

    texts = make_corpus(120, seed=5)[0]
    values: dict[str, Any] = dict(max_steps=20, lr=5e-3, batch_size=8, eval_every=5, max_length=32)
    per_text = TaptConfig(**values, packing=False)
    straight = run_tapt(texts, base_model=str(tiny_bert), out_dir=tmp_path / "a", config=per_text)
    with pytest.raises(Cancelled):
        run_tapt(
            texts,
            base_model=str(tiny_bert),
            out_dir=tmp_path / "b",
            config=per_text,
            reporter=RecordingReporter(cancel_after=7),
        )
    progress = json.loads(
        (tmp_path / "b" / ".tapt-work" / "checkpoint" / "progress.json").read_text()
    )
    assert progress["packing"] is False
    resumed = run_tapt(
        texts, base_model=str(tiny_bert), out_dir=tmp_path / "b", config=TaptConfig(**values)
    )
    assert json.loads((tmp_path / "b" / "tapt.json").read_text())["layout"] == "per_text"
    assert resumed.ppl_after == pytest.approx(straight.ppl_after, rel=1e-4)
