"""``batching.encode`` cuts long texts before tokenising: the ids must equal those of the whole
text for WordPiece (MiniLM's tokenizer), byte-level BPE and SentencePiece-style tokenizers."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tests.conftest import skip_or_fail
from worker.ml import batching
from worker.ml.batching import _encode, encode


def _texts() -> list[str]:
    from worker.simulate.benchmark_data import load_dataset

    try:
        texts, _ = load_dataset("20ng", "train")
    except Exception as exc:  # noqa: BLE001 - the data set is optional here
        skip_or_fail(f"20 Newsgroups not available: {exc}")
    rng = random.Random(0)
    sample = rng.sample(list(texts), 400)
    words = ["x" * 300, "supercalifragilistic" * 9, "naïve", "日本語のテキスト", "a\n b", "\t"]
    crafted = [
        " ".join(rng.choice(words) for _ in range(200)),
        "word " * 400,
        "no-spaces-" * 300,
        "line\n" * 500,
        "  leading and trailing spaces   " * 40,
        "mixed \u00a0nbsp\u00a0 and\u2003em space " * 60,
        "short text",
        "",
    ]
    return sample + crafted


def _trained(kind: str, texts: list[str]) -> PreTrainedTokenizerFast:
    if kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>"])
    else:  # SentencePiece-style: Metaspace + Unigram, NFKC
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>"], unk_token="<unk>"
        )
    tok.train_from_iterator(texts[:300], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_cut_texts_tokenise_exactly_like_whole_texts(kind: str) -> None:
    texts = _texts()
    if kind == "wordpiece":
        from worker.ml.models import load_tokenizer, offline_default_path

        try:
            tokenizer = load_tokenizer(str(offline_default_path()))
        except Exception as exc:  # noqa: BLE001
            skip_or_fail(f"MiniLM tokenizer not installed: {exc}")
    else:
        tokenizer = _trained(kind, texts)
    assert tokenizer.is_fast
    for max_length in (16, 32, 128):
        whole = _encode(tokenizer, texts, max_length)
        assert encode(tokenizer, texts, max_length) == whole, (kind, max_length)


def test_cutting_is_used_and_falls_back_to_the_whole_text(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _texts()
    tokenizer = _trained("bpe", texts)
    seen: list[int] = []
    real = batching._encode

    def spy(tok, batch, max_length):  # type: ignore[no-untyped-def]
        seen.append(len(batch))
        return real(tok, batch, max_length)

    monkeypatch.setattr(batching, "_encode", spy)
    # max_length 8 cuts at 64 characters: the first text still overflows there; the second is
    # cut after "a" (its next space comes after 120 letters) and must be tokenised again whole
    texts = ["word " * 400, "a " + "z" * 120 + " more" * 50]
    out = encode(tokenizer, texts, 8)
    assert seen == [1]
    assert out == real(tokenizer, texts, 8) and all(len(ids) == 8 for ids in out)
