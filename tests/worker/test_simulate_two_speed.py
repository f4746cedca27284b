"""Cheap baseline arms (hand-computed scores), live: arm specs, and a tiny two-speed simulation
with the dev labels counted, the served model recorded and the budget table filled."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.errors import ConfigError
from tests.worker.ml.tiny import LABEL_NAMES, make_corpus, make_tiny_bert
from worker.simulate import ArmSpec, SimulationConfig, main, run_simulation
from worker.simulate.baselines import (
    BASELINE_ARMS,
    baseline_features,
    fraction_budgets,
    nested_order,
    run_baseline,
)
from worker.simulate.summary import budget_table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

POOL = [
    "goal match team",
    "goal team win",
    "match goal play",
    "team match goal",
    "stock bank market",
    "bank stock trade",
    "market stock bank",
    "trade bank market",
]
POOL_Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
# The second sports item uses only finance words: every sane model calls it finance.
TEST = ["goal team match", "bank stock market", "stock market trade", "bank trade"]
TEST_Y = np.array([0, 0, 1, 1])
# predictions [0, 1, 1, 1]: F1(sports) = 2*1 / (2*1 + 0 + 1) = 2/3, F1(finance) = 2*2 / (4 + 1)
HAND_MACRO_F1 = (2 / 3 + 4 / 5) / 2
HAND_ACCURACY = 3 / 4


def bag_of_words(texts: list[str]) -> np.ndarray:
    vocab = sorted({w for t in POOL + TEST for w in t.split()})
    X = np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("name", BASELINE_ARMS)
def test_baselines_reproduce_a_hand_computed_score(name: str) -> None:
    pool_x, test_x = baseline_features(name, POOL, TEST, bag_of_words)
    run = run_baseline(
        name,
        dataset="toy",
        seed=0,
        budgets=[4, 8, 100],
        pool_features=pool_x,
        pool_labels=POOL_Y,
        test_features=test_x,
        test_labels=TEST_Y,
        n_classes=2,
    )
    assert [p.labels for p in run.points] == [4, 8]  # budgets capped at the pool
    full = run.points[-1]
    assert full.macro_f1 == pytest.approx(HAND_MACRO_F1)
    assert full.accuracy == pytest.approx(HAND_ACCURACY)
    assert run.points[0].macro_f1 == pytest.approx(HAND_MACRO_F1)  # 2 per class suffice here


def test_nested_order_starts_with_two_per_class_and_budgets_follow_data_md() -> None:
    labels = np.array([0] * 50 + [1] * 5 + [2] * 45)
    order = nested_order(labels, seed=1)
    assert sorted(order.tolist()) == list(range(100))
    assert np.bincount(labels[order[:6]], minlength=3).tolist() == [2, 2, 2]
    assert not np.array_equal(order, nested_order(labels, seed=2))
    assert np.array_equal(order, nested_order(labels, seed=1))
    assert fraction_budgets(1000, 20, (0.01, 0.05, 0.5)) == [40, 50, 500]
    with pytest.raises(ConfigError, match="unknown baseline"):
        baseline_features("bert", POOL, TEST, None)


def test_live_and_baseline_arm_specs() -> None:
    live = ArmSpec.parse("live:tapt:lora-r8:cluster_uncertain")
    assert live.live and live.tapt and live.adapters == ("lora-r8",)
    assert live.random_twin == "live:tapt:lora-r8:random"
    bare = ArmSpec.parse("live:none:margin")
    assert (
        bare.live
        and bare.adapters == ()
        and bare.random_twin == "live:none:margin".replace("margin", "random")
    )
    assert ArmSpec.parse("embed-lr").baseline
    for bad, message in [
        ("none:margin", "only exists for live"),
        ("live:lora-r8:all", "a live: arm takes one adapter"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ArmSpec.parse(bad)
    config = SimulationConfig(dataset="r8")
    assert config.arms[0].startswith("live:") and config.cheap_baselines == BASELINE_ARMS
    with pytest.raises(ConfigError, match="unknown cheap baselines"):
        SimulationConfig(dataset="r8", cheap_baselines=("bert",))


def write_jsonl(path: Path, n: int, seed: int) -> Path:
    texts, labels = make_corpus(n, seed=seed)
    with path.open("w", encoding="utf-8") as handle:
        for text, label in zip(texts, labels, strict=True):
            handle.write(json.dumps({"text": text, "label": LABEL_NAMES[label]}) + "\n")
    return path


def test_two_speed_simulation_counts_dev_labels_and_compares_with_baselines(
    tmp_path: Path,
) -> None:
    base = make_tiny_bert(tmp_path / "bert")
    data = write_jsonl(tmp_path / "toy.jsonl", 150, seed=3)
    config = SimulationConfig(
        dataset=str(data),
        arms=("live:lora-r4:cluster_uncertain",),
        add_baselines=False,
        seeds=(0, 1),
        seed_size=6,
        seed_strategy="diverse",
        batch_size=6,
        budget=24,
        reserve_fraction=0.0,
        dev_size=9,
        stop_set_size=0,
        max_length=32,
        epochs=1,
        base_model=str(base),
        device="cpu",
        adapter_growth=2.0,
        min_train_steps=4,
        embed_cache=tmp_path / "cache",
        out_dir=tmp_path / "out",
    )
    report = run_simulation(config)
    live = [r for r in report.runs if r.arm == "live:lora-r4:cluster_uncertain"]
    assert len(live) == 2
    for run in live:
        assert [p.labels for p in run.points] == [15, 21, 27, 33]  # 6 + 9 dev, then +6
        assert all(p.dev_labels == 9 for p in run.points)
        assert all(
            p.served.split("[")[0] in ("live_head", "adapter", "average") for p in run.points
        )
        assert run.points[0].adapter_dev_macro_f1 is None  # no adapter before labels doubled
        assert run.points[1].adapter_dev_macro_f1 is not None  # 12 >= 2 x 6: first retrain
        assert all(p.live_dev_macro_f1 is not None for p in run.points)
    baselines = {r.arm for r in report.runs} - {"live:lora-r4:cluster_uncertain"}
    assert baselines == set(BASELINE_ARMS)
    for run in report.runs:
        if run.arm in BASELINE_ARMS:
            counts = {p.labels for p in run.points}
            assert {15, 21, 27, 33} <= counts  # scored at the live arm's label counts
    rows = [r for r in report.budgets if r["arm"] == "live:lora-r4:cluster_uncertain"]
    seed_row = next(r for r in rows if str(r["budget"]).startswith("seed set"))
    assert seed_row["labels"] == 15 and seed_row["dev_share"] == pytest.approx(9 / 15)
    best = max(
        np.mean([p.macro_f1 for r in report.runs if r.arm == b for p in r.points if p.labels == 15])
        for b in BASELINE_ARMS
    )
    mean = np.mean([r.points[0].macro_f1 for r in live])
    assert seed_row["gap_to_best_baseline"] == pytest.approx(mean - best)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "gap to best baseline" in summary and "| embed-lr |" in summary
    # the frozen embeddings were cached once and are reused by a second run
    assert len(list((tmp_path / "cache").glob("embed-*.npy"))) == 1


def test_cli_scores_a_given_test_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_tiny_bert(tmp_path / "bert")
    train = write_jsonl(tmp_path / "train.jsonl", 60, seed=4)
    test = write_jsonl(tmp_path / "test.jsonl", 17, seed=5)
    argv = [
        "--train-file", str(train), "--test-file", str(test), "--arm", "live:none:margin",
        "--no-baselines", "--baseline", "tfidf-svm", "--seeds", "0", "--seed-size", "6",
        "--batch-size", "6", "--budget", "12", "--reserve", "0", "--dev-size", "6",
        "--stop-set-size", "0", "--max-length", "32", "--base-model", str(base),
        "--device", "cpu", "--out", str(tmp_path / "out"), "--embed-cache", str(tmp_path / "c"),
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "gap to best baseline" in printed and "tfidf-svm" in printed
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["reports"][0]
    assert "test 17" in saved["data"]  # the whole given test file, not a held-out share
    assert {r["arm"] for r in saved["runs"]} == {"live:none:margin", "tfidf-svm"}
    assert main(["r8", "--train-file", str(train)]) == 2
    assert "either DATASET or --train-file" in capsys.readouterr().err


def test_budget_table_reports_n_a_before_a_curve_starts() -> None:
    from worker.simulate.results import ArmRun, CurvePoint

    def run(arm: str, points: list[tuple[int, float]], dev: int = 0) -> ArmRun:
        r = ArmRun(dataset="d", arm=arm, seed=0)
        r.points = [
            CurvePoint(i, n, "x", f, f, None, 0.0, dev_labels=dev)
            for i, (n, f) in enumerate(points)
        ]
        return r

    runs = [
        run("live:none:margin", [(30, 0.6), (50, 0.8)], dev=20),
        run("embed-lr", [(20, 0.5), (30, 0.55), (50, 0.7)]),
        run("tfidf-svm", [(20, 0.4), (30, 0.65), (50, 0.75)]),
    ]
    rows = budget_table(runs, 1000, 10, (0.02, 0.05))
    live = {r["budget"]: r for r in rows if r["arm"] == "live:none:margin"}
    assert live["2%"]["mean"] is None and live["2%"]["gap_to_best_baseline"] is None
    assert live["5%"]["labels"] == 50 and live["5%"]["gap_to_best_baseline"] == pytest.approx(0.05)
    seed = live["seed set (live:none:margin)"]
    assert seed["gap_to_best_baseline"] == pytest.approx(0.6 - 0.65)
    assert seed["best_baseline"] == "tfidf-svm" and seed["dev_share"] == pytest.approx(20 / 30)


@pytest.mark.parametrize("enabled", [True, False])
def test_live_arms_self_train_the_head_as_the_product_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    """When self-training wins on dev the served head is refit with dev and then self-trained
    (served "live_head[embed+self-training]"); switched off, it is never tried."""
    from worker.ml import self_training
    from worker.simulate import two_speed

    calls: list[int] = []

    def always_wins(head, X, y, k, pool_X, pool_probs, dev_X, dev_y):  # type: ignore[no-untyped-def]
        calls.append(len(y))
        trained, n = self_training.with_pseudo_labels(head, X, y, k, pool_X, pool_probs)
        assert n > 0 and trained.n_labels == len(y)
        return self_training.SelfTrained(trained, True, n, {}, "stub: always kept")

    monkeypatch.setattr(two_speed, "self_train", always_wins)
    base = make_tiny_bert(tmp_path / "bert")
    data = write_jsonl(tmp_path / "toy.jsonl", 120, seed=4)
    config = SimulationConfig(
        dataset=str(data), arms=("live:none:cluster_uncertain",), add_baselines=False,
        cheap_baselines=(), seeds=(0,), seed_size=6, seed_strategy="diverse", batch_size=6,
        budget=18, reserve_fraction=0.0, dev_size=9, stop_set_size=0, max_length=32,
        base_model=str(base), device="cpu", live_features="embed",
        live_self_training=enabled, embed_cache=tmp_path / "cache", out_dir=tmp_path / "out",
    )
    (run,) = run_simulation(config).runs
    served = {p.served for p in run.points}
    if enabled:
        assert calls == [6, 12, 18] and served == {"live_head[embed+self-training]"}
    else:
        assert calls == [] and served == {"live_head[embed]"}
