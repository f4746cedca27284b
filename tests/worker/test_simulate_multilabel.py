"""``tapestry simulate --multi-label``: reading label sets, every arm at every budget, the CLI."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from contract.errors import ConfigError
from tests.worker.ml.tiny import FILLER, LABEL_NAMES, TOPICS, make_tiny_bert
from worker.simulate import multilabel
from worker.simulate.cli import main


def corpus(n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    texts, sets = [], []
    for i in range(n):
        names = sorted(rng.sample(LABEL_NAMES, rng.choice([0, 1, 1, 2])))
        words = [rng.choice(TOPICS[name]) for name in names for _ in range(3)]
        words += rng.sample(FILLER, 4)
        rng.shuffle(words)
        texts.append(" ".join(words) + f" {i}")
        sets.append(names)
    return texts, sets


def topic_embedder(texts: Sequence[str]) -> np.ndarray:
    """Counts of each topic's words plus noise: a learnable, deterministic stand-in encoder."""
    rng = np.random.default_rng(len(texts))
    counts = np.array([[sum(w in TOPICS[name] for w in t.split()) for name in LABEL_NAMES]
                       for t in texts], dtype=float)
    return counts + 0.1 * rng.normal(size=counts.shape)


def test_label_sets_are_read_from_jsonl_and_csv_with_line_numbered_errors(
    tmp_path: Path
) -> None:
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"text": "x", "labels": ["b", "a", "b"]}\n\n{"text": "y", "labels": []}\n')
    assert multilabel.read_sets(jsonl) == (["x", "y"], [["a", "b"], []])
    table = tmp_path / "a.csv"
    table.write_text('text,labels\n"x, y",a| b\nz,\n')
    assert multilabel.read_sets(table) == (["x, y", "z"], [["a", "b"], []])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "labels": ["a"]}\n{"text": "y", "labels": "a"}\n')
    with pytest.raises(ConfigError, match="line 2: 'labels' must be a list"):
        multilabel.read_sets(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("text,labels\n,a\n")
    with pytest.raises(ConfigError, match="line 2: no text"):
        multilabel.read_sets(empty)


def test_every_arm_is_measured_at_every_budget_with_every_label_counted(
    tmp_path: Path
) -> None:
    texts, sets = corpus(300, seed=1)
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({"text": t, "labels": s}) + "\n"
                            for t, s in zip(texts, sets, strict=True)))
    data = multilabel.load_data(path, None)
    assert len(data.texts) == 240 and len(data.test_texts) == 60
    report = multilabel.simulate(data, topic_embedder, seeds=[0],
                                 strategies=["margin", "cluster-margin"])
    summary = report["summary"]
    assert set(summary) == {"random", "tfidf-ovr-lr", "embed-ovr-lr", "margin",
                            "cluster-margin"}
    for arm in ("random", "margin", "cluster-margin"):
        assert [summary[arm][b]["labels"] for b in ("0.01", "0.02", "0.05", "0.10", "0.20")] == [
            2, 5, 12, 24, 48]
    assert summary["tfidf-ovr-lr"]["1.00"]["labels"] == 240
    # the topic features make the task learnable: 20 % of the labels get most of it right
    assert summary["margin"]["0.20"]["micro_f1"] > 0.8
    text = multilabel.markdown(report)
    assert "| margin |" in text and "**macro-f1**" in text
    with pytest.raises(ConfigError, match="unknown multi-label strategy 'badge'"):
        multilabel.simulate(data, topic_embedder, seeds=[0], strategies=["badge"])


def test_the_cli_runs_a_multi_label_file_end_to_end(tmp_path: Path) -> None:
    model = make_tiny_bert(tmp_path / "tiny")
    texts, sets = corpus(200, seed=2)
    table = tmp_path / "tags.csv"
    table.write_text("text,tags\n" + "".join(f"{t},{';'.join(s)}\n"
                                             for t, s in zip(texts, sets, strict=True)))
    out = tmp_path / "out"
    code = main(["--multi-label", str(table), "--label-column", "tags",
                 "--label-separator", ";", "--seeds", "0", "--ml-strategy", "margin",
                 "--base-model", str(model), "--max-length", "32", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    assert report["label_names"] == sorted(LABEL_NAMES) and report["pool"] == 160
    assert set(report["summary"]) == {"random", "tfidf-ovr-lr", "embed-ovr-lr", "margin"}
    assert "Multi-label active learning: tags.csv" in (out / "summary.md").read_text()
    assert main(["--multi-label", str(tmp_path / "missing.csv"), "--seeds", "0"]) == 2
