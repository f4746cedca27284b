"""The live head: fit/proba shapes, unseen classes, LP-FT weights, hybrid TF-IDF, save/load with
NumPy alone, zero-shot ordering, diverse seeding and promotion by dev macro-F1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from contract.errors import ConfigError
from worker.ml.live_head import (
    LiveHead,
    LiveHeadConfig,
    PoolTfidf,
    best_tfidf_pooling,
    best_tfidf_share,
    choose_served,
    cross_validate,
    cv_probs,
    diverse_seed,
    linear_out_of_fold,
    macro_f1,
    mix,
    softmax,
    zero_shot_scores,
)


def blobs(n_per: int, n_classes: int, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors clustered around one random direction per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d))
    y = np.repeat(np.arange(n_classes), n_per)
    X = centres[y] + 0.6 * rng.normal(size=(len(y), d))
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


WORDS = {
    0: "goal match team striker league coach",
    1: "stock market shares profit bank trade",
    2: "rain storm weather cloud forecast wind",
}


def texts_for(y: np.ndarray, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for label in y:
        words = WORDS[int(label)].split() + ["the", "a", "of", "today", "news"]
        out.append(" ".join(rng.choice(words, size=8)))
    return out


def test_config_round_trip_and_checks() -> None:
    config = LiveHeadConfig(C=3.0, features="hybrid", hybrid_mode="concat")
    assert LiveHeadConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown live head config keys \\['c'\\]"):
        LiveHeadConfig.from_dict({"c": 1.0})
    with pytest.raises(ConfigError, match="features='tfidf'"):
        LiveHeadConfig(features="tfidf")
    with pytest.raises(ConfigError, match="C must be > 0"):
        LiveHeadConfig(C=0)
    with pytest.raises(ConfigError, match="tfidf_share must be in \\(0, 1\\)"):
        LiveHeadConfig(tfidf_share=1.0)
    # a head saved before the share existed loads with the even mean
    assert LiveHeadConfig.from_dict({"C": 10.0}).tfidf_share == 0.5
    with pytest.raises(ConfigError, match="tfidf_mixture='harmonic'"):
        LiveHeadConfig(tfidf_mixture="harmonic")
    for margin in (-0.01, 1.0):
        with pytest.raises(ConfigError, match="auto_margin must be in \\[0, 1\\)"):
            LiveHeadConfig(auto_margin=margin)


def test_fit_and_proba_shapes_with_unseen_classes() -> None:
    X, y = blobs(10, 3)
    head = LiveHead(LiveHeadConfig(features="embed")).fit(X, y, n_classes=5)
    probs = head.predict_proba(X)
    assert probs.shape == (30, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == y).mean() > 0.9
    assert probs[:, 3:].max() < 0.01  # never-labelled classes: small but present columns
    assert probs[:, 3:].min() > 0


def test_refit_after_new_labels_changes_the_head() -> None:
    X, y = blobs(10, 3)
    head = LiveHead(LiveHeadConfig(features="embed"))
    first = head.fit(X[:20], y[:20], 3).predict_proba(X[20:])  # class 2 not labelled yet
    assert first.argmax(axis=1).tolist().count(2) == 0
    second = head.fit(X, y, 3).predict_proba(X[20:])
    assert (second.argmax(axis=1) == 2).all()
    assert head.n_labels == 30


@pytest.mark.parametrize("n_labelled", [0, 1, 4])
def test_degenerate_one_or_no_class_is_uniform(n_labelled: int) -> None:
    X, _ = blobs(4, 2)
    y = np.zeros(n_labelled, dtype=np.int64)
    head = LiveHead().fit(X[:n_labelled], y, n_classes=3)
    np.testing.assert_allclose(head.predict_proba(X), 1 / 3)


def test_binary_linear_weights_reproduce_probabilities_and_sklearn() -> None:
    X, y = blobs(15, 2, seed=3)
    head = LiveHead(LiveHeadConfig(features="embed", class_weight=None)).fit(X, y, 2)
    W, b = head.linear_weights()
    assert W.shape == (2, 16) and b.shape == (2,)
    np.testing.assert_allclose(softmax(X @ W.T + b), head.predict_proba(X), atol=1e-12)
    reference = LogisticRegression(C=10, max_iter=1000).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(head.predict_proba(X), reference, atol=1e-6)


def test_multiclass_linear_weights_reproduce_probabilities() -> None:
    X, y = blobs(8, 4, seed=5)
    head = LiveHead(LiveHeadConfig(features="embed")).fit(X, y, 6)
    W, b = head.linear_weights()
    assert W.shape == (6, 16)
    np.testing.assert_allclose(softmax(X @ W.T + b), head.predict_proba(X), atol=1e-12)
    assert not W[4:].any()  # unseen classes: zero weights, low bias


def test_pool_tfidf_numpy_transform_matches_sklearn() -> None:
    pool = texts_for(np.arange(60) % 3, seed=1) + ["Goal, goal!  The Striker's goal."]
    tfidf = PoolTfidf.fit(pool)
    reference = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(pool)
    assert tfidf.n_features == len(reference.vocabulary_)
    mine = tfidf.transform_dense(pool)
    theirs = reference.transform(pool).toarray()
    columns = [reference.vocabulary_[t] for t in tfidf.vocabulary]
    np.testing.assert_allclose(mine, theirs[:, columns], atol=1e-6)
    np.testing.assert_allclose(tfidf.transform(pool).toarray(), mine)


@pytest.mark.parametrize("mode", ["ensemble", "concat"])
def test_hybrid_head_uses_texts(mode: str) -> None:
    y = np.arange(45) % 3
    rng = np.random.default_rng(0)
    X = rng.normal(size=(45, 8))  # embeddings carry no signal here, the words do
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    texts = texts_for(y)
    tfidf = PoolTfidf.fit(texts)
    config = LiveHeadConfig(features="hybrid", hybrid_mode=mode)
    head = LiveHead(config).fit(X[:30], y[:30], 3, texts[:30], tfidf)
    probs = head.predict_proba(X[30:], texts[30:])
    assert probs.shape == (15, 3)
    assert (probs.argmax(axis=1) == y[30:]).mean() > 0.8
    with pytest.raises(ConfigError, match="pass one text per embedding"):
        head.predict_proba(X[30:])
    with pytest.raises(ConfigError, match="needs the labelled texts"):
        LiveHead(config).fit(X[:30], y[:30], 3)


def test_auto_picks_hybrid_only_when_cv_says_so() -> None:
    y = np.arange(60) % 3
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(60, 8))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    texts = texts_for(y, seed=2)
    tfidf = PoolTfidf.fit(texts)
    config = LiveHeadConfig(features="auto", auto_min_labels=30)
    head = LiveHead(config).fit(noise, y, 3, texts, tfidf)
    assert head.features_used == "hybrid"
    assert head.selection["cv_macro_f1"]["hybrid"] > head.selection["cv_macro_f1"]["embed"]
    X, yb = blobs(20, 3)
    neutral = ["the a of today news"] * 60  # words carry no signal: embed stays
    head = LiveHead(config).fit(X, yb, 3, neutral, PoolTfidf.fit(neutral + texts))
    assert head.features_used == "embed"
    few = LiveHead(config).fit(noise[:9], y[:9], 3, texts[:9], tfidf)
    assert few.features_used == "embed" and "auto_min_labels" in few.selection["reason"]


@pytest.mark.parametrize("features", ["embed", "hybrid"])
def test_save_load_round_trip_with_numpy_alone(tmp_path: Path, features: str) -> None:
    y = np.arange(30) % 3
    X, _ = blobs(10, 3)
    X = X[np.argsort(np.argsort(y, kind="stable"), kind="stable")]
    texts = texts_for(y)
    tfidf = PoolTfidf.fit(texts)
    head = LiveHead(LiveHeadConfig(features=features)).fit(X, y, 4, texts, tfidf)
    head.save(tmp_path / "head", extra={"encoder": "minilm@abc"})
    assert not list((tmp_path / "head").glob("*.pkl"))
    expected = head.predict_proba(X, texts)
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "texts.txt").write_text("\n".join(texts))
    # A fresh interpreter where importing sklearn or scipy fails: the head still loads and predicts.
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('sklearn', 'scipy', 'torch'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import numpy as np
from worker.ml.live_head import LiveHead
head = LiveHead.load({str(tmp_path / "head")!r})
X = np.load({str(tmp_path / "X.npy")!r})
texts = open({str(tmp_path / "texts.txt")!r}).read().split('\\n')
np.save({str(tmp_path / "out.npy")!r}, head.predict_proba(X, texts))
print(head.extra['encoder'], head.features_used)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["minilm@abc", features]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)


def test_cv_probs_are_out_of_fold() -> None:
    X, y = blobs(6, 3, seed=2)
    probs = cv_probs(X, y, 4, config=LiveHeadConfig(cv_folds=3))
    assert probs.shape == (18, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # A duplicated item with a flipped label: in-sample it would be fitted, out of fold it is not.
    Xd = np.vstack([X, X[:1]])
    yd = np.append(y, 1)
    oof = cv_probs(Xd, yd, 3, config=LiveHeadConfig(cv_folds=3, class_weight=None))
    assert oof[-1].argmax() == 0


def test_linear_out_of_fold_holds_out_each_item_on_the_live_heads_folds() -> None:
    from scipy import sparse

    X, y = blobs(6, 3, seed=2)
    y = np.append(y, 3)  # a class with one label: never held out, always trained on
    X = np.vstack([X, X[:1]])
    config = LiveHeadConfig(cv_folds=3)
    cv = linear_out_of_fold(X, y, 4, config)
    assert cv.folds == 3 and cv.n_scored == 18 and not cv.scored[-1]
    assert np.isnan(cv.probs[-1]).all()
    np.testing.assert_allclose(cv.probs[cv.scored].sum(axis=1), 1.0)
    # the same folds and the same LR as the live head's own cross-validation on embeddings
    same = cross_validate(X, y, 4, config=config, features="embed")
    np.testing.assert_allclose(cv.probs[cv.scored], same.probs[same.scored], atol=1e-6)
    # sparse rows (the TF-IDF half) work the same way
    sp = linear_out_of_fold(sparse.csr_matrix(X), y, 4, config)
    np.testing.assert_allclose(sp.probs[sp.scored], cv.probs[cv.scored], atol=1e-4)
    # out of fold: a duplicate with a flipped label is not fitted to its own label
    Xd, yd = np.vstack([X[:18], X[:1]]), np.append(y[:18], 1)
    oof = linear_out_of_fold(Xd, yd, 3, LiveHeadConfig(cv_folds=3, class_weight=None))
    assert oof.probs[-1].argmax() == 0
    with pytest.raises(ConfigError, match="at least 2 labels"):
        linear_out_of_fold(X[:3], np.array([0, 1, 2]), 3, config)


def test_zero_shot_orders_items_by_label_similarity() -> None:
    labels = np.eye(3, 8)
    items = np.array(
        [
            [0.9, 0.1, 0, 0, 0, 0, 0, 0.2],
            [0.1, 0.8, 0.3, 0, 0, 0, 0, 0],
            [0.5, 0.5, 0.5, 0, 0, 0, 0, 0],
            [0.2, 0.0, 0.95, 0, 0, 0, 0, 0],
        ]
    )
    scores = zero_shot_scores(items, labels)
    assert scores.shape == (4, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)
    assert scores.argmax(axis=1).tolist()[:2] == [0, 1] and scores[3].argmax() == 2
    np.testing.assert_allclose(scores[2], 1 / 3)
    assert np.argsort(-scores[:, 0]).tolist()[0] == 0
    with pytest.raises(ConfigError, match="dimensions"):
        zero_shot_scores(items, np.eye(3, 4))


def test_diverse_seed_covers_every_cluster() -> None:
    X, y = blobs(30, 5, d=8, seed=4)
    order = np.random.default_rng(0).permutation(len(y))
    chosen = diverse_seed(X[order], 5, seed=0)
    assert len(set(chosen)) == 5
    assert sorted(y[order][chosen].tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="k must lie"):
        diverse_seed(X, 0)


def test_choose_served_picks_the_better_model_and_ties_go_to_the_live_head() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    good = np.eye(3)[y] * 0.8 + 0.2 / 3
    bad = np.eye(3)[[0, 1, 1, 0, 2, 1]] * 0.6 + 0.4 / 3
    choice = choose_served({"live_head": bad, "adapter": good}, y)
    assert choice.name == "adapter"
    assert choice.scores["adapter"] == 1.0
    assert choice.scores["live_head"] == pytest.approx(macro_f1(y, bad.argmax(axis=1)))
    assert "average" in choice.scores and "dev macro-F1 on 6 items" in choice.reason
    assert choose_served({"live_head": good, "adapter": good}, y).name == "live_head"
    assert choose_served({"live_head": good, "adapter": bad}, y).name == "live_head"
    assert choose_served({"adapter": good}, y).name == "adapter"
    # The average wins when each model alone errs on a different item.
    a = np.eye(3)[y] * 0.85 + 0.05
    b = a.copy()
    a[5] = [0.0, 0.52, 0.48]  # live head wrong on item 5 only, adapter on item 1 only
    b[1] = [0.48, 0.52, 0.0]
    assert choose_served({"live_head": a, "adapter": b}, y).name == "average"
    assert choose_served({"live_head": bad, "adapter": good}, y, min_gain=0.5).name == "live_head"
    with pytest.raises(ConfigError, match="unknown candidates"):
        choose_served({"svm": good}, y)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_warm_start_reaches_the_cold_fit(n_classes: int) -> None:
    """A refit warm-started from the previous head (one label fewer) lands on the cold fit's
    optimum within the solver's tolerance: same predictions, probabilities within 0.05."""
    X, y = blobs(40, n_classes, d=32, seed=3)
    config = LiveHeadConfig(features="embed")
    previous = LiveHead(config).fit(X[:-5], y[:-5], n_classes)
    cold = LiveHead(config).fit(X, y, n_classes)
    warm = LiveHead(config).fit(X, y, n_classes, warm_start=previous)
    probe, _ = blobs(30, n_classes, d=32, seed=4)
    pc, pw = cold.predict_proba(probe), warm.predict_proba(probe)
    assert np.abs(pc - pw).max() < 0.05
    assert (pc.argmax(axis=1) == pw.argmax(axis=1)).mean() >= 0.95
    assert not np.array_equal(warm.linear_weights()[0], previous.linear_weights()[0])


def test_warm_start_from_an_incompatible_head_is_a_cold_fit() -> None:
    """Another number of classes or another embedding width: the previous head is ignored."""
    X, y = blobs(20, 3, d=16, seed=5)
    config = LiveHeadConfig(features="embed")
    cold = LiveHead(config).fit(X, y, 3)
    other_classes = LiveHead(config).fit(X, np.minimum(y, 1), 2)
    X8, _ = blobs(20, 3, d=8, seed=5)
    other_width = LiveHead(config).fit(X8, y, 3)
    for previous in (other_classes, other_width):
        warm = LiveHead(config).fit(X, y, 3, warm_start=previous)
        np.testing.assert_allclose(warm.linear_weights()[0], cold.linear_weights()[0])


def test_float32_embeddings_predict_like_float64() -> None:
    """A float32 pool is scored in float32 (no float64 copy) with the same probabilities."""
    X, y = blobs(30, 3, d=16, seed=6)
    head = LiveHead(LiveHeadConfig(features="embed")).fit(X, y, 3)
    p64 = head.predict_proba(X)
    p32 = head.predict_proba(X.astype(np.float32))
    assert p32.dtype == np.float64
    np.testing.assert_allclose(p32, head.predict_proba(X.astype(np.float32).astype(np.float64)),
                               atol=1e-5)
    assert (p32.argmax(axis=1) == p64.argmax(axis=1)).all()


def test_the_tfidf_share_is_the_one_the_evidence_prefers_and_a_tie_keeps_the_even_mean() -> None:
    y = np.array([0, 1, 2, 0])
    embed = np.array([[0.4, 0.6, 0.0], [0.4, 0.6, 0.0], [0.5, 0.0, 0.5], [0.6, 0.4, 0.0]])
    tfidf = np.array([[1.0, 0.0, 0.0], [0.0, 0.2, 0.8], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    # 0.25 and 0.5 get every item right (a tie keeps 0.5); at 0.75 item 1 is lost to class 2
    assert best_tfidf_share(y, embed, tfidf) == 0.5
    right = np.eye(3)[y]
    wrong_on_1 = np.eye(3)[[0, 0, 2, 0]]
    assert best_tfidf_share(y, wrong_on_1, right) == 0.75  # only the words' larger share fixes it
    assert best_tfidf_share(y, right, wrong_on_1) == 0.25
    assert best_tfidf_share(y, right, right) == 0.5  # every share ties
    np.testing.assert_allclose(mix(embed, tfidf, 0.25), 0.75 * embed + 0.25 * tfidf)
    with pytest.raises(ConfigError, match="for 3 labels"):
        best_tfidf_share(y[:3], embed, tfidf)


def test_the_geometric_mixture_follows_the_halves_agreement() -> None:
    # the embeddings are sure of class 0, the words of class 1; both find class 2 plausible
    embed = np.array([[0.72, 0.0001, 0.2799]])
    tfidf = np.array([[0.0001, 0.70, 0.2999]])
    arithmetic = mix(embed, tfidf, 0.5, "arithmetic")
    geometric = mix(embed, tfidf, 0.5, "geometric")
    assert arithmetic.argmax() == 0 and geometric.argmax() == 2
    pooled = np.sqrt(embed * tfidf)
    np.testing.assert_allclose(geometric, pooled / pooled.sum(), rtol=1e-9)
    weighted = embed ** 0.25 * tfidf ** 0.75
    np.testing.assert_allclose(mix(embed, tfidf, 0.75, "geometric"), weighted / weighted.sum(),
                               rtol=1e-9)
    zero = np.array([[1.0, 0.0, 0.0]])  # a probability of exactly 0 stays finite
    assert np.isfinite(mix(zero, tfidf, 0.5, "geometric")).all()
    y = np.array([2])
    assert best_tfidf_share(y, embed, tfidf, mixture="geometric") == 0.5
    assert best_tfidf_share(y, embed, tfidf, mixture="arithmetic") == 0.5  # a tie: all lose
    with pytest.raises(ConfigError, match="mixture='mean'"):
        mix(embed, tfidf, 0.5, "mean")


def test_the_pooling_is_the_mixture_and_share_the_evidence_prefers() -> None:
    # item 0: only the geometric mixture finds class 2 (test above); items 1-2 agree everywhere
    embed = np.array([[0.72, 0.0001, 0.2799], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
    tfidf = np.array([[0.0001, 0.70, 0.2999], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    y = np.array([2, 0, 1])
    assert best_tfidf_pooling(y, embed, tfidf) == ("geometric", 0.5)
    y_first = np.array([0, 0, 1])  # arithmetic 0.25 or 0.5 keeps class 0: the tie keeps 0.5
    assert best_tfidf_pooling(y_first, embed, tfidf) == ("arithmetic", 0.5)
    right = np.eye(3)[[0, 0, 1]]
    assert best_tfidf_pooling(y_first, right, right) == ("arithmetic", 0.5)  # all tie
    assert best_tfidf_pooling(y[:0], embed[:0], tfidf[:0]) == ("arithmetic", 0.5)
    assert best_tfidf_pooling(y, embed, tfidf, mixtures=("geometric",)) == ("geometric", 0.5)
    # the geometric mean wins item 0 (macro-F1 1.0 against 0.56): more than a 0.01 margin ...
    assert best_tfidf_pooling(y, embed, tfidf, margin=0.01) == ("geometric", 0.5)
    # ... by 0.44, not by more than 0.6: the even arithmetic mean stays
    assert best_tfidf_pooling(y, embed, tfidf, margin=0.6) == ("arithmetic", 0.5)
    with pytest.raises(ConfigError, match="for 2 labels"):
        best_tfidf_pooling(y[:2], embed, tfidf)


def _two_halves(
    seed: int, embed_config: LiveHeadConfig
) -> tuple[np.ndarray, list[str], PoolTfidf, LiveHead, LiveHead]:
    """45 items of 3 classes: (embeddings, texts, TF-IDF, a hybrid head, an embedding head)."""
    y = np.arange(45) % 3
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(45, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    texts = texts_for(y)
    tfidf = PoolTfidf.fit(texts)
    both = LiveHead(LiveHeadConfig(features="hybrid")).fit(X, y, 3, texts, tfidf)
    return X, texts, tfidf, both, LiveHead(embed_config).fit(X, y, 3)


@pytest.mark.parametrize("mixture", ["arithmetic", "geometric"])
def test_an_ensemble_saves_its_mixture_and_old_heads_load_as_arithmetic(
    tmp_path: Path, mixture: str
) -> None:
    X, texts, tfidf, both, embed = _two_halves(1, LiveHeadConfig(features="embed",
                                                                 tfidf_mixture=mixture))
    assert both.tfidf_model is not None and embed.embed is not None
    head = LiveHead.ensemble(embed, both.tfidf_model, tfidf, share=0.75)
    halves = (softmax(embed.embed.logits(X)),
              softmax(both.tfidf_model.logits(tfidf.transform(texts))))
    expected = mix(*halves, 0.75, mixture)
    np.testing.assert_allclose(head.predict_proba(X, texts), expected, atol=1e-6)
    head.save(tmp_path / "head")
    loaded = LiveHead.load(tmp_path / "head")
    assert loaded.config.tfidf_mixture == mixture
    np.testing.assert_allclose(loaded.predict_proba(X, texts), expected, atol=1e-5)
    meta_path = tmp_path / "head" / "live_head.json"  # as a head saved before the mixture
    meta = json.loads(meta_path.read_text())
    del meta["config"]["tfidf_mixture"]
    meta_path.write_text(json.dumps(meta))
    old = LiveHead.load(tmp_path / "head")
    assert old.config.tfidf_mixture == "arithmetic"
    np.testing.assert_allclose(old.predict_proba(X, texts), mix(*halves, 0.75, "arithmetic"),
                               atol=1e-5)


def test_an_ensemble_with_a_share_predicts_and_saves_it(tmp_path: Path) -> None:
    X, texts, tfidf, both, embed = _two_halves(0, LiveHeadConfig(features="embed"))
    assert both.tfidf_model is not None
    head = LiveHead.ensemble(embed, both.tfidf_model, tfidf, share=0.75)
    expected = (0.25 * softmax(embed.embed.logits(X))  # type: ignore[union-attr]
                + 0.75 * softmax(both.tfidf_model.logits(tfidf.transform(texts))))
    np.testing.assert_allclose(head.predict_proba(X, texts), expected, atol=1e-6)
    head.save(tmp_path / "head")
    loaded = LiveHead.load(tmp_path / "head")
    assert loaded.config.tfidf_share == 0.75
    np.testing.assert_allclose(loaded.predict_proba(X, texts), expected, atol=1e-5)
