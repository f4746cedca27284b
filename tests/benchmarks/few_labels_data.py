"""Data and cached window embeddings for ``bench_few_labels`` (issue 18).

The two dev corpora, and ``more_corpora``'s spam and tweets, as DATA.md's baselines use them:
texts de-duplicated, a text seen with two labels dropped; the whole test split. Every text is
read by the offline MiniLM in up to ``MAX_WINDOWS`` consecutive windows of 128 tokens
(``worker.ml.sentence_encoder``); one pass gives every pooling variant (first window only = the
product's embedding until now, first k windows), cached under ``~/.cache/tapestry-bench`` by a
hash of the texts.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE = Path.home() / ".cache" / "tapestry-bench"
MAX_WINDOWS = 8
MAX_LENGTH = 128
MORE_CORPORA = ("spam", "tweets")
"""Read by ``tests.benchmarks.more_corpora``; the others are the two dev corpora."""


@dataclass
class Corpus:
    name: str
    label_names: list[str]
    train_texts: list[str]
    train_y: np.ndarray
    test_texts: list[str]
    test_y: np.ndarray


def dedup(texts: list[str], labels: list[str]) -> tuple[list[str], list[str]]:
    """One row per text; a text seen with two different labels is dropped (DATA.md)."""
    seen: dict[str, set[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        seen.setdefault(text, set()).add(label)
    kept = [(t, next(iter(ls))) for t, ls in seen.items() if len(ls) == 1]
    return [t for t, _ in kept], [label for _, label in kept]


def load_corpus(name: str) -> Corpus:
    if name in MORE_CORPORA:
        from tests.benchmarks.more_corpora import load_split as load_dataset
    else:
        from worker.simulate.benchmark_data import load_dataset  # type: ignore[assignment]

    train = dedup(*load_dataset(name, "train"))  # type: ignore[arg-type]
    test_texts, test_labels = load_dataset(name, "test")  # type: ignore[arg-type]
    names = sorted(set(train[1]))
    index = {n: i for i, n in enumerate(names)}
    keep = [i for i, label in enumerate(test_labels) if label in index]
    return Corpus(
        name, names, train[0], np.array([index[v] for v in train[1]]),
        [test_texts[i] for i in keep], np.array([index[test_labels[i]] for i in keep]),
    )


def _key(texts: list[str], model: str | None, windows: int) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    digest.update(f"|{MAX_LENGTH}|{windows}".encode())
    if model is not None:
        digest.update(f"|{model}".encode())
    return digest.hexdigest()[:20]


def window_embeddings(texts: list[str], log: bool = True, *, model: str | None = None,
                      windows: int = MAX_WINDOWS) -> object:
    """A ``WindowEmbeddings`` for ``texts`` (computed once, then read from the cache) by the
    offline MiniLM or the encoder at ``model``."""
    from worker.ml.sentence_encoder import SentenceEncoder, WindowEmbeddings

    target = CACHE / f"windows-{_key(texts, model, windows)}.npz"
    if target.is_file():
        data = np.load(target)
        return WindowEmbeddings(data["vectors"], data["owner"], data["tokens"], len(texts))
    from worker.ml.models import offline_default_path

    encoder = SentenceEncoder(model or offline_default_path(), max_length=MAX_LENGTH,
                              max_windows=windows, device="cpu")
    started = time.perf_counter()
    parts = []
    step = 2000
    for start in range(0, len(texts), step):
        parts.append(encoder.embed_windows(texts[start:start + step]))
        if log:
            done = min(start + step, len(texts))
            print(f"  embedded {done}/{len(texts)} texts in {time.perf_counter() - started:.0f} s",
                  flush=True)
    owner = np.concatenate([p.owner + start for p, start in
                            zip(parts, range(0, len(texts), step), strict=True)])
    result = WindowEmbeddings(np.concatenate([p.vectors for p in parts]), owner,
                              np.concatenate([p.tokens for p in parts]), len(texts))
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.npz")
    with open(partial, "wb") as handle:
        np.savez(handle, vectors=result.vectors, owner=result.owner, tokens=result.tokens)
    partial.replace(target)
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="embed the corpora once (cached)")
    parser.add_argument("datasets", nargs="*", default=["r8", "20ng"])
    parser.add_argument("--model", help="an encoder folder instead of the offline MiniLM")
    parser.add_argument("--windows", type=int, default=MAX_WINDOWS)
    args = parser.parse_args()
    for name in args.datasets:
        corpus = load_corpus(name)
        for split, texts in (("train", corpus.train_texts), ("test", corpus.test_texts)):
            print(f"{name} {split}: {len(texts)} texts", flush=True)
            emb = window_embeddings(texts, model=args.model, windows=args.windows)
            per = emb.windows_per_text()  # type: ignore[attr-defined]
            print(f"  windows per text: mean {per.mean():.2f}, median {np.median(per):.0f}, "
                  f"share > 1: {(per > 1).mean():.1%}", flush=True)
