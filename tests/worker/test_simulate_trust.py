"""Issue 12: a simulation a data scientist can trust. Long CSV texts, content-hashed data set
names, TAPT keyed by its settings, CPU/GPU profiles with a measured estimate, progress, per-run
results and --resume, stratified subsampling, n/a where a figure cannot exist."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.errors import ConfigError
from tests.worker.ml.tiny import LABEL_NAMES, make_corpus, make_tiny_bert
from worker.simulate import SimulationConfig, run_simulation
from worker.simulate.cli import build_parser, config_from_args
from worker.simulate.config import PROFILES
from worker.simulate.data import (
    dataset_name,
    load_labelled,
    prepare_splits,
    stratified_subsample,
)
from worker.simulate.estimate import extrapolate, format_estimate, measure_units
from worker.simulate.journal import RUNS_FILE
from worker.simulate.outputs import summary_markdown
from worker.simulate.progress import BarReporter
from worker.simulate.results import ArmRun, CurvePoint
from worker.simulate.runner import SimulationReport, run_tapt_once
from worker.simulate.summary import summarise

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


def write_csv(path: Path, n: int, seed: int, long_text: str | None = None) -> Path:
    texts, labels = make_corpus(n, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for text, label in zip(texts, labels, strict=True):
            writer.writerow([text, LABEL_NAMES[label]])
        if long_text is not None:
            writer.writerow([long_text, LABEL_NAMES[0]])
    return path


# -- 2. long texts -----------------------------------------------------------------------------
def test_a_csv_text_of_200000_characters_is_read_whole(tmp_path: Path) -> None:
    long_text = "goal team match, " * (200_000 // 17) + "x" * (200_000 % 17)
    assert len(long_text) == 200_000
    path = write_csv(tmp_path / "mails.csv", 20, seed=1, long_text=long_text)
    previous = csv.field_size_limit(131_072)  # the csv module's default, whatever ran before
    try:
        (texts, labels), test = load_labelled(str(path))
    finally:
        csv.field_size_limit(max(previous, csv.field_size_limit()))
    assert test is None and len(texts) == 21
    assert texts[-1] == long_text.strip() and labels[-1] == LABEL_NAMES[0]


# -- 3. data set names and caches ----------------------------------------------------------------
def small_config(data: Path, tmp_path: Path, base: Path, **kwargs: object) -> SimulationConfig:
    defaults: dict[str, object] = {
        "dataset": str(data),
        "arms": ("lora-r4:entropy",),
        "seeds": (0, 1),
        "seed_size": 6,
        "batch_size": 6,
        "budget": 18,
        "reserve_fraction": 0.0,
        "dev_size": 6,
        "stop_set_size": 10,
        "max_length": 32,
        "epochs": 1,
        "base_model": str(base),
        "tapt_steps": 2,
        "tapt_batch_size": 8,
        "device": "cpu",
        "add_ceiling": False,
        "cheap_baselines": ("tfidf-lr",),
        "work_dir": tmp_path / "work",
        "embed_cache": tmp_path / "embed-cache",
    }
    defaults.update(kwargs)
    return SimulationConfig(**defaults)  # type: ignore[arg-type]


def test_two_train_csv_files_in_different_folders_get_different_names_and_caches(
    tmp_path: Path,
) -> None:
    base = make_tiny_bert(tmp_path / "bert")
    a = write_csv(tmp_path / "client-a" / "train.csv", 40, seed=1)
    b = write_csv(tmp_path / "client-b" / "train.csv", 40, seed=2)
    same = write_csv(tmp_path / "copy" / "train.csv", 40, seed=1)
    assert dataset_name(str(a)) != dataset_name(str(b))
    assert dataset_name(str(a)) == dataset_name(str(same))  # named by content, not by path
    assert dataset_name(str(a)).startswith("train-")
    splits = [prepare_splits(str(p), pool_size=None, test_size=None, dev_size=4) for p in (a, b)]
    assert splits[0].source != splits[1].source
    logs: list[str] = []
    dirs = [
        run_tapt_once(small_config(p, tmp_path, base), s, str(base), logs.append)[0]
        for p, s in zip((a, b), splits, strict=True)
    ]
    assert dirs[0] != dirs[1]
    assert not any("reusing TAPT" in line for line in logs)  # b never reuses a's TAPT


def test_a_changed_tapt_steps_retrains_and_an_unchanged_one_reuses(tmp_path: Path) -> None:
    base = make_tiny_bert(tmp_path / "bert")
    data = write_csv(tmp_path / "train.csv", 40, seed=1)
    split = prepare_splits(str(data), pool_size=None, test_size=None, dev_size=4)

    def tapt(steps: int) -> tuple[str, dict[str, object], list[str]]:
        logs: list[str] = []
        config = small_config(data, tmp_path, base, tapt_steps=steps)
        model_dir, summary = run_tapt_once(config, split, str(base), logs.append)
        return model_dir, summary, logs

    first, summary, logs = tapt(2)
    assert summary["steps"] == 2 and any(line.startswith("TAPT on") for line in logs)
    again, summary, logs = tapt(2)
    assert again == first and summary["steps"] == 2
    reuse = [line for line in logs if line.startswith("reusing TAPT from")]
    assert len(reuse) == 1 and "(same settings: 2 steps" in reuse[0]
    assert not any(line.startswith("TAPT on") for line in logs)
    changed, summary, logs = tapt(3)
    assert changed != first and summary["steps"] == 3
    assert not any("reusing" in line for line in logs)


# -- 4. profiles and the estimate ----------------------------------------------------------------
def test_profile_defaults_and_explicit_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*argv: str) -> SimulationConfig:
        return config_from_args(build_parser().parse_args(["r8", *argv]))

    cpu = parse("--profile", "cpu")
    assert cpu.profile == "cpu" and cpu.seeds == (0, 1) and cpu.adapter_growth == 2.0
    assert "full:all" not in [a.spec for a in cpu.arm_specs]  # no full fine-tuning on a CPU
    assert not cpu.needs_tapt and cpu.tapt_steps == PROFILES["cpu"]["tapt_steps"] < 200
    gpu = parse("--profile", "gpu")
    assert gpu.seeds == (0, 1, 2) and gpu.tapt_steps == 200 and gpu.needs_tapt
    assert "full:all" in [a.spec for a in gpu.arm_specs]
    assert parse("--profile", "gpu", "--ceiling", "0.9").ceiling == 0.9
    assert "full:all" not in [
        a.spec for a in parse("--profile", "gpu", "--ceiling", "0.9").arm_specs
    ]
    assert parse("--profile", "cpu", "--seeds", "4", "--tapt-steps", "7").seeds == (4,)
    assert parse("--profile", "cpu", "--tapt-steps", "7").tapt_steps == 7
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parse().profile == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert parse().profile == "gpu"
    with pytest.raises(ConfigError, match="--resume needs --out"):
        parse("--resume")


def test_estimate_comes_from_a_measured_warm_up(tmp_path: Path) -> None:
    base = make_tiny_bert(tmp_path / "bert", with_mlm_head=True)
    data = write_csv(tmp_path / "train.csv", 60, seed=1)
    config = small_config(
        data,
        tmp_path,
        base,
        arms=("tapt:lora-r4:entropy", "live:lora-r4:entropy"),
        add_ceiling=True,
    )
    split = prepare_splits(str(data), pool_size=None, test_size=None, dev_size=6)
    units = measure_units(config, split, str(base), needs_tapt=True)
    assert units.train_step_s > 0 and units.score_item_s > 0 and units.tapt_step_s > 0
    per = extrapolate(config, split, units)
    assert set(per) >= {"tapt:lora-r4:entropy", "tapt:lora-r4:random", "full:all", "TAPT"}
    assert per["TAPT"] == pytest.approx(2 * units.tapt_step_s)
    # random skips scoring the pool, so it costs less than entropy with the same adapter
    assert per["tapt:lora-r4:random"] < per["tapt:lora-r4:entropy"]
    doubled = extrapolate(small_config(data, tmp_path, base, epochs=2), split, units)
    assert doubled["lora-r4:entropy"] > extrapolate(config, split, units).get(
        "lora-r4:entropy", per["tapt:lora-r4:entropy"]
    )
    lines = format_estimate(config, units, per)
    assert lines[-1].startswith("estimated total:") and "per TAPT step" in lines[0]


# -- 5. progress, per-run results, resume --------------------------------------------------------
def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise() -> None:
    lines: list[str] = []
    plain = BarReporter("TAPT steps", 100, lines.append, phase="tapt", tty=False)
    for step in range(1, 101):
        plain.report(phase="tapt", step=step, total=100)
        plain.report(phase="train", step=step, total=100)  # another phase: ignored
    assert len(lines) == 11 and lines[-1] == "TAPT steps: 100/100"
    stream = io.StringIO()
    bar = BarReporter("rounds", 4, lines.append, stream=stream, tty=True)
    for step in range(1, 5):
        bar.report(phase="simulate", step=step, total=4, metrics={"macro_f1": 0.5})
    assert "4/4" in stream.getvalue() and len(lines) == 11  # the bar, not the log


def comparable(runs: list[ArmRun]) -> list[tuple[object, ...]]:
    """Everything measured except wall-clock times."""
    return [
        (
            r.arm,
            r.seed,
            r.truncated,
            [(p.labels, p.macro_f1, p.accuracy, p.strategy) for p in r.points],
        )
        for r in runs
    ]


def test_an_interrupted_run_resumes_to_the_same_results(tmp_path: Path) -> None:
    base = make_tiny_bert(tmp_path / "bert")
    data = write_csv(tmp_path / "train.csv", 60, seed=4)
    whole = run_simulation(small_config(data, tmp_path, base, out_dir=tmp_path / "whole"))
    assert [(r.arm, r.seed) for r in whole.runs] == [
        ("lora-r4:entropy", 0),
        ("lora-r4:entropy", 1),
        ("lora-r4:random", 0),
        ("lora-r4:random", 1),
        ("tfidf-lr", 0),
        ("tfidf-lr", 1),
    ]
    journal = tmp_path / "whole" / RUNS_FILE
    assert len(journal.read_text().splitlines()) == 6
    from worker.simulate.journal import Journal

    logs: list[str] = []
    Journal(tmp_path / "whole", "k", resume=False, log=logs.append)  # a new run, same --out
    (moved,) = (tmp_path / "whole").glob("runs-before-*.jsonl")
    assert len(moved.read_text().splitlines()) == 6 and "moved to" in logs[0]

    out = tmp_path / "cut"

    def interrupt(run: ArmRun) -> None:
        raise KeyboardInterrupt(f"stopped after {run.arm} seed {run.seed}")

    with pytest.raises(KeyboardInterrupt):
        run_simulation(small_config(data, tmp_path, base, out_dir=out), on_run=interrupt)
    saved = [json.loads(line) for line in (out / RUNS_FILE).read_text().splitlines()]
    assert [(e["run"]["arm"], e["run"]["seed"]) for e in saved] == [("lora-r4:entropy", 0)]
    assert not (out / "summary.md").exists()

    logs: list[str] = []
    resumed = run_simulation(
        small_config(data, tmp_path, base, out_dir=out, resume=True), log=logs.append
    )
    assert any(line.startswith("resuming: 1 of 4 runs") for line in logs)
    assert sum(line.startswith("[") and "lora-r4:entropy seed 0:" in line for line in logs) == 0
    assert comparable(resumed.runs) == comparable(whole.runs)
    assert len((out / RUNS_FILE).read_text().splitlines()) == 6
    with pytest.raises(ConfigError, match="other settings"):
        run_simulation(small_config(data, tmp_path, base, out_dir=out, resume=True, budget=12))

    # 6. the round total includes test scoring; both plots are written
    summary = (out / "summary.md").read_text()
    assert "| arm | retrain | score pool | score test | acquire | round total |" in summary
    assert all(p.test_s > 0 for r in resumed.runs if r.arm.startswith("lora") for p in r.points)
    assert (out / f"curves-{resumed.dataset}-accuracy.svg").is_file()
    assert (
        "Ceiling (full fine-tuning on all" in summary and "n/a (not run; give --ceiling)" in summary
    )


# -- 6. stratified subsampling, --ceiling, n/a ---------------------------------------------------
def test_stratified_subsampling_keeps_class_proportions() -> None:
    labels = np.array([0] * 600 + [1] * 300 + [2] * 100)
    rng = np.random.default_rng(0)
    picked = stratified_subsample(labels, 50, rng)
    assert np.bincount(labels[picked]).tolist() == [30, 15, 5]
    assert len(set(picked.tolist())) == 50
    rare = np.array([0] * 995 + [1] * 5)
    assert np.bincount(rare[stratified_subsample(rare, 20, rng)]).tolist() == [19, 1]


def test_pool_and_test_subsamples_are_stratified(tmp_path: Path) -> None:
    path = tmp_path / "skewed.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(500):
            writer.writerow([f"text number {i}", "big" if i % 5 else "small"])
    split = prepare_splits(str(path), pool_size=100, test_size=50, dev_size=10)
    assert np.bincount(split.pool_labels).tolist() == [80, 20]
    assert np.bincount(split.test_labels).tolist() == [40, 10]


def toy_report(runs: list[ArmRun], ceiling: float | None) -> SimulationReport:
    summaries, ceilings = summarise(runs, "macro_f1", {"toy": 100}, known_ceiling=ceiling)
    return SimulationReport(
        config={"budget": 30, "ceiling": ceiling},
        data="toy",
        dataset="toy",
        pool_size=100,
        runs=runs,
        summaries={"macro_f1": summaries},
        ceilings={"macro_f1": ceilings["toy"]},
    )


def test_n_a_where_a_figure_cannot_exist_and_a_given_ceiling_fills_it() -> None:
    run = ArmRun(dataset="toy", arm="lora-r8:entropy", seed=0)
    for i, f1 in enumerate((0.5, 0.7, 0.9)):
        run.points.append(CurvePoint(i, 10 * (i + 1), "acquire", f1, f1, None, 1.0))
    row = next(
        line
        for line in summary_markdown(toy_report([run], None)).splitlines()
        if line.startswith("| lora-r8:entropy")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5:] == ["n/a"] * 6  # to 95/98/100 %, savings (no twin), share of pool
    assert "not reached" not in row
    given = summary_markdown(toy_report([run], 0.9))
    row = next(line for line in given.splitlines() if line.startswith("| lora-r8:entropy"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5:8] == ["30", "30", "30"]  # 0.9 >= 0.95 x 0.9 first at 30 labels
    assert cells[8:10] == ["n/a", "n/a"]  # still no random twin (--no-baselines)
    assert "Ceiling (given with --ceiling): 0.9000" in given


# -- 1. --dev-size 0: cross-validation instead of a dev set ----------------------------------------
def test_dev_size_0_uses_cross_validation_on_the_labelled_items(tmp_path: Path) -> None:
    base = make_tiny_bert(tmp_path / "bert")
    data = write_csv(tmp_path / "train.csv", 60, seed=5)
    config = small_config(
        data,
        tmp_path,
        base,
        seeds=(0,),
        dev_size=0,
        budget=24,
        reserve_fraction=0.25,  # the polish phase weighs classes by cross-validated F1
        add_baselines=False,
        cheap_baselines=(),
        out_dir=tmp_path / "out",
    )
    (run,) = run_simulation(config).runs
    assert [p.labels for p in run.points] == [6, 12, 18, 24]  # no dev labels to count
    assert all(p.dev_labels == 0 for p in run.points)
    assert all(p.dev_macro_f1 is not None for p in run.points)  # the CV stand-in
    assert run.points[-1].strategy == "minority_focus"
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Dev set: none (--dev-size 0); cross-validation" in summary
    assert "0% (no dev set)" in summary


def test_cli_prints_the_estimate_first_then_progress_lines_when_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.simulate import main

    base = make_tiny_bert(tmp_path / "bert")
    data = write_csv(tmp_path / "train.csv", 40, seed=6)
    argv = [str(data), "--profile", "cpu", "--arm", "lora-r4:entropy", "--no-baselines"]
    argv += ["--no-cheap-baselines", "--seeds", "0", "--seed-size", "6", "--batch-size", "6"]
    argv += ["--budget", "12", "--dev-size", "0", "--reserve", "0", "--max-length", "32"]
    argv += ["--epochs", "1", "--base-model", str(base), "--device", "cpu"]
    argv += ["--embed-cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    estimate = next(i for i, line in enumerate(lines) if line.startswith("estimated total:"))
    scoring = [i for i, line in enumerate(lines) if line.startswith("scoring (embeddings):")]
    rounds = [i for i, line in enumerate(lines) if line.startswith("[1/1] lora-r4:entropy seed 0")]
    warm_up = next(i for i, line in enumerate(lines) if line.startswith("warm-up:"))
    assert warm_up < estimate < min(scoring) < min(rounds)  # the estimate before any cost
    assert lines[max(scoring)] == "scoring (embeddings): 40/40"  # pool + test, no dev set
    assert lines[max(rounds)].startswith("[1/1] lora-r4:entropy seed 0 labels: 12/12 ")
    assert (tmp_path / "out" / "runs.jsonl").read_text().count("\n") == 1
