"""``run_simulation``: data, optional TAPT, seed sets, every (arm, seed) run, summaries."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from contract.errors import ConfigError
from worker.ml.acquisition import PoolView, get_strategy
from worker.ml.models import resolve_model_path
from worker.ml.progress import ProgressReporter
from worker.simulate.config import SimulationConfig, default_work_dir
from worker.simulate.data import DATA_SEED, SplitData, prepare_splits
from worker.simulate.loop import ArmJob, ArmLoop
from worker.simulate.progress import progress_reporter
from worker.simulate.results import ArmRun
from worker.simulate.summary import SimulationReport, budget_table, summarise
from worker.simulate.two_speed import TwoSpeedLoop

Log = Callable[[str], None]
OnRun = Callable[[ArmRun], None]


def run_arm(job: ArmJob, reporter: ProgressReporter | None = None) -> ArmRun:
    """Run one (arm, seed) to the budget (or once on all labels for a ceiling arm)."""
    started = time.perf_counter()
    if job.arm.live:
        run = TwoSpeedLoop(job, reporter).run_rounds()
        run.seconds = time.perf_counter() - started
        return run
    loop = ArmLoop(job, reporter)
    run = loop.run_all_labels() if job.arm.is_ceiling else loop.run_rounds()
    run.seconds = time.perf_counter() - started
    return run


def num_encoder_layers(base_model: str) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(base_model).num_hidden_layers)


def tapt_settings(config: SimulationConfig, data: SplitData, base_model: str) -> dict[str, Any]:
    """Everything that changes a TAPT result: the pool's texts, the base's weights and every
    TAPT hyperparameter (steps, lr, batch, max_length, masking, seed, ...); the device is not."""
    from dataclasses import asdict

    from worker.ml.models import model_fingerprint
    from worker.ml.tapt import TaptConfig
    from worker.simulate.embed import texts_hash

    tapt_config = TaptConfig(
        max_steps=config.tapt_steps,
        batch_size=config.tapt_batch_size,
        max_length=config.max_length,
        device=config.device,
        precision=config.precision,
        seed=DATA_SEED,
    )
    settings = {k: v for k, v in asdict(tapt_config).items() if k != "device"}
    settings["texts"] = texts_hash(data.pool_texts)
    settings["base_model"] = model_fingerprint(base_model)
    return settings


def tapt_dir(config: SimulationConfig, data: SplitData, settings: dict[str, Any]) -> Path:
    """``<work>/tapt-<data set>-<hash of the settings>``: a changed setting trains afresh."""
    import hashlib
    import json

    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return default_work_dir(config) / f"tapt-{data.source}-{key}"


def run_tapt_once(
    config: SimulationConfig, data: SplitData, base_model: str, log: Log
) -> tuple[str, dict[str, Any]]:
    """Continue MLM training on the pool's unlabelled text; returns the adapted base's path.

    A finished TAPT with exactly the same settings (``tapt_settings``) is reused, and the log
    says so; any changed setting gets a folder of its own and trains."""
    from worker.ml.tapt import TaptConfig, run_tapt  # lazy: only arms that ask for TAPT need it

    settings = tapt_settings(config, data, base_model)
    out = tapt_dir(config, data, settings)
    tapt_config = TaptConfig(
        max_steps=config.tapt_steps,
        batch_size=config.tapt_batch_size,
        max_length=config.max_length,
        device=config.device,
        precision=config.precision,
        seed=DATA_SEED,
    )
    if (out / "tapt.json").is_file():
        log(
            f"reusing TAPT from {out} (same settings: {config.tapt_steps} steps, lr "
            f"{tapt_config.lr}, max_length {config.max_length}, same pool texts and base)"
        )
    else:
        log(f"TAPT on {len(data.pool_texts)} pool texts, {config.tapt_steps} steps -> {out}")
    result = run_tapt(
        data.pool_texts,
        base_model=base_model,
        config=tapt_config,
        out_dir=out,
        reporter=progress_reporter("TAPT steps", config.tapt_steps, log, phase="tapt"),
    )
    summary: dict[str, Any] = {
        k: v for k, v in vars(result).items() if isinstance(v, int | float | str)
    }
    summary["model_dir"] = str(result.model_dir)
    summary["settings"] = settings
    return str(result.model_dir), summary


def seed_sets(
    config: SimulationConfig,
    data: SplitData,
    tapt_model: str | None,
    embeddings: Any = None,
) -> dict[int, np.ndarray]:
    """The seed set per run seed, shared by every arm of that seed (paired comparison)."""
    n = len(data.pool_texts)
    size = min(config.seed_size, n)
    if config.seed_strategy == "diverse":
        from worker.ml.live_head import diverse_seed

        if embeddings is None:
            raise ConfigError("seed_strategy 'diverse' needs the frozen embeddings")
        return {s: np.sort(diverse_seed(embeddings.pool, size, seed=s)) for s in config.seeds}
    if config.seed_strategy == "random":
        return {
            s: np.sort(np.random.default_rng([s, 1]).choice(n, size, replace=False))
            for s in config.seeds
        }
    from worker.ml.surprisal import mlm_surprisal_embeddings

    assert tapt_model is not None
    surprisal = mlm_surprisal_embeddings(
        tapt_model, data.pool_texts, max_length=config.max_length, device=config.device
    )
    strategy = get_strategy("alps")
    view = PoolView(surprisal_embeddings=np.asarray(surprisal, dtype=np.float32))
    return {
        s: np.sort([p.index for p in strategy.select(view, size, seed=s)]) for s in config.seeds
    }


def make_jobs(
    config: SimulationConfig,
    data: SplitData,
    bases: dict[bool, str],
    num_layers: int,
    seeds: dict[int, np.ndarray],
    deadline: float | None = None,
    embeddings: Any = None,
) -> list[ArmJob]:
    stop_rng = np.random.default_rng(DATA_SEED + 1)
    stop = np.sort(
        stop_rng.choice(
            len(data.pool_texts), min(config.stop_set_size, len(data.pool_texts)), replace=False
        )
    )
    return [
        ArmJob(
            config=config,
            arm=arm,
            seed=seed,
            base_model=bases[arm.tapt],
            num_layers=num_layers,
            data=data,
            seed_indices=seeds[seed],
            stop_indices=stop,
            deadline=deadline,
            embeddings=embeddings if arm.live or not data.dev_texts else None,
        )
        for arm in sorted(config.arm_specs, key=lambda a: not a.is_ceiling)  # long ones first
        for seed in config.seeds
    ]


def _run_in_worker(job: ArmJob, threads: int) -> ArmRun:
    """Entry point of a worker process: share the CPU fairly and keep the console readable."""
    import torch
    from transformers.utils import logging

    torch.set_num_threads(threads)
    logging.set_verbosity_error()  # one load report per round and process would drown the log
    logging.disable_progress_bar()
    return run_arm(job)


def execute(
    jobs: list[ArmJob], workers: int, log: Log, on_run: OnRun | None = None
) -> list[ArmRun]:
    """Run jobs inline (workers=1) or as parallel processes sharing the device."""
    runs: list[ArmRun] = []

    def finished(i: int, run: ArmRun) -> None:
        log(_done_line(i, len(jobs), run))
        runs.append(run)
        if on_run is not None:
            on_run(run)

    if workers == 1:
        for i, job in enumerate(jobs, start=1):
            label = f"[{i}/{len(jobs)}] {job.arm.spec} seed {job.seed} labels"
            finished(i, run_arm(job, progress_reporter(label, 1, log, phase="simulate")))
        return runs
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_run_in_worker, job, threads) for job in jobs]
        for i, future in enumerate(as_completed(futures), start=1):
            finished(i, future.result())
    order = {(j.arm.spec, j.seed): k for k, j in enumerate(jobs)}
    return sorted(runs, key=lambda r: order[(r.arm, r.seed)])


def _done_line(i: int, total: int, run: ArmRun) -> str:
    last = run.points[-1]
    return (
        f"[{i}/{total}] {run.dataset} {run.arm} seed {run.seed}: macro-F1 {last.macro_f1:.3f} "
        f"acc {last.accuracy:.3f} at {last.labels} labels ({run.seconds:.0f}s)"
    )


def frozen_embeddings(config: SimulationConfig, data: SplitData, base: str, log: Log) -> Any:
    """Frozen base-encoder embeddings of pool, dev and test (one cached call), when a live: arm
    or the embed-lr baseline needs them; None otherwise."""
    wanted = config.seed_strategy == "diverse" or "embed-lr" in config.cheap_baselines
    wanted = wanted or config.dev_size == 0  # cross-validation stands in for the dev set
    if not wanted and not any(a.live for a in config.arm_specs):
        return None
    from worker.simulate.embed import cached_embedder
    from worker.simulate.two_speed import Embeddings

    cache = config.embed_cache or Path.home() / ".cache" / "tapestry-sim" / "embeddings"
    embed = cached_embedder(
        base, cache, max_length=config.max_length, device=config.device, log=log
    )
    started = time.perf_counter()
    vectors = embed(data.pool_texts + data.dev_texts + data.test_texts)
    log(f"frozen embeddings ready in {time.perf_counter() - started:.0f}s")
    a, b = len(data.pool_texts), len(data.pool_texts) + len(data.dev_texts)
    return Embeddings(pool=vectors[:a], dev=vectors[a:b], test=vectors[b:])


def run_cheap_baselines(
    config: SimulationConfig,
    data: SplitData,
    runs: list[ArmRun],
    embeddings: Any,
    log: Log,
    on_run: OnRun | None = None,
    done: Callable[[str, int], ArmRun | None] | None = None,
) -> list[ArmRun]:
    """The cheap baseline arms on random labels, at the budget fractions and at every label
    count a product arm reported (so every gap compares equal numbers of labels)."""
    from worker.simulate.baselines import baseline_features, fraction_budgets, run_baseline

    n, k = len(data.pool_texts), len(data.label_names)
    budgets = set(fraction_budgets(n, k, config.budget_fractions))
    budgets |= {p.labels for r in runs for p in r.points if p.labels <= n}
    out: list[ArmRun] = []
    for name in config.cheap_baselines:
        if name == "embed-lr":
            assert embeddings is not None
            pool_x, test_x = embeddings.pool, embeddings.test
        else:
            pool_x, test_x = baseline_features(name, data.pool_texts, data.test_texts, None)
        for seed in config.seeds:
            previous = done(name, seed) if done is not None else None
            if previous is not None:
                out.append(previous)
                continue
            run = run_baseline(
                name,
                dataset=data.source,
                seed=seed,
                budgets=budgets,
                pool_features=pool_x,
                pool_labels=data.pool_labels,
                test_features=test_x,
                test_labels=data.test_labels,
                n_classes=k,
            )
            log(_done_line(len(out) + 1, len(config.cheap_baselines) * len(config.seeds), run))
            out.append(run)
            if on_run is not None:
                on_run(run)
    return out


def _nothing_done(_arm: str, _seed: int) -> ArmRun | None:
    return None


def run_simulation(
    config: SimulationConfig,
    *,
    data_wheel: Path | None = None,
    log: Log | None = None,
    on_run: OnRun | None = None,
) -> SimulationReport:
    """Run the whole experiment for one data set; write files when ``config.out_dir`` is set.

    ``log`` receives progress lines; ``on_run`` each finished (arm, seed) run as it completes.
    """
    log = log or (lambda _message: None)
    started = time.perf_counter()
    deadline = time.time() + config.time_limit_s if config.time_limit_s else None
    data = prepare_splits(
        config.dataset,
        pool_size=config.pool_size,
        test_size=config.test_size,
        dev_size=config.dev_size,
        text_column=config.text_column,
        label_column=config.label_column,
        data_wheel=data_wheel,
        test_file=config.test_file,
    )
    log(data.describe())
    journal = None
    if config.out_dir is not None:  # opened first: a resume with other settings fails at once
        from worker.simulate.journal import Journal, settings_key

        journal = Journal(
            Path(config.out_dir),
            settings_key(config, data.source),
            resume=config.resume,
            log=log,
        )
    done = journal.finished if journal is not None else _nothing_done
    base = resolve_model_path(config.base_model)
    if config.estimate:  # before anything costly, so a lead can stop a run that will not fit
        from worker.simulate.estimate import estimate_and_log

        estimate_and_log(config, data, base, log)
    embeddings = frozen_embeddings(config, data, base, log)
    bases = {False: base, True: base}
    tapt_summary = None
    if config.needs_tapt:
        bases[True], tapt_summary = run_tapt_once(config, data, base, log)
    jobs = make_jobs(
        config,
        data,
        bases,
        num_encoder_layers(base),
        seed_sets(config, data, bases[True] if config.needs_tapt else None, embeddings),
        deadline,
        embeddings,
    )
    log(
        f"{len(jobs)} runs: {', '.join(a.spec for a in config.arm_specs)} x seeds "
        f"{list(config.seeds)}"
    )
    kept = {(j.arm.spec, j.seed): done(j.arm.spec, j.seed) for j in jobs}
    todo = [j for j in jobs if kept[(j.arm.spec, j.seed)] is None]
    if len(todo) < len(jobs):
        log(f"resuming: {len(jobs) - len(todo)} of {len(jobs)} runs already in runs.jsonl")

    def record(run: ArmRun) -> None:
        if journal is not None:
            journal.append(run)  # first on disk, then anything that may fail
        if on_run is not None:
            on_run(run)

    fresh = {(r.arm, r.seed): r for r in execute(todo, config.workers, log, record)}
    runs = [kept[key] or fresh[key] for key in kept]  # type: ignore[misc]
    runs += run_cheap_baselines(config, data, runs, embeddings, log, record, done)
    report = SimulationReport(
        config=config.to_dict(),
        data=data.describe(),
        dataset=data.source,
        pool_size=len(data.pool_texts),
        runs=runs,
        tapt=tapt_summary,
    )
    for metric in ("macro_f1", "accuracy"):
        known = config.ceiling if metric == "macro_f1" else None
        summaries, ceilings = summarise(
            runs, metric, {data.source: len(data.pool_texts)}, known_ceiling=known
        )
        report.summaries[metric] = summaries
        report.ceilings[metric] = ceilings.get(data.source)
    report.budgets = budget_table(
        runs, len(data.pool_texts), len(data.label_names), config.budget_fractions
    )
    report.seconds = time.perf_counter() - started
    if config.out_dir is not None:
        from worker.simulate.outputs import write_outputs

        report.files = write_outputs([report], Path(config.out_dir))
    return report
