"""The live-head refit: labels in, a refreshed queue out, in about a second.

One refit (task ``live.refit_head``, queue ``live``):

1. clears the project's ``refit_pending`` flag (so a label arriving from now on asks for the next
   refit) and reads every label present at that moment;
2. makes sure every pool and dev item has a stored sentence embedding from the current encoder
   (the TAPT'd one once it exists, else the base), embedding only the ones missing;
3. before two classes have labels: zero-shot scores against the label names (plus their one-line
   descriptions), the queue being a diverse seed set (k-means centres) ordered by similarity;
   after: fits the live head (logistic regression on the stored embeddings);
4. chooses the served model by evidence (live head, adapter, or their average) and rebuilds the
   queue from the served model's probabilities with the project's strategy, reasons and nearest
   labelled items coming from the stored embeddings. The evidence is the dev set's macro-F1; a
   project without a dev set compares the adapter's probabilities on the slice of labels its
   round held out with the live head's out-of-fold probabilities (stratified k-fold CV over all
   labelled items) on the same items, and serves the live head on its CV score alone while no
   adapter with a held-out slice exists (a multi-label project: the live head, or the current
   multi-label adapter when its recorded dev macro-F1 is higher on the same dev set, the queue
   coming from the live head either way, :mod:`worker.tasks.live_multilabel`);
5. swaps the queue in and records the head, its scores and the served choice in one transaction.

The encoder and the memory-mapped embeddings stay loaded in the worker process between refits.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from app.config import Settings
from app.db.base import utcnow
from app.db.models import (
    SERVED_ADAPTER,
    SERVED_AVERAGE,
    SERVED_LIVE_HEAD,
    SERVED_ZERO_SHOT,
    SPLIT_DEV,
    SPLIT_POOL,
    Item,
    Label,
    LiveHeadState,
    Project,
    QueueEntry,
)
from app.domain.policy import budget_plan, labels_used
from contract.budget import Phase
from contract.strategies import resolve_strategy
from worker.tasks.project_data import (
    LabelledSet,
    LabelledSets,
    ProjectSnapshot,
    blocked_item_ids,
    labelled_set,
    labelled_sets,
    load_snapshot,
)

log = logging.getLogger(__name__)

QUEUE_OVERFILL = 2
HISTORY_POINTS = 500
ZERO_SHOT_STRATEGY = "zero_shot"
LIVE_DIR = "live"
HELD_OUT_FILE = "held_out.npz"
"""In an adapter version's artifact directory: its probabilities on the labelled items its round
held out (projects without a dev set; written by the retrain, read by the refit's promotion)."""
ZERO_SHOT_SEEDS = 32
"""Diverse seeds (k-means centres) at the head of a zero-shot queue; the rest go by similarity."""
ZERO_SHOT_SAMPLE = 4000
"""k-means for the seeds runs on at most this many pool items (a refit stays around a second)."""
LIVE_CANDIDATES_PER_PICK = 5
LIVE_MIN_CANDIDATES = 2000
FALLBACK_STRATEGY = "margin"
"""Used when the project's strategy needs views the live head cannot give (ensembles, ALPS)."""
BLAS_THREADS = 1
"""The fit and the queue choice run on one BLAS/OpenMP thread: their matrices are small (a
thousand labels by 384 dimensions), and on a busy machine OpenBLAS's worker threads spin-wait for
a core (measured: one refit of 10,000 items with 1,000 labels took 12.9 s with two threads on a
machine with load ~13, 0.75 s with one). Embedding new items keeps torch's threads."""
_LIVE_VIEWS = frozenset({"probs", "embeddings", "labeled_embeddings", "grad_embeddings",
                         "label_names", "class_error"})


@dataclass
class RefitResult:
    served: str
    labels_used: int
    queued: int
    queue_version: int
    embedded: int
    timings: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def live_dir(settings: Settings, project_id: int) -> Path:
    return settings.artifacts / LIVE_DIR / f"project-{project_id}"


# --------------------------------------------------------------------- process-level caches
_ENCODERS: dict[tuple[str, int, int], Any] = {}
_EMBEDDINGS: dict[str, tuple[float, Any]] = {}
_HEADS: dict[tuple[int, str], Any] = {}
"""The last head fitted per (project, encoder key): the next refit warm-starts from it. A new
encoder (TAPT) changes the key, so its embeddings never start from another encoder's weights."""


def previous_head(project_id: int, key: str) -> Any:
    return _HEADS.get((project_id, key))


def remember_head(project_id: int, key: str, head: Any) -> None:
    for old in [k for k in _HEADS if k[0] == project_id]:
        del _HEADS[old]  # one head per project: the current encoder's
    _HEADS[(project_id, key)] = head


def encoder_for(path: str, max_length: int, windows: int = 1) -> Any:
    from worker.ml.sentence_encoder import SentenceEncoder

    key = (path, max_length, windows)
    if key not in _ENCODERS:
        _ENCODERS.clear()  # one encoder resident at a time keeps the worker small
        _ENCODERS[key] = SentenceEncoder(path, max_length=max_length, max_windows=windows)
    return _ENCODERS[key]


def _stored(store: Any) -> Any:
    """The store's vectors, memory-mapped once and reused until a new chunk lands."""
    ids_file = store.directory / "embeddings.ids.npy"
    stamp = ids_file.stat().st_mtime_ns if ids_file.exists() else -1.0
    key = str(store.directory)
    cached = _EMBEDDINGS.get(key)
    if cached is None or cached[0] != stamp or any(store.directory.glob("chunk-*.ids.npy")):
        loaded = store.load()
        stamp = ids_file.stat().st_mtime_ns if ids_file.exists() else -1.0
        _EMBEDDINGS[key] = (stamp, loaded)
        return loaded
    return cached[1]


# --------------------------------------------------------------------- the refit
def refit_live_head(project_id: int, settings: Settings, sessions: Any) -> RefitResult | None:
    t0 = time.perf_counter()
    with sessions() as session:
        state = _claim(session, project_id)
        session.commit()
        if state is None:
            return None
        snapshot = load_snapshot(session, project_id, settings)
        descriptions = _label_descriptions(session, project_id)
        items = _item_ids(session, project_id)
        adapter = None
        if snapshot.multi_label:
            from worker.tasks.live_multilabel import adapter_score

            sets, dev_sets = (labelled_sets(session, snapshot, SPLIT_POOL),
                              labelled_sets(session, snapshot, SPLIT_DEV))
            adapter = adapter_score(session, snapshot)  # the current adapter's dev figures
        else:
            labelled = labelled_set(session, snapshot, SPLIT_POOL)
            dev = labelled_set(session, snapshot, SPLIT_DEV)
        blocked = blocked_item_ids(session, snapshot)
        used = labels_used(session, project_id)  # what the budget counts, as the web's stop does
    timings = {"read": time.perf_counter() - t0}

    embeddings, encoder, embedded, note = _embeddings(settings, sessions, snapshot, items,
                                                      timings)
    queueable = [i for i in items[SPLIT_POOL] if i not in blocked]
    t = time.perf_counter()
    with threadpool_limits(limits=BLAS_THREADS):
        if snapshot.multi_label:
            choice = _multi_label(snapshot, embeddings, queueable, sets, dev_sets,
                                  budget_used=used, adapter=adapter)
        elif labelled.classes_present < 2:
            choice = _zero_shot(snapshot, descriptions, encoder, embeddings, queueable, labelled,
                                budget_used=used)
        else:
            choice = _fit_and_choose(
                settings, snapshot, embeddings, queueable, labelled, dev, timings,
                head_key=_encoder_key(encoder), budget_used=used,
                texts=_TextSource(sessions, snapshot.id, items),
            )
    timings["fit"] = time.perf_counter() - t
    if note:
        choice.reason = f"{choice.reason}; {note}" if choice.reason else note
    t = time.perf_counter()
    labels_used_here = len(sets) if snapshot.multi_label else len(labelled)
    with sessions() as session:
        version = _swap(session, snapshot, choice, blocked_item_ids(session, snapshot))
        _record(session, settings, project_id, choice, labels_used_here, encoder)
        session.commit()
    _drop_old_queues(sessions, project_id, version)
    timings["swap"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return RefitResult(
        served=choice.served,
        labels_used=labels_used_here,
        queued=len(choice.rows),
        queue_version=version,
        embedded=embedded,
        timings={k: round(v, 4) for k, v in timings.items()},
        reason=choice.reason,
    )


def _encoder_key(encoder: Any) -> str:
    from worker.ml.embedding_store import encoder_key

    return str(encoder_key(encoder.fingerprint, encoder.max_length, encoder.max_windows))


def _claim(session: Session, project_id: int) -> LiveHeadState | None:
    """Clear the pending flag before reading labels: a label from now on asks for another refit."""
    if session.get(Project, project_id) is None:
        return None
    state = session.scalars(
        select(LiveHeadState).where(LiveHeadState.project_id == project_id)
    ).first()
    if state is None:
        state = LiveHeadState(project_id=project_id)
        session.add(state)
    state.refit_pending = False
    session.flush()
    return state


def _label_descriptions(session: Session, project_id: int) -> list[str]:
    rows = session.execute(
        select(Label.name, Label.description)
        .where(Label.project_id == project_id)
        .order_by(Label.position, Label.id)
    ).all()
    return [f"{name}: {desc}" if desc else name for name, desc in rows]


def _item_ids(session: Session, project_id: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {SPLIT_POOL: [], SPLIT_DEV: []}
    for item_id, split in session.execute(
        select(Item.id, Item.split)
        .where(Item.project_id == project_id, Item.split.in_((SPLIT_POOL, SPLIT_DEV)))
        .order_by(Item.id)
    ):
        out[split].append(int(item_id))
    return out


def encoder_path(snapshot: ProjectSnapshot) -> str:
    return snapshot.tapt_model_path or snapshot.base_model


def _embeddings(
    settings: Settings, sessions: Any, snapshot: ProjectSnapshot, items: dict[str, list[int]],
    timings: dict[str, float],
) -> tuple[Any, Any, int, str]:
    """The stored embeddings (the missing ones computed), the encoder, how many were computed,
    and what the dashboard says about reading long texts ("" for one window)."""
    from worker.ml.embedding_store import EmbeddingStore, embed_missing, encoder_key

    t = time.perf_counter()
    path = encoder_path(snapshot)
    reading = reading_windows(settings, sessions, snapshot, path, items[SPLIT_POOL])
    encoder = encoder_for(path, settings.live_embed_max_length, reading.windows)
    timings["encoder"] = time.perf_counter() - t
    t = time.perf_counter()
    key = encoder_key(encoder.fingerprint, encoder.max_length, encoder.max_windows)
    store = EmbeddingStore(live_dir(settings, snapshot.id) / "embeddings" / key)
    wanted = items[SPLIT_POOL] + items[SPLIT_DEV]
    missing = store.missing(wanted)
    if missing:
        texts = _texts(sessions, snapshot.id, missing)
        progress = _reading_progress(sessions, snapshot.id)
        progress(0, len(missing))
        embed_missing(store, missing, [texts[i] for i in missing], encoder.embed,
                      progress=progress)
    timings["embed"] = time.perf_counter() - t
    return _stored(store), encoder, len(missing), reading.note(settings.live_embed_max_length)


PROGRESS_EVERY_SECONDS = 3.0
"""Reading progress is written at most this often (and at the start and the end)."""


def _reading_progress(sessions: Any, project_id: int) -> Callable[[int, int], None]:
    """A progress callback for :func:`embed_missing` that writes ``LiveHeadState.progress``
    (read by :func:`app.domain.live_head.reading`). Best-effort, as the runs' progress lines: a
    write that finds the database busy is skipped, never the refit."""
    from sqlalchemy import update
    from sqlalchemy.exc import OperationalError

    started = utcnow().isoformat()
    last = -PROGRESS_EVERY_SECONDS

    def write(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if 0 < done < total and now - last < PROGRESS_EVERY_SECONDS:
            return
        last = now
        value = {"done": done, "total": total, "started_at": started,
                 "updated_at": utcnow().isoformat()}
        try:
            with sessions() as session:
                session.execute(update(LiveHeadState)
                                .where(LiveHeadState.project_id == project_id)
                                .values(progress=value))
                session.commit()
        except OperationalError as exc:
            log.info("reading progress not written: %s", exc)

    return write


WINDOWS_FILE = "windows.json"
WINDOWS_SAMPLE = 1000
LENGTH_CAP = 4096
"""Tokens counted per sampled text at most (beyond the 4 windows the choice can ask for)."""


@dataclass(frozen=True)
class Reading:
    """How the live head reads a text: ``windows`` of ``live_embed_max_length`` tokens, and what
    was measured on the pool when the count was chosen there (None when it was set)."""

    windows: int
    measured: dict[str, Any] | None = None

    def note(self, max_length: int) -> str:
        """What the dashboard says about it (and what it costs), or "" for one window."""
        if self.windows == 1:
            return ""
        note = f"texts are read in up to {self.windows} windows of {max_length} tokens"
        if self.measured:
            note += (f" (three in four pool texts have at most "
                     f"{self.measured['p75_tokens']:.0f} tokens; embedding reads "
                     f"{self.measured['token_ratio']:.1f}x the tokens of the first window)")
        return note


_READINGS: dict[tuple[str, str, int], Reading] = {}
"""The choice per (project's ``windows.json``, encoder path, max_length), so a refit after
every label reads neither that file nor the encoder's files to find it again."""


def reading_windows(
    settings: Settings, sessions: Any, snapshot: ProjectSnapshot, path: str, pool_ids: list[int]
) -> Reading:
    """How many windows of ``live_embed_max_length`` tokens the live head reads per text: the
    setting when fixed, else chosen once per project and encoder from the lengths of up to
    ``WINDOWS_SAMPLE`` pool texts (:func:`worker.ml.sentence_encoder.choose_windows`) and kept
    in ``embeddings/windows.json``, so later imports never re-key the stored embeddings."""
    if settings.live_embed_windows:
        return Reading(int(settings.live_embed_windows))
    max_length = settings.live_embed_max_length
    target = live_dir(settings, snapshot.id) / "embeddings" / WINDOWS_FILE
    memo = (str(target), path, max_length)
    if memo in _READINGS:
        return _READINGS[memo]
    from worker.ml.batching import encode
    from worker.ml.models import load_tokenizer, model_fingerprint, resolve_model_path
    from worker.ml.sentence_encoder import choose_windows

    entry = f"{model_fingerprint(path)}:{max_length}"
    chosen: dict[str, Any] = {}
    if target.exists():
        try:
            chosen = json.loads(target.read_text())
        except (OSError, ValueError):
            chosen = {}
    if entry not in chosen:
        if not pool_ids:
            return Reading(1)  # nothing to measure yet; not remembered
        step = max(1, len(pool_ids) // WINDOWS_SAMPLE)
        sample = pool_ids[::step][:WINDOWS_SAMPLE]
        texts = _texts(sessions, snapshot.id, sample)
        lengths = np.array([len(ids) for ids in encode(
            load_tokenizer(resolve_model_path(path)), [texts[i] for i in sample], LENGTH_CAP)])
        windows = choose_windows(lengths, max_length)
        read = np.minimum(lengths, windows * max_length)  # specials in every window
        chosen[entry] = {
            "windows": windows, "sampled": len(sample),
            "median_tokens": float(np.median(lengths)),
            "p75_tokens": float(np.quantile(lengths, 0.75)),
            "token_ratio": round(float(read.sum() / np.minimum(lengths, max_length).sum()), 2),
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{time.time_ns()}.tmp")
        tmp.write_text(json.dumps(chosen, indent=1))
        tmp.replace(target)
        log.info("project %s: live embeddings read %d window(s) of %d tokens (%s)", snapshot.id,
                 windows, max_length, chosen[entry])
    reading = Reading(int(chosen[entry]["windows"]), chosen[entry])
    _READINGS[memo] = reading
    return reading


def _texts(sessions: Any, project_id: int, item_ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    with sessions() as session:
        for start in range(0, len(item_ids), 5000):
            part = item_ids[start : start + 5000]
            for item_id, text in session.execute(
                select(Item.id, Item.text).where(Item.project_id == project_id, Item.id.in_(part))
            ):
                out[int(item_id)] = text
    return out


@dataclass
class _Choice:
    served: str
    reason: str
    rows: list[int]  # item ids picked, in queue order
    scores: list[float]
    reasons: list[str]
    predicted: list[list[dict[str, Any]]]
    neighbours: list[list[dict[str, Any]]]
    strategy: str
    model_scores: dict[str, float] = field(default_factory=dict)
    head: Any = None
    model_version_id: int | None = None


def _queue_size(snapshot: ProjectSnapshot, used: int, available: int) -> int:
    """The queue's length: the next batch of the budget plan (``used``: what the budget counts,
    :func:`app.domain.policy.labels_used`), overfilled, within what is available."""
    if snapshot.stopped:
        return 0
    plan = budget_plan(snapshot).next_batch(used)
    if plan.phase is Phase.DONE:
        return 0
    return min(available, plan.size * QUEUE_OVERFILL)


def _zero_shot(
    snapshot: ProjectSnapshot, descriptions: list[str], encoder: Any, embeddings: Any,
    queueable: list[int], labelled: LabelledSet, *, budget_used: int,
) -> _Choice:
    from worker.ml.live_head import zero_shot_scores
    from worker.ml.queue_view import nearest_labelled, top_predictions

    n = _queue_size(snapshot, budget_used, len(queueable))
    empty = _Choice(SERVED_ZERO_SHOT, "", [], [], [], [], [], ZERO_SHOT_STRATEGY)
    if n == 0 or not descriptions:
        return empty
    pool = embeddings.take(queueable)
    label_emb = encoder.embed(descriptions)
    probs = zero_shot_scores(pool, label_emb)
    similarity = pool @ (label_emb / np.linalg.norm(label_emb, axis=1, keepdims=True)).T
    best_all = similarity.max(axis=1)
    order = _zero_shot_order(pool, best_all, n, seed=snapshot.data_version)
    reasons = []
    seeds = min(n, ZERO_SHOT_SEEDS) if n < len(pool) else 0
    for position, r in enumerate(order):
        k = int(similarity[r].argmax())
        why = ("a k-means centre, for coverage" if position < seeds
               else "among the items most similar to a label")
        reasons.append(
            f"Zero-shot guess (no model yet): closest to the label '{snapshot.label_names[k]}' "
            f"(cosine similarity {similarity[r, k]:.2f}); picked as {why}."
        )
    lab = embeddings.take(labelled.item_ids) if len(labelled) else None
    return _Choice(
        served=SERVED_ZERO_SHOT,
        reason="fewer than two classes have labels: zero-shot similarity to the label names",
        rows=[queueable[r] for r in order],
        scores=[round(float(similarity[r].max()), 4) for r in order],
        reasons=[x[:300] for x in reasons],
        predicted=top_predictions(probs[order], snapshot.label_names),
        neighbours=nearest_labelled(pool[order], lab, labelled, snapshot.label_names),
        strategy=ZERO_SHOT_STRATEGY,
    )


def _zero_shot_order(pool: np.ndarray, best: np.ndarray, n: int, *, seed: int) -> list[int]:
    """Seed items picked by diversity (k-means centres over a bounded sample, at most
    ``ZERO_SHOT_SEEDS``), then the rest of the queue by similarity to the labels; both parts in
    descending similarity, seeds first so the first labels cover the pool."""
    from worker.ml.live_head import diverse_seed

    if n >= len(pool):
        return [int(i) for i in np.argsort(-best, kind="stable")]
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(pool), size=min(len(pool), ZERO_SHOT_SAMPLE), replace=False)
    k = min(n, ZERO_SHOT_SEEDS, len(sample))
    seeds = [int(sample[i]) for i in diverse_seed(pool[sample], k, seed=seed)]
    seeds.sort(key=lambda r: -best[r])
    taken = set(seeds)
    rest = [int(i) for i in np.argsort(-best, kind="stable") if int(i) not in taken]
    return seeds + rest[: n - len(seeds)]


@dataclass
class _TextSource:
    """Where the TF-IDF half reads the project's texts (only when it must transform new ones)."""

    sessions: Any
    project_id: int
    items: dict[str, list[int]]

    def __call__(self, item_ids: list[int]) -> dict[int, str]:
        return _texts(self.sessions, self.project_id, item_ids)


def _fit_and_choose(
    settings: Settings, snapshot: ProjectSnapshot, embeddings: Any, queueable: list[int],
    labelled: LabelledSet, dev: LabelledSet, timings: dict[str, float], *, head_key: str = "",
    budget_used: int, texts: _TextSource | None = None,
) -> _Choice:
    from worker.ml.live_head import LiveHead, LiveHeadConfig, choose_served

    k = len(snapshot.label_names)
    config = LiveHeadConfig(features="embed")
    X = embeddings.take(labelled.item_ids)
    y = np.asarray(labelled.labels)
    t = time.perf_counter()
    head = LiveHead(config).fit(X, y, k, warm_start=previous_head(snapshot.id, head_key))
    remember_head(snapshot.id, head_key, head)
    timings["head_fit"] = time.perf_counter() - t
    pool = embeddings.take(queueable)
    probs = head.predict_proba(pool)
    trained = None
    dev_X = embeddings.take(dev.item_ids)
    hybrid = (settings.live_hybrid and len(dev) > 0 and texts is not None
              and len(labelled) >= config.auto_min_labels)
    adapter = _adapter_probs(settings, snapshot)
    served, reason, scores = SERVED_LIVE_HEAD, "", {}
    dev_probs = head.predict_proba(dev_X) if len(dev) else None
    hybrid_note = ""
    if hybrid:
        assert dev_probs is not None and texts is not None
        t = time.perf_counter()
        halves = _Halves(X, y, pool, dev_X)
        head, probs, dev_probs, hybrid_note = _hybrid(
            settings, snapshot, head, probs, dev_probs, queueable, labelled, dev, texts, timings,
            halves, head_key, self_train=settings.live_self_training)
        timings["hybrid"] = time.perf_counter() - t
    if settings.live_self_training and len(dev) and head.features_used != "hybrid":
        t = time.perf_counter()  # embeddings alone: their own confident items
        head, probs, trained = _self_train(head, X, y, k, pool, probs, queueable, labelled,
                                           dev_X, dev)
        dev_probs = head.predict_proba(dev_X)
        timings["self_train"] = time.perf_counter() - t
    t = time.perf_counter()
    if dev_probs is not None:
        candidates = {"live_head": dev_probs}
        if adapter is not None and adapter.covers(dev.item_ids):
            candidates["adapter"] = adapter.probs_of(dev.item_ids)
        picked = choose_served(candidates, dev.labels)
        served, reason, scores = picked.name, picked.reason, dict(picked.scores)
    else:
        picked = _choose_without_dev(snapshot, X, y, labelled, config, timings)
        served, reason, scores = picked.name, picked.reason, dict(picked.scores)
    if trained is not None:
        reason = f"{reason}; {trained.reason}" if reason else trained.reason
    if hybrid_note:
        reason = f"{reason}; {hybrid_note}" if reason else hybrid_note
    timings["choose_and_predict"] = time.perf_counter() - t
    version_id = None
    if served in (SERVED_ADAPTER, SERVED_AVERAGE):
        covered = adapter.covered(queueable) if adapter is not None else np.zeros(0, bool)
        enough = 2 * _queue_size(snapshot, budget_used, len(queueable))
        if adapter is not None and len(covered) and covered.all():
            a = adapter.probs_of(queueable)
            probs = a if served == SERVED_ADAPTER else 0.5 * (a + probs)
            version_id = adapter.version_id
        elif adapter is not None and int(covered.sum()) >= max(enough, 1):
            # A large pool's round scored candidates; the rest is being scored in the background.
            rows = np.flatnonzero(covered)
            reason += (
                f"; the adapter has scored {len(rows):,} of {len(queueable):,} pool items so "
                "far, and the queue comes from those"
            )
            queueable = [queueable[r] for r in rows]
            pool, probs = pool[rows], probs[rows]
            a = adapter.probs_of(queueable)
            probs = a if served == SERVED_ADAPTER else 0.5 * (a + probs)
            version_id = adapter.version_id
        else:
            reason += "; the adapter has not scored the whole pool yet, so the queue uses the head"
    t = time.perf_counter()
    choice = _select(snapshot, probs, pool, queueable, labelled, X, served, reason,
                     budget_used=budget_used)
    timings["select"] = time.perf_counter() - t
    choice.model_scores = scores
    choice.head = head
    choice.model_version_id = version_id
    return choice


def _multi_label(
    snapshot: ProjectSnapshot, embeddings: Any, queueable: list[int], labelled: LabelledSets,
    dev: LabelledSets, *, budget_used: int, adapter: Any = None,
) -> _Choice:
    """A multi-label project's head and queue (:mod:`worker.tasks.live_multilabel`); the served
    model is the live head or, when it wins on dev, the current multi-label ``adapter``
    (:class:`worker.tasks.live_multilabel.AdapterScore`). The queue comes from the live head."""
    from worker.tasks.live_multilabel import choose

    picked = choose(
        snapshot.label_names, embeddings.take(queueable), queueable, labelled,
        embeddings.take(labelled.item_ids), dev, embeddings.take(dev.item_ids),
        _queue_size(snapshot, budget_used, len(queueable)), strategy=snapshot.strategy,
        seed=snapshot.data_version + 1, adapter=adapter)
    return _Choice(  # no head yet (cold start): nothing served, items come at random
        served=picked.served if picked.head is not None else SERVED_ZERO_SHOT,
        reason=picked.reason, rows=picked.rows, scores=picked.scores,
        reasons=picked.reasons, predicted=picked.predicted, neighbours=picked.neighbours,
        strategy=picked.strategy, model_scores=picked.model_scores, head=picked.head)


def _self_train(
    head: Any, X: np.ndarray, y: np.ndarray, k: int, pool: np.ndarray, probs: np.ndarray,
    queueable: list[int], labelled: LabelledSet, dev_X: np.ndarray, dev: LabelledSet,
) -> tuple[Any, np.ndarray, Any]:
    """The live head refit with confident pseudo-labels from the unlabelled pool unless that
    loses on the dev set (``worker.ml.self_training``). Pseudo-labels live in the head only:
    they are not annotations, so exports and the label budget never see them."""
    from worker.ml.self_training import self_train

    unlabelled = ~np.isin(np.asarray(queueable, dtype=np.int64),
                          np.asarray(labelled.item_ids, dtype=np.int64))
    rows = np.flatnonzero(unlabelled)
    trained = self_train(head, X, y, k, pool[rows], probs[rows], dev_X, np.asarray(dev.labels))
    if trained.used:
        return trained.head, trained.head.predict_proba(pool), trained
    return head, probs, trained


@dataclass
class _Halves:
    """What the hybrid head's evidence and self-training need besides the TF-IDF space: the
    labelled items' embeddings and labels, the queueable pool's embeddings and the dev items'
    embeddings."""

    X: np.ndarray
    y: np.ndarray
    pool: np.ndarray
    dev_X: np.ndarray


def _hybrid(
    settings: Settings, snapshot: ProjectSnapshot, head: Any, probs: np.ndarray,
    dev_probs: np.ndarray, queueable: list[int], labelled: LabelledSet, dev: LabelledSet,
    texts: _TextSource, timings: dict[str, float], halves: _Halves, encoder: str, *,
    self_train: bool = False,
) -> tuple[Any, np.ndarray, np.ndarray, str]:
    """The ensemble of the embedding head with a TF-IDF LR unless that loses by more than
    ``auto_margin`` macro-F1 on the evidence: the dev set and the labels' out-of-fold
    predictions (``live_tfidf.fold_evidence``, computed on the TF-IDF LR's cadence); then the
    embedding head (:mod:`worker.tasks.live_tfidf`). The TF-IDF half's share of the mean and
    the mean itself (arithmetic or geometric) are chosen on the same evidence
    (``best_tfidf_pooling``; the head's configured mixture at 0.5 without out-of-fold evidence).
    Returns (head, pool probabilities, dev probabilities, what the dashboard says about it)."""
    from contract.errors import MLError
    from worker.ml.live_head import LiveHead, best_tfidf_pooling, macro_f1, mix, softmax
    from worker.tasks.live_tfidf import (
        fold_evidence,
        model_dir,
        space_dir,
        tfidf_model,
        tfidf_space,
    )

    t = time.perf_counter()
    try:
        space = tfidf_space(
            space_dir(live_dir(settings, snapshot.id)), texts.items[SPLIT_POOL],
            texts.items[SPLIT_DEV], texts)
        timings["tfidf_space"] = time.perf_counter() - t
        t = time.perf_counter()
        model, fitted = tfidf_model(
            model_dir(live_dir(settings, snapshot.id)), space, labelled.item_ids,
            np.asarray(labelled.labels), len(snapshot.label_names), head.config)
    except (MLError, ValueError, OSError) as exc:  # e.g. texts without a single word
        log.warning("project %s: no TF-IDF half: %s", snapshot.id, exc)
        return head, probs, dev_probs, f"live head on sentence embeddings (no TF-IDF: {exc})"
    timings["tfidf_fit" if fitted else "tfidf_reuse"] = time.perf_counter() - t
    t = time.perf_counter()
    try:
        evidence, computed = fold_evidence(
            model_dir(live_dir(settings, snapshot.id)), space, model, fitted, labelled.item_ids,
            halves.X, halves.y, len(snapshot.label_names), head.config, encoder)
    except OSError as exc:  # not written: judged on dev alone this time
        log.warning("project %s: no out-of-fold evidence: %s", snapshot.id, exc)
        evidence, computed = None, False
    if computed:
        timings["tfidf_evidence"] = time.perf_counter() - t
    dev_tfidf = softmax(model.linear.logits(space.take(dev.item_ids)))
    dev_gold = gold = np.asarray(dev.labels)
    basis = f"dev macro-F1 on {len(gold):,} dev items"
    alone_p, tfidf_p = dev_probs, dev_tfidf
    share = 0.5  # the TF-IDF half's share of the mean: chosen only with the labels' evidence
    mixture = head.config.tfidf_mixture
    if evidence is not None:
        gold = np.concatenate([evidence.gold, gold])
        alone_p = np.concatenate([evidence.embed, dev_probs])
        tfidf_p = np.concatenate([evidence.tfidf, dev_tfidf])
        basis = (f"macro-F1 on {len(dev):,} dev items + {evidence.folds}-fold CV over "
                 f"{len(evidence.gold):,} labels")
        mixture, share = best_tfidf_pooling(gold, alone_p, tfidf_p)
    both = mix(dev_probs, dev_tfidf, share, mixture)
    dev_joined = macro_f1(dev_gold, both.argmax(axis=1))
    alone = macro_f1(gold, alone_p.argmax(axis=1))
    joined = macro_f1(gold, mix(alone_p, tfidf_p, share, mixture).argmax(axis=1))
    scores = (f"{basis}: {joined:.3f} with TF-IDF at a share of {share:g} ({mixture} mean), "
              f"{alone:.3f} on embeddings alone")
    if joined < alone - head.config.auto_margin:
        return head, probs, dev_probs, (f"live head on sentence embeddings ({scores}; TF-IDF "
                                        f"loses by more than {head.config.auto_margin:g})")
    hybrid = LiveHead.ensemble(head, model.linear, space.tfidf, selection={
        "features": "hybrid", "macro_f1": {"hybrid": joined, "embed": alone},
        "evidence": {"dev": len(dev), "cv_labels": 0 if evidence is None else len(evidence.gold)},
        "tfidf_labels": model.n_labels, "tfidf_space": space.fingerprint}, share=share,
        mixture=mixture)
    pool_mean = mix(probs, softmax(model.linear.logits(space.take(queueable))), share,
                    mixture)
    note = (f"live head on sentence embeddings + TF-IDF of the project's texts ({scores}; "
            f"TF-IDF model fitted on {model.n_labels:,} labels)")
    if not self_train:
        return hybrid, pool_mean, both, note
    t = time.perf_counter()
    trained, verdict = _self_train_hybrid(
        settings, snapshot, head, model, fitted, space, halves, pool_mean, queueable, labelled,
        dev, dev_joined, timings, share, mixture)
    timings["self_train"] = time.perf_counter() - t
    note = f"{note}; {verdict}" if verdict else note
    if trained is None:
        return hybrid, pool_mean, both, note
    return (*trained, note)


def _self_train_hybrid(
    settings: Settings, snapshot: ProjectSnapshot, head: Any, model: Any, fitted: bool,
    space: Any, halves: _Halves, pool_mean: np.ndarray, queueable: list[int],
    labelled: LabelledSet, dev: LabelledSet, plain_dev_f1: float, timings: dict[str, float],
    share: float, mixture: str,
) -> tuple[tuple[Any, np.ndarray, np.ndarray] | None, str]:
    """Both halves refit with the mean's confident pool items as pseudo-labels (weight
    ``PSEUDO_WEIGHT``: ``worker.ml.self_training``), kept unless the dev macro-F1 drops by more than
    ``auto_margin`` (the hybrid's own margin: on dev sets of 100-200 items one item moves a rare
    class's F1 by points): the embedding half with as many as there are labels (class-balanced), the
    TF-IDF half with up to ``settings.live_tfidf_pseudo_labels`` of them (``pool_pseudo_labels``;
    the embedding half's when that is 0). The self-trained TF-IDF LR is refitted on the TF-IDF LR's
    cadence (10 % more labels) and saved beside it; the embedding half every refit. Returns ((head,
    pool probabilities, dev probabilities) or None when not kept or nothing was pseudo-labelled,
    what the dashboard says ("" when nothing was)). ``share``, ``mixture``: the TF-IDF half's share
    of the mean and how the halves are pooled, as chosen for the plain hybrid."""
    from worker.ml.live_head import LiveHead, macro_f1, mix, softmax
    from worker.ml.self_training import (
        keep_verdict,
        pool_pseudo_labels,
        pseudo_labels,
        pseudo_weights,
        refit_with_pseudo_labels,
    )
    from worker.tasks.live_tfidf import SelfTraining, model_dir, self_trained_model

    k = len(snapshot.label_names)
    rows, pseudo = pseudo_labels(pool_mean, halves.y, k)
    if len(rows) == 0:
        return None, ""
    embed = refit_with_pseudo_labels(head, halves.X, halves.y, k, halves.pool[rows], pseudo)
    whole_pool = settings.live_tfidf_pseudo_labels > 0

    def training() -> SelfTraining:  # only when the self-trained TF-IDF LR is refitted
        t_rows, t_pseudo = rows, pseudo
        if whole_pool:
            t_rows, t_pseudo = pool_pseudo_labels(pool_mean, halves.y, k,
                                                  settings.live_tfidf_pseudo_labels)
        return SelfTraining(labelled.item_ids + [queueable[r] for r in t_rows],
                            np.concatenate([halves.y, t_pseudo]),
                            pseudo_weights(len(halves.y), len(t_rows)), len(t_rows))

    t = time.perf_counter()
    st_model, st_fitted = self_trained_model(
        model_dir(live_dir(settings, snapshot.id)), space, model, fitted, training, k,
        head.config)
    timings["tfidf_self_train_fit" if st_fitted else "tfidf_self_train_reuse"] = (
        time.perf_counter() - t)
    dev_st = mix(embed.predict_proba(halves.dev_X),
                 softmax(st_model.linear.logits(space.take(dev.item_ids))), share, mixture)
    st_f1 = macro_f1(np.asarray(dev.labels), dev_st.argmax(axis=1))
    kept, words = keep_verdict(st_f1, plain_dev_f1, head.config.auto_margin, "without")
    half = ("" if not whole_pool or st_model.pseudo_labels is None
            else f" (the TF-IDF half on {st_model.pseudo_labels:,})")  # as fitted, maybe earlier
    verdict = f"self-training on {len(rows):,} confident pool items{half} {words}"
    if not kept:
        return None, verdict
    hybrid = LiveHead.ensemble(embed, st_model.linear, space.tfidf, selection={
        "features": "hybrid", "self_trained": True, "pseudo_labels": len(rows),
        "tfidf_pseudo_labels": st_model.pseudo_labels,
        "dev_macro_f1": {"self-trained": st_f1, "hybrid": plain_dev_f1},
        "tfidf_labels": st_model.n_labels, "tfidf_space": space.fingerprint}, share=share,
        mixture=mixture)
    pool_probs = mix(embed.predict_proba(halves.pool),
                     softmax(st_model.linear.logits(space.take(queueable))), share, mixture)
    return (hybrid, pool_probs, dev_st), verdict


def _choose_without_dev(
    snapshot: ProjectSnapshot, X: np.ndarray, y: np.ndarray, labelled: LabelledSet,
    config: Any, timings: dict[str, float],
) -> Any:
    """No dev set: the live head's stratified k-fold CV over the labelled items, compared with
    the current adapter on the slice its round held out (``held_out.npz`` in its artifact)."""
    from contract.errors import ConfigError
    from worker.ml.live_head import cross_validate, promote_without_dev

    t = time.perf_counter()
    try:
        cv = cross_validate(X, y, len(snapshot.label_names), config=config)
    except ConfigError:
        cv = None  # too few labels of any one class
    timings["cv"] = time.perf_counter() - t
    held_out = load_held_out(snapshot.current_artifact)
    picked = promote_without_dev(cv, labelled.item_ids, y, held_out)
    if held_out is None and snapshot.current_version_id is not None:
        picked.reason += (
            f"; adapter v{snapshot.current_version_number} held no slice out (trained while the "
            "project had a dev set, or before holding out existed), so it is not compared"
        )
    return picked


def load_held_out(artifact: str | None) -> Any:
    """The adapter's probabilities on the labelled items its round held out (no dev set), or
    None (no adapter, a round with a dev set, or an unreadable file)."""
    from worker.ml.live_head import HeldOut

    if artifact is None:
        return None
    path = Path(artifact) / HELD_OUT_FILE
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            ids, probs = np.asarray(data["item_ids"]), np.asarray(data["probs"])
    except (OSError, ValueError, KeyError) as exc:
        log.warning("held-out probabilities unreadable at %s: %s", path, exc)
        return None
    if probs.ndim != 2 or len(ids) != len(probs):
        return None
    return HeldOut(ids, probs)


def _select(
    snapshot: ProjectSnapshot, probs: np.ndarray, pool: np.ndarray, queueable: list[int],
    labelled: LabelledSet, labelled_emb: np.ndarray, served: str, reason: str, *,
    budget_used: int,
) -> _Choice:
    from worker.ml.acquisition import PoolView, get_strategy
    from worker.ml.queue_view import nearest_labelled, top_predictions

    n = _queue_size(snapshot, budget_used, len(queueable))
    name = resolve_strategy(snapshot.strategy)
    strategy = get_strategy(name)
    if not strategy.requires <= _LIVE_VIEWS:
        name = FALLBACK_STRATEGY
        strategy = get_strategy(name)
    if n == 0:
        return _Choice(served, reason, [], [], [], [], [], name)
    candidates = _candidates(probs, n)
    view = PoolView(
        probs=probs[candidates].astype(np.float32), embeddings=pool[candidates],
        labeled_embeddings=labelled_emb if len(labelled_emb) else None,
        label_names=snapshot.label_names,
    )
    picks = strategy.select(view, n, seed=snapshot.data_version + 1)
    rows = [int(candidates[p.index]) for p in picks]
    return _Choice(
        served=served,
        reason=reason,
        rows=[queueable[r] for r in rows],
        scores=[float(p.score) for p in picks],
        reasons=[p.reason[:300] for p in picks],
        predicted=top_predictions(probs[rows], snapshot.label_names),
        neighbours=nearest_labelled(pool[rows], labelled_emb, labelled, snapshot.label_names),
        strategy=f"{name} ({served.replace('_', ' ')})",
    )


def _candidates(probs: np.ndarray, n: int) -> np.ndarray:
    """Pool rows the strategy looks at: all of a small pool, else the ``LIVE_CANDIDATES_PER_PICK``
    x n least certain by margin, so a refit on 100,000 items stays about a second (diversity
    strategies then spread the picks over the uncertain region rather than the whole pool)."""
    m = max(n * LIVE_CANDIDATES_PER_PICK, LIVE_MIN_CANDIDATES)
    if len(probs) <= m:
        return np.arange(len(probs))
    from worker.ml.acquisition.uncertainty import top_two

    first, second = top_two(probs)
    return np.sort(np.argpartition(first - second, m - 1)[:m])


# --------------------------------------------------------------------- adapter probabilities
@dataclass
class AdapterProbs:
    """Pool/dev probabilities of one adapter version, written by the adapter's queue rebuild."""

    version_id: int
    ids: np.ndarray
    probs: np.ndarray

    def covers(self, item_ids: list[int]) -> bool:
        return bool(len(item_ids)) and bool(self.covered(item_ids).all())

    def covered(self, item_ids: list[int]) -> np.ndarray:
        """Whether each of ``item_ids`` has stored probabilities."""
        return np.isin(np.asarray(item_ids, dtype=np.int64), self.ids)

    def probs_of(self, item_ids: list[int]) -> np.ndarray:
        pos = np.searchsorted(self.ids, np.asarray(item_ids, dtype=np.int64))
        return np.asarray(self.probs[pos], dtype=np.float64)


def adapter_probs_dir(settings: Settings, project_id: int, version_id: int) -> Path:
    return live_dir(settings, project_id) / f"adapter-{version_id}"


def save_adapter_probs(
    settings: Settings, project_id: int, version_id: int, item_ids: list[int], probs: np.ndarray
) -> None:
    """Called by the adapter's queue rebuild: its probabilities over the items it scored."""
    directory = adapter_probs_dir(settings, project_id, version_id)
    directory.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(item_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    existing = load_adapter_probs(settings, project_id, version_id)
    if existing is not None:
        keep = ~np.isin(existing.ids, ids)
        ids = np.concatenate([existing.ids[keep], ids[order]])
        probs = np.concatenate([existing.probs[keep], np.asarray(probs)[order]])
        order = np.argsort(ids, kind="stable")
    else:
        probs = np.asarray(probs)
    tmp = directory / ".probs.npy.tmp"
    with tmp.open("wb") as handle:
        np.save(handle, np.asarray(probs)[order].astype(np.float32), allow_pickle=False)
    tmp.replace(directory / "probs.npy")
    tmp = directory / ".ids.npy.tmp"
    with tmp.open("wb") as handle:
        np.save(handle, ids[order], allow_pickle=False)
    tmp.replace(directory / "ids.npy")


def load_adapter_probs(settings: Settings, project_id: int, version_id: int) -> AdapterProbs | None:
    directory = adapter_probs_dir(settings, project_id, version_id)
    if not (directory / "ids.npy").exists():
        return None
    ids = np.load(directory / "ids.npy")
    probs = np.load(directory / "probs.npy")
    if len(ids) != len(probs):
        return None  # a write in progress: try again at the next refit
    return AdapterProbs(version_id, ids, probs)


def _adapter_probs(settings: Settings, snapshot: ProjectSnapshot) -> AdapterProbs | None:
    if snapshot.current_version_id is None:
        return None
    return load_adapter_probs(settings, snapshot.id, snapshot.current_version_id)


# --------------------------------------------------------------------- writing
def _swap(
    session: Session, snapshot: ProjectSnapshot, choice: _Choice, blocked: set[int],
) -> int:
    from app.domain.annotation.common import take_write_lock

    take_write_lock(session, snapshot.id)
    project = session.get(Project, snapshot.id, populate_existing=True)
    assert project is not None
    version = project.queue_version + 1
    rows = []
    rank = 0
    for i, item_id in enumerate(choice.rows):
        if item_id in blocked:
            continue  # labelled or leased while we were fitting
        rows.append({
            "project_id": snapshot.id, "queue_version": version, "item_id": item_id,
            "rank": rank, "score": float(choice.scores[i]), "strategy": choice.strategy[:50],
            "reason": choice.reasons[i], "predicted": choice.predicted[i],
            "neighbours": choice.neighbours[i], "model_version_id": choice.model_version_id,
        })
        rank += 1
    if rows:
        session.execute(insert(QueueEntry), rows)
    project.queue_version = version
    session.flush()
    return version


def _record(
    session: Session, settings: Settings, project_id: int, choice: _Choice,
    labels_used: int, encoder: Any,
) -> None:
    from worker.ml.embedding_store import encoder_key

    state = session.scalars(
        select(LiveHeadState).where(LiveHeadState.project_id == project_id)
    ).one()
    state.fitted_at = utcnow()
    state.progress = {}
    state.refits += 1
    state.labels_used = labels_used
    state.encoder_key = encoder_key(encoder.fingerprint, encoder.max_length, encoder.max_windows)
    state.served = choice.served
    state.served_reason = choice.reason
    state.scores = {k: round(float(v), 4) for k, v in choice.model_scores.items()}
    point = {"labels": labels_used, **state.scores, "served": choice.served}
    state.history = [*list(state.history or [])[-(HISTORY_POINTS - 1):], point]
    if choice.head is not None:
        state.artifact_path = str(_save_head(settings, project_id, choice.head, encoder, session))
    session.flush()


def _save_head(
    settings: Settings, project_id: int, head: Any, encoder: Any, session: Session
) -> Path:
    """The head and the encoder it belongs to, replacing the previous one atomically."""
    base = live_dir(settings, project_id)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".head-{time.time_ns()}"
    names = list(session.scalars(
        select(Label.name).where(Label.project_id == project_id).order_by(Label.position, Label.id)
    ))
    head.save(tmp, extra={
        "encoder": encoder.path, "encoder_fingerprint": encoder.fingerprint,
        "max_length": encoder.max_length, "windows": encoder.max_windows,
        "pooling": "mean, L2-normalised" if encoder.max_windows == 1 else
        f"mean over up to {encoder.max_windows} windows of {encoder.max_length} tokens, "
        "L2-normalised",
        "label_names": names,
    })
    final = base / "head"
    old = base / f".old-{time.time_ns()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _drop_old_queues(sessions: Any, project_id: int, version: int) -> None:
    with sessions() as session:
        session.execute(
            delete(QueueEntry).where(
                QueueEntry.project_id == project_id, QueueEntry.queue_version < version
            )
        )
        session.commit()
