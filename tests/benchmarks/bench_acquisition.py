"""Acquisition speed and memory on a large synthetic pool, against naive baselines side by side.

Run: ``python -m tests.benchmarks.bench_acquisition [--pool 100000] [--dim 384] [--classes 12]``
Writes ``tests/benchmarks/results/acquisition.{json,md}``. Figures are medians over repeats;
memory is the tracemalloc peak of the selection call relative to the embedding matrix.
Targets from the issue: entropy/margin <= 100 ms, 100 core-set picks <= 5 s, peak <= 2x.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from worker.ml.acquisition import PoolView, get_strategy
from worker.ml.acquisition.uncertainty import entropy

RESULTS = Path(__file__).parent / "results"


def make_pool(n: int, dim: int, k: int, seed: int = 0) -> PoolView:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    probs = rng.dirichlet(np.full(k, 0.3), size=n).astype(np.float32)
    labeled = emb[rng.choice(n, size=200, replace=False)] + 0.01
    return PoolView(probs=probs, embeddings=emb, labeled_embeddings=labeled)


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall seconds over ``repeats`` calls, and the last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def peak_bytes(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - before


def naive_uncertainty(view: PoolView, n: int) -> list[int]:
    """Baseline: score, then a full stable sort of the whole pool."""
    assert view.probs is not None
    scores = entropy(view.probs)
    return np.argsort(-scores, kind="stable")[:n].tolist()


def naive_coreset(x: np.ndarray, labeled: np.ndarray, n: int) -> list[int]:
    """Baseline: the textbook N x N distance matrix, then greedy k-center over its rows."""
    sq = (x * x).sum(axis=1)
    full = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    lsq = (labeled * labeled).sum(axis=1)
    mind = np.sqrt(np.maximum(sq[:, None] + lsq[None, :] - 2.0 * (x @ labeled.T), 0.0)).min(1)
    picks = []
    for _ in range(n):
        j = int(np.argmax(mind))
        picks.append(j)
        mind = np.minimum(mind, full[j])
    return picks


def run(pool: int, dim: int, classes: int, picks: int, naive_n: int) -> dict[str, Any]:
    view = make_pool(pool, dim, classes)
    assert view.embeddings is not None and view.labeled_embeddings is not None
    emb_bytes = view.embeddings.nbytes
    rows: dict[str, Any] = {}

    def record(name: str, fn: Callable[[], Any], repeats: int, memory: bool = True) -> None:
        seconds, _ = timed(fn, repeats)
        entry = {"median_s": seconds, "repeats": repeats}
        if memory:
            entry["peak_over_embeddings"] = peak_bytes(fn) / emb_bytes
        rows[name] = entry
        print(f"{name:<38} {seconds * 1000:10.1f} ms  {entry.get('peak_over_embeddings', 0):.2f}x")

    for name in ("random", "entropy", "margin", "least_confidence"):
        strategy = get_strategy(name)
        record(f"{name} ({picks} of {pool})", partial(strategy.select, view, picks), 7)
    record(f"naive entropy + full sort ({pool})", lambda: naive_uncertainty(view, picks), 7)
    coreset = get_strategy("coreset")
    record(f"coreset ({picks} of {pool})", lambda: coreset.select(view, picks), 3)
    for name in ("cluster_uncertain", "badge"):
        strategy = get_strategy(name)
        record(f"{name} ({picks} of {pool})", partial(strategy.select, view, picks), 3)
    alps = get_strategy("alps", source="embeddings")
    record(f"alps on embeddings ({picks} of {pool})", lambda: alps.select(view, picks), 3)
    dedup = get_strategy("entropy", dedup_threshold=0.95)
    record(f"entropy + dedup ({picks} of {pool})", lambda: dedup.select(view, picks), 5)

    # Side by side on a subset small enough for the N x N matrix to fit.
    sub = view.take(np.arange(naive_n))
    assert sub.embeddings is not None and sub.labeled_embeddings is not None
    sub_bytes = sub.embeddings.nbytes
    ours_s, ours_picks = timed(lambda: coreset.select(sub, picks), 3)
    naive_s, naive_picks = timed(
        lambda: naive_coreset(sub.embeddings, sub.labeled_embeddings, picks), 3  # type: ignore[arg-type]
    )
    same = [p.index for p in ours_picks] == naive_picks
    rows[f"coreset vs naive N x N ({naive_n})"] = {
        "ours_s": ours_s,
        "naive_s": naive_s,
        "speedup": naive_s / ours_s,
        "ours_peak_over_embeddings": peak_bytes(lambda: coreset.select(sub, picks)) / sub_bytes,
        "naive_peak_over_embeddings": peak_bytes(
            lambda: naive_coreset(sub.embeddings, sub.labeled_embeddings, picks)  # type: ignore[arg-type]
        )
        / sub_bytes,
        "same_picks": same,
    }
    print(f"coreset {naive_n}: ours {ours_s:.3f}s vs naive {naive_s:.3f}s, same picks: {same}")
    return {
        "pool": pool,
        "dim": dim,
        "classes": classes,
        "picks": picks,
        "embedding_mb": emb_bytes / 2**20,
        "machine": f"{platform.processor() or platform.machine()}, numpy {np.__version__}",
        "results": rows,
    }


def to_markdown(report: dict[str, Any]) -> str:
    r = report["results"]
    pool, picks = report["pool"], report["picks"]
    entropy_s = r[f"entropy ({picks} of {pool})"]["median_s"]
    naive_s = r[f"naive entropy + full sort ({pool})"]["median_s"]
    lines = [
        f"# Acquisition benchmark: pool {pool:,} x {report['dim']}, {report['classes']} classes",
        "",
        f"Embeddings {report['embedding_mb']:.0f} MB (float32); {picks} picks; medians; "
        f"{report['machine']}. Peak = tracemalloc peak during the call / embedding matrix size.",
        "",
        "| strategy | median | peak memory |",
        "|---|---:|---:|",
    ]
    for name, row in r.items():
        if "median_s" in row:
            peak = row.get("peak_over_embeddings")
            lines.append(f"| {name} | {row['median_s'] * 1000:.1f} ms | {peak:.2f}x |")
    lines += [
        "",
        f"Entropy with partial top-k vs a full stable sort: {naive_s / entropy_s:.2f}x faster.",
        "",
    ]
    for name, row in r.items():
        if "speedup" in row:
            lines.append(
                f"{name}: ours {row['ours_s']:.3f} s vs naive {row['naive_s']:.3f} s "
                f"(**{row['speedup']:.1f}x** faster), peak memory "
                f"{row['ours_peak_over_embeddings']:.2f}x vs "
                f"{row['naive_peak_over_embeddings']:.1f}x "
                f"the embeddings; identical picks: {row['same_picks']}."
            )
    targets = [
        ("entropy/margin <= 100 ms", max(r[f"{m} ({picks} of {pool})"]["median_s"]
                                          for m in ("entropy", "margin")) <= 0.1),
        ("100 core-set picks <= 5 s", r[f"coreset ({picks} of {pool})"]["median_s"] <= 5.0),
        ("core-set peak <= 2x embeddings",
         r[f"coreset ({picks} of {pool})"]["peak_over_embeddings"] <= 2.0),
    ]
    lines += ["", "Targets: " + "; ".join(f"{t}: {'met' if ok else 'MISSED'}" for t, ok in targets)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--picks", type=int, default=100)
    parser.add_argument("--naive-n", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = run(args.pool, args.dim, args.classes, args.picks, args.naive_n)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "acquisition.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "acquisition.md").write_text(to_markdown(report))
    print(f"wrote {args.out / 'acquisition.json'} and acquisition.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
