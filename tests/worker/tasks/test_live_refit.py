"""The live-head refit body: zero-shot cold start, refit after labels, promotion by evidence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from app.db.models import (
    SERVED_ADAPTER,
    SERVED_LIVE_HEAD,
    SERVED_ZERO_SHOT,
    Annotation,
    LiveHeadState,
    ModelVersion,
    Project,
    QueueEntry,
)
from app.domain.live_head import request_live_refit
from app.jobs import Job
from contract.tasks import TASK_LIVE_REFIT
from tests.app.domain.runs_support import Db
from tests.worker.ml.tiny import LABEL_NAMES
from tests.worker.tasks.seed import Seeded
from worker.ml.sentence_encoder import SentenceEncoder
from worker.tasks.live_refit import refit_live_head, save_adapter_probs


def refit(file_db: Db, seeded: Seeded):  # type: ignore[no-untyped-def]
    result = refit_live_head(seeded.project_id, file_db.settings, file_db.sessions)
    assert result is not None
    return result


def queue(file_db: Db, seeded: Seeded) -> list[QueueEntry]:
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        return list(session.scalars(
            select(QueueEntry)
            .where(QueueEntry.project_id == seeded.project_id,
                   QueueEntry.queue_version == project.queue_version)
            .order_by(QueueEntry.rank)
        ))


def label(file_db: Db, seeded: Seeded, item_ids: list[int], wrong: bool = False) -> None:
    with file_db.session() as session:
        for item_id in item_ids:
            y = seeded.pool_gold[item_id]
            if wrong:
                y = (y + 1) % len(LABEL_NAMES)
            session.add(Annotation(project_id=seeded.project_id, item_id=item_id,
                                   label_id=seeded.label_ids[y]))
        session.commit()


def state(file_db: Db, seeded: Seeded) -> LiveHeadState:
    with file_db.session() as session:
        row = session.scalars(
            select(LiveHeadState).where(LiveHeadState.project_id == seeded.project_id)
        ).one()
        session.expunge(row)
        return row


def test_zero_shot_cold_start_orders_the_queue_by_similarity_to_the_label_names(
    file_db: Db, seeded: Seeded, tiny_model: object
) -> None:
    from app.db.models import Item, Label

    with file_db.session() as session:
        label = session.scalars(select(Label).where(Label.project_id == seeded.project_id)).first()
        assert label is not None
        label.description = "games, teams and the scores of matches"
        session.commit()
    result = refit(file_db, seeded)
    assert result.served == SERVED_ZERO_SHOT
    entries = queue(file_db, seeded)
    assert len(entries) == 12  # two batches of 6 (the overfill), diverse k-means centres
    assert all(e.strategy == "zero_shot" for e in entries)
    assert "Zero-shot guess" in entries[0].reason
    # independent recomputation: cosine similarity of each queued item to the best label prompt
    encoder = SentenceEncoder(str(tiny_model), max_length=128)
    prompts = [f"{LABEL_NAMES[0]}: games, teams and the scores of matches", *LABEL_NAMES[1:]]
    with file_db.session() as session:
        texts = {i.id: i.text for i in session.scalars(
            select(Item).where(Item.id.in_([e.item_id for e in entries])))}
    items = encoder.embed([texts[e.item_id] for e in entries])
    labels = encoder.embed(prompts)
    best = (items @ labels.T).max(axis=1)
    assert np.all(np.diff(best) <= 1e-3), "queue is not in descending label similarity"
    np.testing.assert_allclose([e.score for e in entries], best, atol=2e-3)
    # the guess shown is the zero-shot argmax label
    for e, row in zip(entries, items @ labels.T, strict=True):
        assert e.predicted[0]["label"] == LABEL_NAMES[int(row.argmax())]


def test_refit_after_labels_serves_the_live_head_and_requeues(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    refit(file_db, seeded)
    first = {e.item_id for e in queue(file_db, seeded)}
    chosen = seeded.pool_ids[:12]
    label(file_db, seeded, chosen)
    with file_db.session() as session:
        assert request_live_refit(session, seeded.project_id) is True
        assert request_live_refit(session, seeded.project_id) is False  # coalesced
        session.commit()
    assert [j.name for j in sent] == [TASK_LIVE_REFIT]
    assert state(file_db, seeded).refit_pending is True
    result = refit(file_db, seeded)
    assert result.labels_used == 12
    after = state(file_db, seeded)
    assert after.refit_pending is False and after.labels_used == 12
    assert after.served == SERVED_LIVE_HEAD
    assert "live_head" in after.scores  # dev macro-F1 of the head
    entries = queue(file_db, seeded)
    assert entries and not {e.item_id for e in entries} & set(chosen)
    assert all("live head" in e.strategy for e in entries)
    assert all(len(e.predicted) == 3 and e.neighbours for e in entries)
    assert {e.item_id for e in entries} != first
    # the saved head loads with numpy and knows its encoder
    from worker.ml.live_head import LiveHead

    head = LiveHead.load(after.artifact_path)
    assert head.extra["encoder_fingerprint"] and head.n_labels == 12


def _adapter_version(file_db: Db, seeded: Seeded) -> int:
    with file_db.session() as session:
        version = ModelVersion(project_id=seeded.project_id, version=1, artifact_path="adapters/v1")
        session.add(version)
        session.flush()
        project = session.get(Project, seeded.project_id)
        assert project is not None
        project.current_model_version_id = version.id
        session.commit()
        return version.id


def _adapter_probs(
    file_db: Db, seeded: Seeded, version_id: int, *, correct: bool, pool: list[int] | None = None
) -> None:
    """Adapter probabilities on the dev set and ``pool`` (all of it by default), right or always
    one class off."""
    with file_db.session() as session:
        dev_gold = {a.item_id: seeded.label_ids.index(a.label_id) for a in session.scalars(
            select(Annotation).where(Annotation.item_id.in_(seeded.dev_ids)))}
    ids = list(seeded.pool_ids if pool is None else pool) + seeded.dev_ids
    gold = [seeded.pool_gold.get(i, dev_gold.get(i, 0)) for i in ids]
    k = len(LABEL_NAMES)
    target = [g if correct else (g + 1) % k for g in gold]
    probs = np.full((len(ids), k), 0.1 / (k - 1))
    probs[np.arange(len(ids)), target] = 0.9
    save_adapter_probs(file_db.settings, seeded.project_id, version_id, ids, probs)


def test_promotion_serves_the_adapter_when_it_beats_the_head_on_the_dev_set(
    file_db: Db, seeded: Seeded
) -> None:
    label(file_db, seeded, seeded.pool_ids[:6], wrong=True)  # a head trained on bad labels
    version_id = _adapter_version(file_db, seeded)
    _adapter_probs(file_db, seeded, version_id, correct=True)
    result = refit(file_db, seeded)
    assert result.served == SERVED_ADAPTER
    s = state(file_db, seeded)
    assert s.scores["adapter"] == 1.0 and s.scores["adapter"] > s.scores["live_head"]
    assert "best dev macro-F1" in s.served_reason
    entries = queue(file_db, seeded)
    assert entries and all(e.model_version_id == version_id for e in entries)
    assert all(e.predicted[0]["prob"] == 0.9 for e in entries)  # the adapter's guesses


def test_promotion_keeps_the_head_when_the_adapter_is_worse(
    file_db: Db, seeded: Seeded
) -> None:
    label(file_db, seeded, seeded.pool_ids[:24])
    version_id = _adapter_version(file_db, seeded)
    _adapter_probs(file_db, seeded, version_id, correct=False)
    result = refit(file_db, seeded)
    s = state(file_db, seeded)
    assert s.scores["adapter"] == 0.0
    assert result.served == SERVED_LIVE_HEAD, s.served_reason
    assert all(e.model_version_id is None for e in queue(file_db, seeded))


def test_refit_warm_starts_from_the_head_of_the_same_encoder_only(
    file_db: Db, seeded: Seeded, sent: list[Job]
) -> None:
    from worker.tasks import live_refit

    label(file_db, seeded, seeded.pool_ids[:12])
    result = refit(file_db, seeded)
    assert result.served == SERVED_LIVE_HEAD
    key = state(file_db, seeded).encoder_key
    assert key
    head = live_refit.previous_head(seeded.project_id, key)
    assert head is not None and head.n_labels == 12
    # a new encoder version (TAPT) has another key: nothing to start from, and the old head goes
    assert live_refit.previous_head(seeded.project_id, key + "-tapt") is None
    live_refit.remember_head(seeded.project_id, key + "-tapt", head)
    assert live_refit.previous_head(seeded.project_id, key) is None
    # the next refit on the original encoder fits cold and records its own head under its key
    label(file_db, seeded, seeded.pool_ids[12:14])
    assert refit(file_db, seeded).labels_used == 14
    again = live_refit.previous_head(seeded.project_id, key)
    assert again is not None and again.n_labels == 14
    assert live_refit.previous_head(seeded.project_id, key + "-tapt") is None


def _no_dev_project_with_adapter_slice(
    file_db: Db, tiny_model: object, *, adapter_right: bool
) -> tuple[Seeded, int, list[int]]:
    """A project without a dev set; 30 labels, a third of them contradicting the texts (so the
    live head's out-of-fold guesses are imperfect); an adapter version whose held-out slice
    probabilities match the stored labels exactly (or always name another class)."""
    from tests.worker.tasks.seed import seed_project
    from worker.ml.live_head import holdout_slice
    from worker.tasks.live_refit import HELD_OUT_FILE

    with file_db.session() as session:
        seeded = seed_project(session, base_model=str(tiny_model), dev_size=0)
        session.commit()
    chosen = seeded.pool_ids[:30]
    label(file_db, seeded, chosen[:20])
    label(file_db, seeded, chosen[20:], wrong=True)
    k = len(LABEL_NAMES)
    stored = [seeded.pool_gold[i] for i in chosen[:20]]
    stored += [(seeded.pool_gold[i] + 1) % k for i in chosen[20:]]
    mask = holdout_slice(chosen, stored, seed=seeded.project_id)
    held = [i for i, m in zip(chosen, mask, strict=True) if m]
    target = [y if adapter_right else (y + 1) % k for y, m in zip(stored, mask, strict=True) if m]
    version_id = _adapter_version(file_db, seeded)
    artifact = file_db.settings.artifacts / "adapters" / "v1"
    artifact.mkdir(parents=True)
    probs = np.full((len(held), k), 0.1 / (k - 1), dtype=np.float32)
    probs[np.arange(len(held)), target] = 0.9
    np.savez(artifact / HELD_OUT_FILE, item_ids=np.asarray(held, dtype=np.int64), probs=probs)
    pool = [i for i in seeded.pool_ids if i not in set(chosen)]
    pool_probs = np.full((len(pool), k), 1.0 / k)
    pool_probs[:, 0] = 0.5
    save_adapter_probs(file_db.settings, seeded.project_id, version_id, pool, pool_probs)
    return seeded, version_id, held


def test_without_a_dev_set_the_adapter_is_served_when_it_wins_on_its_held_out_slice(
    file_db: Db, tiny_model: object
) -> None:
    seeded, version_id, held = _no_dev_project_with_adapter_slice(
        file_db, tiny_model, adapter_right=True
    )
    result = refit(file_db, seeded)
    s = state(file_db, seeded)
    assert result.served == SERVED_ADAPTER, s.served_reason
    assert s.scores["slice_adapter"] == 1.0 > s.scores["slice_live_head"]
    assert f"a held-out slice of {len(held)} labels" in s.served_reason
    assert "-fold CV over 30 labels" in s.served_reason
    entries = queue(file_db, seeded)
    assert entries and all(e.model_version_id == version_id for e in entries)


def test_without_a_dev_set_the_head_stays_when_the_adapter_loses_on_its_slice(
    file_db: Db, tiny_model: object
) -> None:
    seeded, _version_id, _held = _no_dev_project_with_adapter_slice(
        file_db, tiny_model, adapter_right=False
    )
    result = refit(file_db, seeded)
    s = state(file_db, seeded)
    assert result.served == SERVED_LIVE_HEAD, s.served_reason
    assert s.scores["slice_adapter"] == 0.0
    assert s.history[-1]["live_head"] == s.scores["live_head"]  # the CV curve point
    assert all(e.model_version_id is None for e in queue(file_db, seeded))


def test_without_a_dev_set_or_adapter_the_head_is_served_on_cross_validation(
    file_db: Db, tiny_model: object
) -> None:
    from tests.worker.tasks.seed import seed_project

    with file_db.session() as session:
        seeded = seed_project(session, base_model=str(tiny_model), dev_size=0)
        session.commit()
    label(file_db, seeded, seeded.pool_ids[:24])
    assert refit(file_db, seeded).served == SERVED_LIVE_HEAD
    s = state(file_db, seeded)
    assert s.served_reason.startswith("no dev set: serving the live head")
    assert "5-fold CV over 24 labels" in s.served_reason
    assert set(s.scores) == {"live_head"}


def test_without_a_dev_set_an_adapter_without_a_held_out_slice_is_not_compared(
    file_db: Db, tiny_model: object
) -> None:
    from tests.worker.tasks.seed import seed_project

    with file_db.session() as session:
        seeded = seed_project(session, base_model=str(tiny_model), dev_size=0)
        session.commit()
    label(file_db, seeded, seeded.pool_ids[:24])
    _adapter_version(file_db, seeded)  # no held_out.npz next to it
    assert refit(file_db, seeded).served == SERVED_LIVE_HEAD
    s = state(file_db, seeded)
    assert "5-fold CV over 24 labels" in s.served_reason
    assert "adapter v1 held no slice out" in s.served_reason


def test_a_winning_adapter_that_scored_part_of_the_pool_queues_from_that_part(
    file_db: Db, seeded: Seeded
) -> None:
    label(file_db, seeded, seeded.pool_ids[:6], wrong=True)
    version_id = _adapter_version(file_db, seeded)
    scored = seeded.pool_ids[20:50]  # 30 items: more than twice the queue of 12
    _adapter_probs(file_db, seeded, version_id, correct=True, pool=scored)
    result = refit(file_db, seeded)
    assert result.served == SERVED_ADAPTER
    reason = state(file_db, seeded).served_reason
    assert "the adapter has scored 30 of 54 pool items so far" in reason
    entries = queue(file_db, seeded)
    assert len(entries) == 12 and {e.item_id for e in entries} <= set(scored)
    assert all(e.model_version_id == version_id for e in entries)


def test_a_winning_adapter_that_scored_too_little_of_the_pool_leaves_the_queue_to_the_head(
    file_db: Db, seeded: Seeded
) -> None:
    label(file_db, seeded, seeded.pool_ids[:6], wrong=True)
    version_id = _adapter_version(file_db, seeded)
    _adapter_probs(file_db, seeded, version_id, correct=True, pool=seeded.pool_ids[20:30])
    result = refit(file_db, seeded)
    assert result.served == SERVED_ADAPTER
    assert "has not scored the whole pool yet" in state(file_db, seeded).served_reason
    assert all(e.model_version_id is None for e in queue(file_db, seeded))


def _annotations(file_db: Db) -> int:
    with file_db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Annotation)) or 0)


def test_self_training_is_weighed_on_the_dev_set_and_never_becomes_labels(
    file_db: Db, seeded: Seeded
) -> None:
    from worker.ml.live_head import LiveHead

    label(file_db, seeded, seeded.pool_ids[:12])
    before = _annotations(file_db)
    assert file_db.settings.live_self_training  # on by default
    result = refit_live_head(seeded.project_id, file_db.settings, file_db.sessions)
    assert result is not None
    s = state(file_db, seeded)
    assert "self-training on" in s.served_reason and "confident pool items" in s.served_reason
    assert "dev macro-F1" in s.served_reason
    assert "self_train" in result.timings
    assert result.labels_used == 12 and s.labels_used == 12
    assert LiveHead.load(s.artifact_path).n_labels == 12  # pseudo-labels are not counted
    assert _annotations(file_db) == before  # nor stored: no annotation was added

    label(file_db, seeded, seeded.pool_ids[12:14])
    off = file_db.settings.model_copy(update={"live_self_training": False})
    result = refit_live_head(seeded.project_id, off, file_db.sessions)
    assert result is not None and "self_train" not in result.timings
    assert "self-training" not in state(file_db, seeded).served_reason


def test_windows_default_to_one_and_auto_is_chosen_once_from_the_pool_and_predict_reads_them(
    file_db: Db, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 8-token windows the tiny corpus' texts are "long". By default the live head still
    reads one window; on auto the refit measures the pool's lengths once, keys the stored
    embeddings by the window count, saves it with the head, says so on the dashboard, and the
    live head's /predict path embeds new texts the same way."""
    from app.db.models import Item
    from worker.ml.batching import encode
    from worker.ml.embedding_store import EmbeddingStore
    from worker.ml.live_head import LiveHead
    from worker.ml.models import load_tokenizer
    from worker.ml.sentence_encoder import choose_windows
    from worker.tasks import live_refit
    from worker.tasks.inference import _predict_live

    label(file_db, seeded, seeded.pool_ids[:12])
    one = file_db.settings.model_copy(update={"live_embed_max_length": 8})
    assert refit_live_head(seeded.project_id, one, file_db.sessions) is not None
    assert state(file_db, seeded).encoder_key.endswith("-L8")
    assert "windows" not in state(file_db, seeded).served_reason
    assert not (live_refit.live_dir(one, seeded.project_id) / "embeddings"
                / live_refit.WINDOWS_FILE).exists()

    settings = file_db.settings.model_copy(
        update={"live_embed_max_length": 8, "live_embed_windows": 0})  # 0: auto
    with file_db.session() as session:
        pool = {i.id: i.text for i in session.scalars(
            select(Item).where(Item.id.in_(seeded.pool_ids)))}
        project = session.get(Project, seeded.project_id)
        assert project is not None
        base = project.base_model
    lengths = [len(ids) for ids in encode(load_tokenizer(base),
                                          [pool[i] for i in seeded.pool_ids], 4096)]
    expected = choose_windows(lengths, 8)
    assert expected > 1
    assert refit_live_head(seeded.project_id, settings, file_db.sessions) is not None
    s = state(file_db, seeded)
    assert s.encoder_key.endswith(f"-L8-W{expected}")
    head = LiveHead.load(s.artifact_path)
    assert head.extra["windows"] == expected
    chosen = json.loads((live_refit.live_dir(settings, seeded.project_id) / "embeddings"
                         / live_refit.WINDOWS_FILE).read_text())
    (entry,) = chosen.values()
    assert entry["windows"] == expected and entry["sampled"] == len(seeded.pool_ids)
    read = sum(min(n, expected * 8) for n in lengths)  # 6 tokens + 2 specials a window
    assert entry["token_ratio"] == round(read / sum(min(n, 8) for n in lengths), 2) > 1
    assert f"texts are read in up to {expected} windows of 8 tokens" in s.served_reason
    assert f"{entry['token_ratio']:.1f}x the tokens" in s.served_reason

    encoder = SentenceEncoder(base, max_length=8, max_windows=expected)
    stored = EmbeddingStore(live_refit.live_dir(settings, seeded.project_id) / "embeddings"
                            / s.encoder_key).load()
    some = seeded.pool_ids[:5]
    np.testing.assert_allclose(stored.take(some), encoder.embed([pool[i] for i in some]),
                               atol=2e-3)  # stored as float16
    texts = ["goal team match " * 3, "bank stock market trade"]
    answer = _predict_live({"live_head": {"path": s.artifact_path}, "texts": texts}, None,
                           settings)
    np.testing.assert_allclose(answer["probabilities"],
                               head.predict_proba(encoder.embed(texts)), atol=1e-6)

    def never(*_args: object, **_kwargs: object) -> int:
        raise AssertionError("the window count is chosen once per project and encoder")

    monkeypatch.setattr("worker.ml.sentence_encoder.choose_windows", never)
    label(file_db, seeded, seeded.pool_ids[12:14])
    assert refit_live_head(seeded.project_id, settings, file_db.sessions) is not None
    assert state(file_db, seeded).encoder_key == s.encoder_key


def test_auto_windows_resolve_a_base_model_alias_as_the_encoder_does(
    file_db: Db, seeded: Seeded, tiny_model: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Projects store "minilm" (an alias), not a folder: measuring the pool's lengths must load
    the tokenizer from the resolved folder, never ask a hub for "minilm"."""
    from worker.tasks import live_refit

    monkeypatch.setattr("worker.ml.models.offline_default_path", lambda: tiny_model)
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        assert project is not None
        project.base_model = "minilm"
        session.commit()
    label(file_db, seeded, seeded.pool_ids[:12])
    settings = file_db.settings.model_copy(
        update={"live_embed_max_length": 8, "live_embed_windows": 0})
    assert refit_live_head(seeded.project_id, settings, file_db.sessions) is not None
    assert (live_refit.live_dir(settings, seeded.project_id) / "embeddings"
            / live_refit.WINDOWS_FILE).exists()
    assert "-W" in state(file_db, seeded).encoder_key


def test_the_first_refit_reports_how_far_it_has_read_and_clears_it_when_done(
    file_db: Db, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every chunk of texts embedded is visible to the web (``reading``) while the refit runs,
    with the whole count of texts no refit had read; the swap clears it."""
    from app.domain.live_head import reading
    from worker.ml import embedding_store
    from worker.tasks import live_refit

    seen: list[tuple[int, int] | None] = []
    real = embedding_store.embed_missing

    def small_chunks(store, item_ids, texts, embed, *, progress=None, **_):  # type: ignore[no-untyped-def]
        def report(done: int, total: int) -> None:
            assert progress is not None
            progress(done, total)
            with file_db.session() as session:
                found = reading(session, seeded.project_id)
                seen.append(None if found is None else (found.done, found.total))

        return real(store, item_ids, texts, embed, chunk_size=8, progress=report)

    monkeypatch.setattr(embedding_store, "embed_missing", small_chunks)
    monkeypatch.setattr(live_refit, "PROGRESS_EVERY_SECONDS", 0.0)
    refit(file_db, seeded)
    total = len(seeded.pool_ids) + len(seeded.dev_ids)
    assert seen and all(s is not None and s[1] == total for s in seen)
    done = [s[0] for s in seen if s is not None]
    assert done == sorted(done) and done[-1] == total and len(done) == -(-total // 8)
    after = state(file_db, seeded)
    assert after.progress == {}
    with file_db.session() as session:
        assert reading(session, seeded.project_id) is None
    seen.clear()
    refit(file_db, seeded)  # nothing new to read: nothing reported
    assert seen == []


def _uninformative_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sentence embeddings that carry no topic (a fixed random vector per text), so that only
    the words -- TF-IDF -- can tell the classes apart."""
    import hashlib

    def embed(self, texts):  # type: ignore[no-untyped-def]
        out = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(32)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)

    monkeypatch.setattr(SentenceEncoder, "embed", embed)


def test_the_live_head_adds_tfidf_when_it_wins_on_dev_and_predict_reads_it(
    file_db: Db, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.ml.live_head import LiveHead, softmax

    _uninformative_embeddings(monkeypatch)
    label(file_db, seeded, seeded.pool_ids[:40])
    result = refit(file_db, seeded)
    assert "tfidf_fit" in result.timings
    after = state(file_db, seeded)
    assert after.served == SERVED_LIVE_HEAD
    assert "sentence embeddings + TF-IDF of the project's texts" in after.served_reason
    assert "TF-IDF model fitted on 40 labels" in after.served_reason
    assert "tfidf_evidence" in result.timings  # computed with the TF-IDF LR ...
    head = LiveHead.load(after.artifact_path)  # what /predict and the download read
    assert head.features_used == "hybrid" and head.tfidf is not None
    with file_db.session() as session:
        from app.db.models import Item

        texts = [t for (t,) in session.execute(
            select(Item.text).where(Item.id.in_(seeded.dev_ids)).order_by(Item.id))]
    # the embeddings carry nothing here, so the evidence gives the TF-IDF half the largest share
    assert head.config.tfidf_share == 0.75
    assert "with TF-IDF at a share of 0.75" in after.served_reason
    e = SentenceEncoder.embed(None, texts)  # type: ignore[arg-type]
    expected = (0.25 * softmax(head.embed.logits(e))  # type: ignore[union-attr]
                + 0.75 * softmax(head.tfidf_model.logits(head.tfidf.transform(texts))))  # type: ignore[union-attr]
    np.testing.assert_allclose(head.predict_proba(e, texts), expected, atol=1e-6)
    with file_db.session() as session:
        dev_gold = [seeded.label_ids.index(a.label_id) for a in session.scalars(
            select(Annotation).where(Annotation.item_id.in_(seeded.dev_ids))
            .order_by(Annotation.item_id))]
    alone = softmax(head.embed.logits(e)).argmax(axis=1)  # type: ignore[union-attr]
    gold = np.asarray(dev_gold)
    assert (expected.argmax(axis=1) == gold).mean() > (alone == gold).mean()
    # one more label: the TF-IDF model is reused; 20 more (10 % and 20): refitted
    label(file_db, seeded, seeded.pool_ids[40:41])
    timings = refit(file_db, seeded).timings
    assert "tfidf_reuse" in timings and "tfidf_evidence" not in timings  # ... and reused with it
    assert "fitted on 40 labels" in state(file_db, seeded).served_reason
    label(file_db, seeded, seeded.pool_ids[41:60])
    timings = refit(file_db, seeded).timings
    assert "tfidf_fit" in timings and "tfidf_evidence" in timings
    assert "fitted on 60 labels" in state(file_db, seeded).served_reason


def test_the_mixture_the_evidence_chooses_is_served_saved_and_named(
    file_db: Db, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pooling chosen on the evidence (``best_tfidf_pooling``) reaches the served head, its
    saved config (what /predict and the download read) and the dashboard's line."""
    from worker.ml import live_head
    from worker.ml.live_head import LiveHead, mix, softmax

    _uninformative_embeddings(monkeypatch)
    seen: list[int] = []

    def geometric(y_true, embed_probs, tfidf_probs, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(len(y_true))
        return "geometric", 0.75

    monkeypatch.setattr(live_head, "best_tfidf_pooling", geometric)
    label(file_db, seeded, seeded.pool_ids[:40])
    refit(file_db, seeded)
    after = state(file_db, seeded)
    assert seen and seen[0] > len(seeded.dev_ids)  # judged on the labels' evidence + dev
    assert "with TF-IDF at a share of 0.75 (geometric mean)" in after.served_reason
    head = LiveHead.load(after.artifact_path)
    assert head.features_used == "hybrid"
    assert (head.config.tfidf_mixture, head.config.tfidf_share) == ("geometric", 0.75)
    with file_db.session() as session:
        from app.db.models import Item

        texts = [t for (t,) in session.execute(
            select(Item.text).where(Item.id.in_(seeded.dev_ids)).order_by(Item.id))]
    e = SentenceEncoder.embed(None, texts)  # type: ignore[arg-type]
    halves = (softmax(head.embed.logits(e)),  # type: ignore[union-attr]
              softmax(head.tfidf_model.logits(head.tfidf.transform(texts))))  # type: ignore[union-attr]
    np.testing.assert_allclose(head.predict_proba(e, texts), mix(*halves, 0.75, "geometric"),
                               atol=1e-6)
    assert not np.allclose(mix(*halves, 0.75, "geometric"), mix(*halves, 0.75, "arithmetic"))


def test_the_labels_out_of_fold_evidence_outweighs_a_small_dev_set(
    file_db: Db, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TF-IDF half is judged on the dev set and the labels' out-of-fold predictions
    together: 12 dev items on which it is confidently wrong do not outweigh 60 labels on which
    it is right and the embeddings (uninformative here) are not."""
    from worker.ml.live_head import LiveHead
    from worker.tasks import live_tfidf
    from worker.tasks.live_refit import live_dir

    _uninformative_embeddings(monkeypatch)
    real = live_tfidf.tfidf_model

    def wrong_on_dev(*args, **kwargs):  # type: ignore[no-untyped-def]
        model, fitted = real(*args, **kwargs)  # the served LR; the folds fit their own
        model.linear.W = -100.0 * model.linear.W
        return model, fitted

    monkeypatch.setattr(live_tfidf, "tfidf_model", wrong_on_dev)
    label(file_db, seeded, seeded.pool_ids[:60])
    refit(file_db, seeded)
    after = state(file_db, seeded)
    assert ("sentence embeddings + TF-IDF of the project's texts (macro-F1 on 12 dev items + "
            in after.served_reason)
    assert "CV over 60 labels" in after.served_reason
    head = LiveHead.load(after.artifact_path)
    assert head.features_used == "hybrid"
    assert head.selection["evidence"] == {"dev": 12, "cv_labels": 60}
    hybrid, alone = head.selection["macro_f1"]["hybrid"], head.selection["macro_f1"]["embed"]
    assert hybrid > alone + 0.3
    saved = live_tfidf.FoldEvidence.load(live_tfidf.model_dir(live_dir(file_db.settings,
                                                                       seeded.project_id)))
    assert saved is not None and saved.n_labels == 60 and len(saved.gold) == 60
    # the dev set alone (no evidence from the labels) drops the TF-IDF half
    monkeypatch.setattr(live_tfidf, "fold_evidence", lambda *a, **k: (None, False))
    label(file_db, seeded, seeded.pool_ids[60:61])
    refit(file_db, seeded)
    after = state(file_db, seeded)
    assert "live head on sentence embeddings (dev macro-F1 on 12 dev items:" in after.served_reason
    assert LiveHead.load(after.artifact_path).features_used == "embed"


def test_self_training_a_hybrid_head_refits_both_halves_on_the_tfidf_cadence(
    file_db: Db, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With self-training on and the TF-IDF half served, both halves are refit with the mean's
    confident pool items; the self-trained TF-IDF LR is saved beside the plain one and refitted
    only when that one is; pseudo-labels are never annotations nor counted labels."""
    from tests.worker.tasks.seed import seed_project
    from worker.ml.live_head import LiveHead
    from worker.tasks import live_tfidf
    from worker.tasks.live_refit import live_dir

    with file_db.session() as session:  # room for pseudo-labels after 60 labels
        seeded = seed_project(session, base_model=str(tiny_model), pool_size=120)
        session.commit()
    _uninformative_embeddings(monkeypatch)
    label(file_db, seeded, seeded.pool_ids[:40])
    before = _annotations(file_db)
    on = file_db.settings.model_copy(update={"live_self_training": True})
    result = refit_live_head(seeded.project_id, on, file_db.sessions)
    assert result is not None
    assert "tfidf_fit" in result.timings and "tfidf_self_train_fit" in result.timings
    s = state(file_db, seeded)
    assert "sentence embeddings + TF-IDF of the project's texts" in s.served_reason
    assert "self-training on" in s.served_reason and "confident pool items" in s.served_reason
    saved = live_tfidf.model_dir(live_dir(on, seeded.project_id)) / live_tfidf.SELF_TRAINED
    st = live_tfidf.TfidfModel.load(saved)
    assert st is not None and st.n_labels == 40  # pseudo-labels are not counted
    head = LiveHead.load(s.artifact_path)
    assert head.features_used == "hybrid" and head.n_labels == 40 and s.labels_used == 40
    assert ("self-training on 39 confident pool items (the TF-IDF half on 80) kept: dev "
            "macro-F1") in s.served_reason  # 120 pool items, 40 labelled: every other one
    assert head.selection["tfidf_pseudo_labels"] == 80
    assert head.selection.get("self_trained") is True  # a tie keeps it
    np.testing.assert_allclose(head.tfidf_model.W, st.linear.W)  # type: ignore[union-attr]
    assert _annotations(file_db) == before  # nor stored: no annotation was added
    label(file_db, seeded, seeded.pool_ids[40:41])  # one more: both TF-IDF LRs reused
    result = refit_live_head(seeded.project_id, on, file_db.sessions)
    assert result is not None
    assert "tfidf_reuse" in result.timings and "tfidf_self_train_reuse" in result.timings
    label(file_db, seeded, seeded.pool_ids[41:60])  # 10 % and 20 more: both refitted
    result = refit_live_head(seeded.project_id, on, file_db.sessions)
    assert result is not None
    assert "tfidf_fit" in result.timings and "tfidf_self_train_fit" in result.timings
    reloaded = live_tfidf.TfidfModel.load(saved)
    assert reloaded is not None and reloaded.n_labels == 60
    from worker.ml import self_training

    real = self_training.pseudo_labels

    def wrong(probs, labels, k, **kw):  # type: ignore[no-untyped-def]
        rows, pseudo = real(probs, labels, k, **kw)
        return rows, (pseudo + 1) % k  # every pseudo-label on the wrong class

    monkeypatch.setattr(self_training, "pseudo_labels", wrong)
    label(file_db, seeded, seeded.pool_ids[60:80])  # 10 % and 20 more: both halves take them
    result = refit_live_head(seeded.project_id, on, file_db.sessions)
    assert result is not None and "tfidf_self_train_fit" in result.timings
    s = state(file_db, seeded)
    assert "confident pool items (the TF-IDF half on 40) not kept" in s.served_reason
    assert "(it loses by more than 0.01)" in s.served_reason
    head = LiveHead.load(s.artifact_path)
    assert head.features_used == "hybrid" and "self_trained" not in head.selection


def test_the_tfidf_half_self_trains_on_the_pool_class_balanced_up_to_its_setting(
    file_db: Db, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TF-IDF half's pseudo-labels: the mean's prediction on unlabelled pool items only
    (never a labelled or dev item), at ``PSEUDO_WEIGHT``, at most
    ``live_tfidf_pseudo_labels // labelled classes`` per class; with the setting at 0, the
    embedding half's (as many as there are labels)."""
    from tests.worker.tasks.seed import seed_project
    from worker.ml.self_training import PSEUDO_WEIGHT
    from worker.tasks import live_tfidf
    from worker.tasks.live_refit import live_dir

    with file_db.session() as session:
        seeded = seed_project(session, base_model=str(tiny_model), pool_size=120)
        session.commit()
    _uninformative_embeddings(monkeypatch)
    label(file_db, seeded, seeded.pool_ids[:40])
    fits: list[tuple[list[int], np.ndarray, np.ndarray]] = []
    real = live_tfidf.self_trained_model

    def spy(directory, space, plain, plain_fitted, training, k, config):  # type: ignore[no-untyped-def]
        def recorded() -> live_tfidf.SelfTraining:
            fit = training()
            assert fit.pseudo == int(np.sum(fit.weights < 1))
            fits.append((list(fit.item_ids), np.asarray(fit.labels), np.asarray(fit.weights)))
            return fit

        return real(directory, space, plain, plain_fitted, recorded, k, config)

    monkeypatch.setattr(live_tfidf, "self_trained_model", spy)
    n_classes = len(seeded.label_ids)
    capped = file_db.settings.model_copy(
        update={"live_self_training": True, "live_tfidf_pseudo_labels": 10 * n_classes})
    assert refit_live_head(seeded.project_id, capped, file_db.sessions) is not None
    ids, labels, weights = fits[-1]
    labelled = set(seeded.pool_ids[:40])
    assert ids[:40] == seeded.pool_ids[:40] and np.all(weights[:40] == 1.0)
    pseudo = ids[40:]
    assert not set(pseudo) & (labelled | set(seeded.dev_ids))  # unlabelled pool items only
    assert len(set(pseudo)) == len(pseudo) and set(pseudo) <= set(seeded.pool_ids)
    assert np.all(weights[40:] == PSEUDO_WEIGHT)
    assert np.bincount(labels[40:], minlength=n_classes).max() <= 10  # class-balanced cap
    assert len(pseudo) > 10
    s = state(file_db, seeded)
    assert f"(the TF-IDF half on {len(pseudo)})" in s.served_reason
    saved = live_tfidf.TfidfModel.load(live_tfidf.model_dir(
        live_dir(capped, seeded.project_id)) / live_tfidf.SELF_TRAINED)
    assert saved is not None and saved.pseudo_labels == len(pseudo)

    # one more label: the saved self-trained LR is reused, its pseudo-labels not re-derived,
    # and the dashboard gives the count it was fitted on, whatever the cap says now
    label(file_db, seeded, seeded.pool_ids[40:41])
    fewer = capped.model_copy(update={"live_tfidf_pseudo_labels": n_classes})
    result = refit_live_head(seeded.project_id, fewer, file_db.sessions)
    assert result is not None and "tfidf_self_train_reuse" in result.timings
    assert len(fits) == 1
    assert f"(the TF-IDF half on {len(pseudo)})" in state(file_db, seeded).served_reason

    label(file_db, seeded, seeded.pool_ids[41:60])  # 10 % more labels: the TF-IDF half refits
    same = capped.model_copy(update={"live_tfidf_pseudo_labels": 0})
    assert refit_live_head(seeded.project_id, same, file_db.sessions) is not None
    ids, labels, weights = fits[-1]
    assert len(ids) - 60 <= 60 and np.all(weights[60:] == PSEUDO_WEIGHT)  # the embeddings' own
    assert "(the TF-IDF half on" not in state(file_db, seeded).served_reason


def test_the_live_head_stays_on_embeddings_below_40_labels_when_tfidf_loses_or_is_off(
    file_db: Db, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.ml.live_head import LiveHead
    from worker.tasks import live_tfidf

    label(file_db, seeded, seeded.pool_ids[:39])
    refit(file_db, seeded)  # 39 labels: below the 40 the comparison needs
    assert "TF-IDF" not in state(file_db, seeded).served_reason
    label(file_db, seeded, seeded.pool_ids[39:40])
    refit(file_db, seeded)
    after = state(file_db, seeded)
    # the tiny corpus' embeddings already get every dev item right and so does the mean: a tie
    # keeps the TF-IDF half (it is dropped only when it loses on dev)
    assert "sentence embeddings + TF-IDF of the project's texts" in after.served_reason
    assert LiveHead.load(after.artifact_path).features_used == "hybrid"
    real = live_tfidf.tfidf_model

    def misleading(*args, **kwargs):  # type: ignore[no-untyped-def]
        model, fitted = real(*args, **kwargs)
        model.linear.W = -100.0 * model.linear.W  # confidently the least likely class
        return model, fitted

    monkeypatch.setattr(live_tfidf, "tfidf_model", misleading)
    label(file_db, seeded, seeded.pool_ids[40:41])
    refit(file_db, seeded)
    after = state(file_db, seeded)
    # the labels' out-of-fold evidence (fitted at 40 labels, honest) still backs the TF-IDF
    # half, but 12 confidently wrong dev items outweigh it
    assert ("live head on sentence embeddings (macro-F1 on 12 dev items + 5-fold CV over 40 "
            "labels") in after.served_reason
    assert "TF-IDF loses by more than 0.01" in after.served_reason
    assert LiveHead.load(after.artifact_path).features_used == "embed"
    monkeypatch.setattr(live_tfidf, "tfidf_model", real)
    file_db.settings.live_hybrid = False
    label(file_db, seeded, seeded.pool_ids[41:45])
    refit(file_db, seeded)
    assert "TF-IDF" not in state(file_db, seeded).served_reason


def test_the_tfidf_rows_grow_with_the_pool_and_the_vocabulary_is_refitted_at_half_again(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from worker.tasks import live_tfidf

    texts = {i: f"word{i % 7} common text number {i % 3} topic{i % 5}" for i in range(1, 200)}
    fits: list[int] = []
    from worker.ml import live_head

    original = live_head.PoolTfidf.fit.__func__  # type: ignore[attr-defined]

    def counting(cls, pool_texts, **kw):  # type: ignore[no-untyped-def]
        fits.append(len(pool_texts))
        return original(cls, pool_texts, **kw)

    monkeypatch.setattr(live_head.PoolTfidf, "fit", classmethod(counting))

    def texts_of(ids: list[int]) -> dict[int, str]:
        return {i: texts[i] for i in ids}

    directory = tmp_path / "tfidf"
    first = live_tfidf.tfidf_space(directory, list(range(1, 81)), [150, 151], texts_of)
    assert fits == [80] and first.rows.shape[0] == 82 and first.fitted_on == 80
    grown = live_tfidf.tfidf_space(directory, list(range(1, 111)), [150, 151], texts_of)
    assert fits == [80] and grown.rows.shape[0] == 112  # 30 new rows, same vocabulary
    np.testing.assert_allclose(grown.take([5, 150]).toarray(), first.take([5, 150]).toarray())
    assert grown.fingerprint == first.fingerprint
    live_tfidf._SPACES.clear()  # a restarted worker reads the files
    again = live_tfidf.tfidf_space(directory, list(range(1, 111)), [150, 151], texts_of)
    assert fits == [80] and again.rows.shape[0] == 112
    rebuilt = live_tfidf.tfidf_space(directory, list(range(1, 122)), [150, 151], texts_of)
    assert fits == [80, 121] and rebuilt.fitted_on == 121  # more than 1.5 x 80 items


def test_the_adapter_rounds_candidates_read_a_hybrid_heads_cached_tfidf_rows(
    file_db: Db, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.ml.live_head import PoolTfidf
    from worker.tasks.candidates import live_space

    _uninformative_embeddings(monkeypatch)
    label(file_db, seeded, seeded.pool_ids[:40])
    refit(file_db, seeded)
    with file_db.session() as session:
        space = live_space(session, file_db.settings, seeded.project_id, len(LABEL_NAMES))
        from app.db.models import Item

        rows = session.execute(select(Item.id, Item.text).where(
            Item.id.in_(seeded.pool_ids[40:])).order_by(Item.id)).all()
    assert space.head is not None and space.head.features_used == "hybrid"
    ids, texts = [r[0] for r in rows], [r[1] for r in rows]
    from_texts = space.head.predict_proba(space.vectors(ids), texts)

    def no_transform(self, texts):  # type: ignore[no-untyped-def]
        raise AssertionError("the cached rows should have been used")

    monkeypatch.setattr(PoolTfidf, "transform", no_transform)
    margins = space.margins(ids, texts)
    first = np.sort(from_texts, axis=1)
    np.testing.assert_allclose(margins, first[:, -1] - first[:, -2], atol=1e-6)


def test_texts_tfidf_cannot_read_leave_the_head_on_embeddings(
    file_db: Db, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contract.errors import ConfigError
    from worker.ml.live_head import PoolTfidf

    def no_terms(cls, texts, **_):  # type: ignore[no-untyped-def]
        raise ConfigError("TF-IDF found no terms in the pool texts")

    monkeypatch.setattr(PoolTfidf, "fit", classmethod(no_terms))
    label(file_db, seeded, seeded.pool_ids[:40])
    result = refit(file_db, seeded)
    assert result.served == SERVED_LIVE_HEAD and result.queued > 0
    assert "no TF-IDF: TF-IDF found no terms" in state(file_db, seeded).served_reason
