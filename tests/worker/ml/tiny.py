"""A tiny random BERT (2 layers, hidden 32) with a small WordPiece vocab, and a toy corpus.

Reused by the ML core tests, the worker-task tests and the active-learning tests: building and
training on it takes well under a second, and the corpus is learnable (each class has its own
topic words) so that tests can assert that training and TAPT actually improve things.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizer

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOPICS: dict[str, list[str]] = {
    "sports": ["goal", "team", "match", "score", "coach", "league", "player", "win"],
    "finance": ["bank", "stock", "market", "price", "profit", "loan", "trade", "bond"],
    "science": ["atom", "cell", "energy", "theory", "lab", "gene", "orbit", "data"],
}
FILLER = ["the", "a", "of", "and", "in", "on", "with", "today", "new", "big", "very", "report"]
SUFFIXES = ["##s", "##ed", "##ing"]
LABEL_NAMES = list(TOPICS)


def vocabulary() -> list[str]:
    words = [w for topic in TOPICS.values() for w in topic]
    return SPECIAL + FILLER + words + SUFFIXES


def make_tokenizer(path: Path) -> BertTokenizer:
    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(vocabulary()) + "\n", encoding="utf-8")
    vocab = {token: index for index, token in enumerate(vocabulary())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    tokenizer.save_pretrained(str(path))
    return tokenizer


def tiny_config(num_layers: int = 2, hidden: int = 32, heads: int = 2) -> BertConfig:
    return BertConfig(
        vocab_size=len(vocabulary()),
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=64,
        pad_token_id=0,
    )


def make_tiny_bert(
    path: Path, *, seed: int = 0, num_layers: int = 2, with_mlm_head: bool = False
) -> Path:
    """Save a random tiny BERT (encoder + pooler, no MLM head unless asked) and its tokenizer."""
    path = Path(path)
    torch.manual_seed(seed)
    config = tiny_config(num_layers=num_layers)
    model = BertForMaskedLM(config) if with_mlm_head else BertModel(config)
    model.save_pretrained(str(path))
    make_tokenizer(path)
    return path


def make_corpus(n: int, *, seed: int = 0, length: int = 10) -> tuple[list[str], list[int]]:
    """Texts whose topic words reveal the label; fillers and suffixes add noise."""
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[int] = []
    for i in range(n):
        label = i % len(LABEL_NAMES)
        topic = TOPICS[LABEL_NAMES[label]]
        words = []
        for _ in range(length):
            word = rng.choice(topic) if rng.random() < 0.6 else rng.choice(FILLER)
            if rng.random() < 0.1:
                word += rng.choice(["s", "ed", "ing"])
            words.append(word)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def make_multilabel_corpus(
    n: int, *, seed: int = 0, length: int = 10
) -> tuple[list[str], list[list[int]]]:
    """Texts about none, one or two topics, and their label sets (label indices, sorted): each
    topic of a text contributes its words, fillers fill the rest (a set is learnable from the
    words)."""
    rng = random.Random(seed)
    texts: list[str] = []
    sets: list[list[int]] = []
    shapes = [[0], [1], [2], [0, 1], [1, 2], [0, 2], []]
    for i in range(n):
        labels = shapes[i % len(shapes)]
        topics = [w for label in labels for w in TOPICS[LABEL_NAMES[label]]]
        words = [rng.choice(topics) if topics and rng.random() < 0.6 else rng.choice(FILLER)
                 for _ in range(length)]
        texts.append(" ".join(words))
        sets.append(list(labels))
    return texts, sets
