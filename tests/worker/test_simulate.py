"""The offline simulation: arm specs, data, summaries, the SVG and a tiny end-to-end run."""

from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.errors import ConfigError
from tests.worker.ml.tiny import LABEL_NAMES, make_corpus, make_tiny_bert
from worker.simulate import ArmSpec, SimulationConfig, main, parse_adapter, run_simulation
from worker.simulate.data import prepare_splits, stratified_take
from worker.simulate.results import ArmRun, CurvePoint
from worker.simulate.summary import (
    MeanCurve,
    area_under_curve,
    labels_to_reach,
    mean_curve,
    saving_factor,
    summarise,
)
from worker.simulate.svg import learning_curve_svg, nice_ticks

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


# -- arm specs -----------------------------------------------------------------------------------
def test_adapter_specs_map_onto_adapter_configs() -> None:
    lora = parse_adapter("lora-r16-mlp")
    assert (lora.kind, lora.r, lora.alpha, lora.targets) == ("lora", 16, 32, "attention+mlp")
    top = parse_adapter("lora-r4-top2", num_layers=6)
    assert top.layers == [4, 5]
    assert parse_adapter("bottleneck-b32").bottleneck_size == 32
    assert parse_adapter("full").kind == "full"
    with pytest.raises(ConfigError, match="unknown option 'x7'"):
        parse_adapter("lora-x7")
    with pytest.raises(ConfigError, match="kind must be one of"):
        parse_adapter("adapterfusion")


def test_arm_specs_parse_and_explain_mistakes() -> None:
    arm = ArmSpec.parse("tapt:lora-r8:entropy")
    assert (arm.tapt, arm.adapters, arm.strategy) == (True, ("lora-r8",), "entropy")
    assert arm.random_twin == "tapt:lora-r8:random"
    assert ArmSpec.parse("full:all").is_ceiling
    ensemble = ArmSpec.parse("lora-r8+lora-r16:ensemble_disagreement")
    assert ensemble.adapters == ("lora-r8", "lora-r16")
    for bad, message in [
        ("lora-r8", "expected \\[tapt:\\]ADAPTER:STRATEGY"),
        ("lora-r8:magic", "strategy must be 'all' or one of"),
        ("lora-r8:ensemble_disagreement", "needs two adapter variants"),
        ("lora-r8+lora-r16:entropy", "only make sense for an ensemble"),
        ("lora-r8:alps", "--seed-strategy alps"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ArmSpec.parse(bad)


def test_baselines_are_added_once() -> None:
    config = SimulationConfig(
        dataset="r8", arms=("tapt:lora-r8:entropy", "tapt:lora-r8:badge", "lora-r4:random")
    )
    assert [a.spec for a in config.arm_specs] == [
        "tapt:lora-r8:entropy",
        "tapt:lora-r8:badge",
        "lora-r4:random",
        "tapt:lora-r8:random",
        "full:all",
    ]
    assert config.needs_tapt
    bare = SimulationConfig(dataset="r8", arms=("lora-r8:entropy",), add_baselines=False)
    assert [a.spec for a in bare.arm_specs] == ["lora-r8:entropy"] and not bare.needs_tapt


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": ()}, "seeds must be distinct"),
        ({"seed_size": 2000}, "seed_size must be in"),
        ({"reserve_fraction": 0.9}, "reserve_fraction"),
        ({"arms": ("lora-r8:entropy", "lora-r8:entropy")}, "only once"),
        ({"polish_strategy": "nope"}, "polish_strategy"),
    ],
)
def test_config_rejects_impossible_runs(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SimulationConfig(dataset="r8", **kwargs)


# -- data ----------------------------------------------------------------------------------------
def write_jsonl(path: Path, n: int, seed: int = 3) -> Path:
    texts, labels = make_corpus(n, seed=seed)
    with path.open("w", encoding="utf-8") as handle:
        for text, label in zip(texts, labels, strict=True):
            handle.write(json.dumps({"text": text, "label": LABEL_NAMES[label]}) + "\n")
    return path


def test_files_split_into_fixed_pool_dev_and_test(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", 100)
    a = prepare_splits(str(path), pool_size=50, test_size=None, dev_size=9)
    b = prepare_splits(str(path), pool_size=50, test_size=None, dev_size=9)
    assert (len(a.pool_texts), len(a.dev_texts), len(a.test_texts)) == (50, 9, 20)
    assert a.pool_texts == b.pool_texts and a.label_names == tuple(sorted(LABEL_NAMES))
    assert set(a.dev_labels.tolist()) == {0, 1, 2}
    csv_path = tmp_path / "d.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text"])
        writer.writerows([["x", "a b"], ["y", "c d"]] * 10)
    assert prepare_splits(
        str(csv_path), pool_size=None, test_size=None, dev_size=0
    ).label_names == (
        "x",
        "y",
    )


def test_data_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a benchmark"):
        prepare_splits("nope.jsonl", pool_size=None, test_size=None, dev_size=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x", "label": "a"}\n')
    with pytest.raises(ConfigError, match="needs columns 'text' and 'label'"):
        prepare_splits(str(bad), pool_size=None, test_size=None, dev_size=0)


def test_stratified_take_includes_a_rare_class() -> None:
    labels = np.array([0] * 95 + [1] * 5)
    rows = stratified_take(labels, 10, np.random.default_rng(0))
    assert len(set(rows.tolist())) == 10 and 1 in labels[rows]


# -- summaries and plot --------------------------------------------------------------------------
def curve_run(arm: str, seed: int, scores: list[float], start: int = 100) -> ArmRun:
    points = [
        CurvePoint(
            round=i,
            labels=start + 100 * i,
            phase="acquire",
            accuracy=s,
            macro_f1=s,
            dev_macro_f1=None,
            train_s=1.0,
        )
        for i, s in enumerate(scores)
    ]
    return ArmRun(dataset="d", arm=arm, seed=seed, points=points)


def test_labels_to_reach_aulc_and_saving_factor() -> None:
    curve = MeanCurve(np.array([100, 200, 300]), np.array([0.5, 0.8, 0.9]), np.zeros(3), 1)
    assert labels_to_reach(curve, 0.8) == 200 and labels_to_reach(curve, 0.95) is None
    assert area_under_curve(curve) == pytest.approx((0.65 + 0.85) / 2)
    assert saving_factor(200, 500, 1000) == "2.50x"
    assert saving_factor(200, None, 1000).startswith("> 5.00x")
    assert saving_factor(None, 300, 1000).startswith("< 1")


def test_summaries_compare_each_arm_with_its_random_twin_and_the_ceiling() -> None:
    runs = [
        curve_run("lora-r8:entropy", 0, [0.60, 0.85, 0.90, 0.90]),
        curve_run("lora-r8:entropy", 1, [0.60, 0.83, 0.90, 0.92]),
        curve_run("lora-r8:random", 0, [0.60, 0.70, 0.80, 0.86]),
        curve_run("lora-r8:random", 1, [0.60, 0.70, 0.82, 0.88]),
        curve_run("full:all", 0, [0.90], start=5000),
        curve_run("full:all", 1, [0.92], start=5000),
    ]
    mean = mean_curve(runs[:2], "macro_f1")
    assert mean.mean[1] == pytest.approx(0.84) and mean.std[1] == pytest.approx(
        np.std([0.85, 0.83], ddof=1)
    )
    summaries, ceilings = summarise(runs, "macro_f1", {"d": 5000})
    assert ceilings["d"] == pytest.approx(0.91)
    rows = {s.arm: s for s in summaries}
    entropy = rows["lora-r8:entropy"]
    assert entropy.labels_to[0.95] == 300  # 0.8645 needs the third point
    assert entropy.labels_to[1.0] == 400  # 0.91 reached at the end
    assert rows["lora-r8:random"].labels_to[0.95] == 400  # 0.87 >= 0.8645
    assert entropy.saving_vs_random[0.95] == "1.33x"
    assert entropy.share_of_full[0.95] == pytest.approx(300 / 5000)
    assert entropy.final_std == pytest.approx(np.std([0.90, 0.92], ddof=1))


def test_svg_is_well_formed_and_draws_every_arm() -> None:
    curves = {
        "a & b": MeanCurve(np.array([100, 200]), np.array([0.5, 0.7]), np.array([0.01, 0.02]), 3),
        "c": MeanCurve(np.array([100, 200]), np.array([0.4, 0.6]), np.zeros(2), 1),
    }
    svg = learning_curve_svg("title <x>", curves, ceiling=0.8)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2
    assert len(root.findall(f"{ns}polygon")) == 1  # only the arm with spread has a band
    texts = "".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert "a & b (n=3)" in texts and "98% of ceiling" in texts
    assert nice_ticks(0.0, 1.0, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


# -- end to end ----------------------------------------------------------------------------------
def test_tiny_end_to_end_simulation_writes_curves_and_summary(tmp_path: Path) -> None:
    base = make_tiny_bert(tmp_path / "bert")
    data = write_jsonl(tmp_path / "toy.jsonl", 150)
    config = SimulationConfig(
        dataset=str(data),
        arms=("tapt:lora-r4:cluster_uncertain", "lora-r4+lora-r8:ensemble_disagreement"),
        seeds=(0, 1),
        seed_size=6,
        batch_size=6,
        budget=24,
        reserve_fraction=0.25,
        dev_size=9,
        stop_set_size=20,
        max_length=32,
        epochs=2,
        base_model=str(base),
        tapt_steps=4,
        tapt_batch_size=8,
        device="cpu",
        out_dir=tmp_path / "out",
        cheap_baselines=(),  # covered in test_simulate_two_speed.py
    )
    report = run_simulation(config)
    arms = {r.arm for r in report.runs}
    assert arms == {
        "tapt:lora-r4:cluster_uncertain",
        "lora-r4+lora-r8:ensemble_disagreement",
        "tapt:lora-r4:random",
        "lora-r4:random",
        "full:all",
    }
    assert len(report.runs) == 10
    for run in report.runs:
        if run.arm == "full:all":
            assert [p.labels for p in run.points] == [report.pool_size + 9]  # dev counted
            continue
        assert [p.labels for p in run.points] == [15, 21, 27, 33]  # 6 seed + 9 dev, then +6
        assert all(p.dev_labels == 9 and p.test_s > 0 for p in run.points)
        assert [p.phase for p in run.points] == ["seed", "acquire", "acquire", "polish"]
        expected = run.arm.split(":")[-1]
        polish = "random" if expected == "random" else "minority_focus"
        assert [p.strategy for p in run.points] == ["random", expected, expected, polish]
        assert "budget" in run.points[-1].stop_rules_fired
    assert report.tapt is not None and report.tapt["steps"] == 4
    out = tmp_path / "out"
    name = report.dataset
    assert name.startswith("toy-") and len(name) == len("toy-") + 10  # content hash
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            f"curves-{name}.svg",
            f"curves-{name}-accuracy.svg",
            "curves.csv",
            "results.json",
            "runs.jsonl",
            "summary.md",
        ]
    )
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert len(rows) == 8 * 4 + 2
    saved = json.loads((out / "results.json").read_text())["reports"][0]
    assert ArmRun.from_dict(saved["runs"][0]).points == report.runs[0].points
    summary = (out / "summary.md").read_text()
    assert "| tapt:lora-r4:cluster_uncertain | 2 |" in summary and "Ceiling" in summary
    ET.fromstring((out / f"curves-{name}.svg").read_text())
    ET.fromstring((out / f"curves-{name}-accuracy.svg").read_text())


def test_cli_reports_configuration_errors_with_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["r8", "--arm", "lora-r8:magic"]) == 2
    assert "strategy must be" in capsys.readouterr().err


def test_time_limit_ends_runs_early_and_marks_them_truncated(tmp_path: Path) -> None:
    base = make_tiny_bert(tmp_path / "bert")
    data = write_jsonl(tmp_path / "toy.jsonl", 60)
    config = SimulationConfig(
        dataset=str(data),
        arms=("lora-r4:entropy",),
        add_baselines=False,
        seeds=(0,),
        seed_size=6,
        batch_size=6,
        budget=24,
        reserve_fraction=0.0,
        dev_size=0,
        stop_set_size=0,
        max_length=32,
        epochs=1,
        base_model=str(base),
        device="cpu",
        time_limit_s=1e-3,
        cheap_baselines=(),
    )
    (run,) = run_simulation(config).runs
    assert run.truncated and [p.labels for p in run.points] == [6]
