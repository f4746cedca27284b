"""The live head's TF-IDF half's out-of-fold evidence (``worker.tasks.live_tfidf``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worker.ml.live_head import LiveHeadConfig, linear_out_of_fold
from worker.tasks import live_tfidf

WORDS = ["goal match team striker", "stock market shares profit", "rain storm weather cloud"]


def _project(tmp_path: Path, n: int = 30) -> tuple[live_tfidf.TfidfSpace, list[int], np.ndarray,
                                                    np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    texts = {i: f"{WORDS[y[i]]} item {i} " + " ".join(rng.choice(["a", "b", "c"], 3))
             for i in range(n)}
    ids = list(range(n))
    space = live_tfidf.tfidf_space(tmp_path / "tfidf", ids, [], lambda want: texts)
    embeddings = rng.normal(size=(n, 8))  # uninformative: the words carry the classes
    return space, ids, y, embeddings


def test_fold_evidence_is_computed_with_the_tfidf_lr_and_reused_until_it_is_refitted(
    tmp_path: Path,
) -> None:
    space, every, y_all, X_all = _project(tmp_path, 60)
    ids, y, X = every[:30], y_all[:30], X_all[:30]
    config = LiveHeadConfig()
    directory = tmp_path / "model"
    model, fitted = live_tfidf.tfidf_model(directory, space, ids, y, 3, config)
    assert fitted
    evidence, computed = live_tfidf.fold_evidence(directory, space, model, fitted, ids, X, y, 3,
                                                  config, "enc-a")
    assert computed and evidence is not None
    assert evidence.n_labels == 30 and evidence.folds == 5 and len(evidence.gold) == 30
    expected = linear_out_of_fold(space.take(ids), y, 3, config)
    np.testing.assert_allclose(evidence.tfidf, expected.probs)
    np.testing.assert_allclose(evidence.embed, linear_out_of_fold(X, y, 3, config).probs)
    assert (evidence.tfidf.argmax(axis=1) == y).mean() > (evidence.embed.argmax(axis=1) == y).mean()
    # the same model, not refitted: the saved evidence (read from disk) comes back
    again, computed = live_tfidf.fold_evidence(directory, space, model, False, ids, X, y, 3,
                                               config, "enc-a")
    assert not computed and again is not None
    np.testing.assert_array_equal(again.tfidf, evidence.tfidf)
    # another encoder's embeddings: the embedding half's evidence is recomputed
    other, computed = live_tfidf.fold_evidence(directory, space, model, False, ids, X + 1.0, y,
                                               3, config, "enc-b")
    assert computed and other is not None and other.encoder == "enc-b"
    # the TF-IDF LR refitted on more labels: recomputed on the labels it was fitted on
    model, fitted = live_tfidf.tfidf_model(directory, space, every, y_all, 3, config)
    assert fitted and model.n_labels == 60
    fresh, computed = live_tfidf.fold_evidence(directory, space, model, fitted, every, X_all,
                                               y_all, 3, config, "enc-b")
    assert computed and fresh is not None and len(fresh.gold) == 60


def test_no_evidence_when_no_class_has_two_labels(tmp_path: Path) -> None:
    space, ids, y, X = _project(tmp_path)
    config = LiveHeadConfig()
    directory = tmp_path / "model"
    model, fitted = live_tfidf.tfidf_model(directory, space, ids[:3], y[:3], 3, config)
    evidence, computed = live_tfidf.fold_evidence(directory, space, model, fitted, ids[:3],
                                                  X[:3], y[:3], 3, config, "enc")
    assert evidence is None and not computed
    assert live_tfidf.FoldEvidence.load(directory) is None


def test_the_self_trained_lr_keeps_its_pseudo_label_count_and_is_reused_without_its_inputs(
    tmp_path: Path,
) -> None:
    import json

    space, every, y_all, _ = _project(tmp_path, 60)
    config = LiveHeadConfig()
    directory = tmp_path / "model"
    plain, fitted = live_tfidf.tfidf_model(directory, space, every[:30], y_all[:30], 3, config)
    assert fitted and plain.pseudo_labels is None
    calls: list[int] = []

    def training() -> live_tfidf.SelfTraining:
        calls.append(1)
        weights = np.concatenate([np.ones(30), np.full(20, 0.5)])
        return live_tfidf.SelfTraining(every[:50], y_all[:50], weights, 20)

    st, refitted = live_tfidf.self_trained_model(directory, space, plain, True, training, 3,
                                                 config)
    assert refitted and calls == [1] and st.pseudo_labels == 20 and st.n_labels == 30
    saved = directory / live_tfidf.SELF_TRAINED
    again, refitted = live_tfidf.self_trained_model(directory, space, plain, False, training, 3,
                                                    config)
    assert not refitted and calls == [1]  # reused: the pseudo-labels are not even derived
    assert again.pseudo_labels == 20
    np.testing.assert_array_equal(again.linear.W, st.linear.W)
    # a model saved before the count was kept loads without one (the dashboard then omits it)
    meta = json.loads((saved / "model.json").read_text())
    del meta["pseudo_labels"]
    (saved / "model.json").write_text(json.dumps(meta))
    legacy = live_tfidf.TfidfModel.load(saved)
    assert legacy is not None and legacy.pseudo_labels is None
