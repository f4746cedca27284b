"""The live head: a cheap classifier on frozen sentence embeddings, refit after every label.

The fast path of the two-speed learner (issue 13). The adapter takes minutes a round on a CPU;
a multinomial logistic regression on the mean-pooled, L2-normalised embeddings the product already
computes trains in well under a second and, with few labels, is at least as accurate. It drives
the model's guess, the uncertainty and the queue between adapter rounds, and initialises the
adapter's head (LP-FT, :meth:`LiveHead.linear_weights`).

Pure NumPy + scikit-learn (no torch, no app imports); a saved head loads and predicts with NumPy
alone (weights as ``.npy``, settings and the TF-IDF vocabulary as JSON — no pickle).

Defaults and why:
- ``C=10``: embeddings are L2-normalised, so the usual ``C=1`` shrinks the logits of a few dozen
  labels towards uniform; ``C=10`` is the ``embed-lr`` baseline's setting (DATA.md).
- ``class_weight="balanced"``: the product is judged on macro-F1 and labels drawn by active
  learning are rarely balanced; inverse-frequency weights keep minority classes alive.
- ``features="auto"``: embeddings only until enough labels exist to cross-validate
  (``auto_min_labels``); then the hybrid (embeddings + TF-IDF of the project's own texts) is used
  only when its out-of-fold macro-F1 beats the embedding-only head by ``auto_margin``. TF-IDF wins
  on long, keyword-rich texts with many labels; embeddings win with few labels and short texts.
- ``tfidf_share=0.5``, ``tfidf_mixture="arithmetic"``: the ensemble's probabilities are
  ``(1 - s) * embedding LR + s * TF-IDF LR``, or their weighted geometric mean (:func:`mix`);
  the live refit chooses both, ``s`` among ``TFIDF_SHARES``, on the labels' out-of-fold
  predictions and the dev set (:func:`best_tfidf_pooling`). The geometric mean helped where the
  words carry the class (20 Newsgroups, spam, tweets) and hurt on R8's rare classes, which one
  unsure half vetoes (docs/results.md, issue 18).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Self

import numpy as np

from contract.errors import ConfigError

FEATURES = ("embed", "hybrid", "auto")
HYBRID_MODES = ("concat", "ensemble")
CANDIDATES_BY_COST = ("live_head", "adapter", "average")
TFIDF_SHARES = (0.25, 0.5, 0.75)
"""The TF-IDF half's shares of the hybrid's mean that the live refit chooses among."""
TFIDF_MAX_TERMS = 50_000
"""``PoolTfidf``'s vocabulary cap: the most frequent 1-2 grams (200,000 measured, no gain)."""
MIXTURES = ("arithmetic", "geometric")
"""How the hybrid pools its halves' probabilities (:func:`mix`)."""
DEFAULT_MIXTURE = "arithmetic"
SAVED_BEFORE_MIXTURE = "arithmetic"
"""The mixture of heads saved before ``tfidf_mixture`` existed (they carry no such key)."""
FORMAT_VERSION = 1
MEMO_SIZE = 8
# scikit-learn's default token pattern; the NumPy-only transform reproduces it exactly.
TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")


@dataclass
class LiveHeadConfig:
    """Settings of the live head (see the module docstring for the defaults)."""

    C: float = 10.0
    class_weight: str | None = "balanced"
    features: str = "auto"
    hybrid_mode: str = "ensemble"
    tfidf_weight: float = 1.0
    tfidf_share: float = 0.5
    tfidf_mixture: str = DEFAULT_MIXTURE
    cv_folds: int = 5
    auto_min_labels: int = 40
    auto_margin: float = 0.01
    max_iter: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.C > 0:
            raise ConfigError(f"C must be > 0, got {self.C}")
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"class_weight must be None or 'balanced', got {self.class_weight!r}")
        if self.features not in FEATURES:
            raise ConfigError(f"features={self.features!r}; choose one of {FEATURES}")
        if self.hybrid_mode not in HYBRID_MODES:
            raise ConfigError(f"hybrid_mode={self.hybrid_mode!r}; choose one of {HYBRID_MODES}")
        if not self.tfidf_weight > 0:
            raise ConfigError(f"tfidf_weight must be > 0, got {self.tfidf_weight}")
        if not 0 < self.tfidf_share < 1:
            raise ConfigError(f"tfidf_share must be in (0, 1), got {self.tfidf_share}")
        if self.tfidf_mixture not in MIXTURES:
            raise ConfigError(f"tfidf_mixture={self.tfidf_mixture!r}; choose one of {MIXTURES}")
        if not 0 <= self.auto_margin < 1:
            raise ConfigError(f"auto_margin must be in [0, 1), got {self.auto_margin}")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds must be >= 2, got {self.cv_folds}")
        if self.max_iter < 10:
            raise ConfigError(f"max_iter must be >= 10, got {self.max_iter}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown live head config keys {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


# --------------------------------------------------------------------------- TF-IDF of the pool


class PoolTfidf:
    """TF-IDF fitted on the pool's texts without labels: sublinear tf, 1-2 grams, ``min_df=2``.

    The vocabulary is capped (``max_features``, most frequent terms first) so the saved head stays
    small. ``transform`` uses scikit-learn when available; a loaded one also works with NumPy alone
    (same tokenisation as scikit-learn's default analyzer, checked by a test).
    """

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray) -> None:
        if len(vocabulary) != len(idf):
            raise ConfigError(f"{len(vocabulary)} terms but {len(idf)} idf weights")
        self.vocabulary = list(vocabulary)
        self.index = {term: i for i, term in enumerate(self.vocabulary)}
        self.idf = np.asarray(idf, dtype=np.float64)
        self._memo: dict[int, tuple[int, Any]] = {}

    @classmethod
    def fit(cls, texts: Sequence[str], *, max_features: int | None = TFIDF_MAX_TERMS,
            min_df: int = 2) -> PoolTfidf:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not texts:
            raise ConfigError("cannot fit TF-IDF on zero texts")
        effective_min_df = min_df if len(texts) >= 2 * min_df else 1
        vectorizer = TfidfVectorizer(
            ngram_range=(1, 2),
            sublinear_tf=True,
            min_df=effective_min_df,
            max_features=max_features,
            dtype=np.float32,
        )
        try:
            vectorizer.fit(texts)
        except ValueError as exc:  # e.g. every text empty or a single letter
            raise ConfigError(f"TF-IDF found no terms in the pool texts: {exc}") from exc
        vocabulary = [""] * len(vectorizer.vocabulary_)
        for term, i in vectorizer.vocabulary_.items():
            vocabulary[i] = term
        return cls(vocabulary, vectorizer.idf_)

    @property
    def n_features(self) -> int:
        return len(self.vocabulary)

    def transform(self, texts: Sequence[str]) -> Any:
        """A (n, n_features) CSR matrix of L2-normalised rows (SciPy present), else dense.

        The last few results are memoised by content (the pool, dev and test texts are
        transformed again at every refit)."""
        key = hash(tuple(texts))
        hit = self._memo.get(key)
        if hit is not None and hit[0] == len(texts):
            return hit[1]
        matrix = self._transform(texts)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.pop(next(iter(self._memo)))
        self._memo[key] = (len(texts), matrix)
        return matrix

    def _transform(self, texts: Sequence[str]) -> Any:
        try:
            from scipy import sparse
        except ImportError:  # NumPy-only deployment of a saved head
            return self.transform_dense(texts)
        rows, cols, vals = [], [], []
        for r, text in enumerate(texts):
            idx, val = self.row(text)
            rows.append(np.full(len(idx), r, dtype=np.int64))
            cols.append(idx)
            vals.append(val)
        shape = (len(texts), self.n_features)
        if not rows:
            return sparse.csr_matrix(shape, dtype=np.float64)
        return sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape
        )

    def transform_dense(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.n_features))
        for r, text in enumerate(texts):
            idx, val = self.row(text)
            out[r, idx] = val
        return out

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and L2-normalised sublinear tf-idf values of one text."""
        tokens = TOKEN_PATTERN.findall(text.lower())
        grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
        counts = Counter(g for g in grams if g in self.index)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx = np.fromiter((self.index[g] for g in counts), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        val = (1.0 + np.log(tf)) * self.idf[idx]
        norm = float(np.linalg.norm(val))
        return idx, val / norm if norm else val

    def save(self, directory: Path) -> None:
        (directory / "tfidf_vocabulary.json").write_text(json.dumps(self.vocabulary))
        np.save(directory / "tfidf_idf.npy", self.idf, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> PoolTfidf:
        vocabulary = json.loads((directory / "tfidf_vocabulary.json").read_text())
        return cls(vocabulary, np.load(directory / "tfidf_idf.npy", allow_pickle=False))


# --------------------------------------------------------------------------- linear models


@dataclass
class _Linear:
    """Logits = X @ W.T + b over all ``n_classes`` (rows of unseen classes: W = 0, low bias)."""

    W: np.ndarray
    b: np.ndarray

    def logits(self, X: Any) -> np.ndarray:
        """Float64 logits; a float32 ``X`` is multiplied in float32 (no float64 copy of a
        100,000-row pool: the logits differ by ~1e-6, far below any decision)."""
        W = self.W.astype(X.dtype) if X.dtype == np.float32 else self.W
        return np.asarray(X @ W.T, dtype=np.float64) + self.b


UNSEEN_BIAS_GAP = math.log(1000.0)  # an unseen class gets ~1/1000 of the weakest seen class's odds
COLD_TOL = 1e-4
WARM_TOL = 1e-5
"""A warm start begins next to the old optimum, where one new label among a thousand moves the
(mean) gradient by less than ``COLD_TOL``: L-BFGS would stop at once and ignore the label. With
``WARM_TOL`` the warm refit lands closer to the exact optimum than a cold fit at ``COLD_TOL``
(measured, 1,000 labels x 384 dims x 20 classes: max probability error 0.002 vs 0.005) in about
half the iterations."""


def _fit_linear(
    X: Any, y: np.ndarray, n_classes: int, config: LiveHeadConfig, C: float | None = None,
    init: _Linear | None = None, sample_weight: np.ndarray | None = None,
) -> _Linear:
    """Multinomial logistic regression, expanded to all ``n_classes`` as softmax weights.

    ``init`` (the previous refit's weights over the same classes and dimensions) warm-starts
    L-BFGS: the objective is convex, so the optimum is the cold fit's (within the solver's
    tolerance) and a refit after one more label takes a few iterations instead of dozens."""
    from sklearn.linear_model import LogisticRegression

    seen = np.unique(y)
    d = X.shape[1]
    W = np.zeros((n_classes, d))
    b = np.zeros(n_classes)
    if len(seen) < 2:  # one labelled class: nothing to discriminate; uniform
        return _Linear(W, b)
    model = LogisticRegression(
        C=config.C if C is None else C,
        class_weight=config.class_weight,
        max_iter=config.max_iter,
        tol=COLD_TOL,
        random_state=config.seed,
    )
    if init is not None and init.W.shape == (n_classes, d):
        model.set_params(warm_start=True, tol=WARM_TOL)
        if len(seen) == 2:  # binary LR keeps one vector: the difference of the softmax rows
            model.coef_ = (init.W[seen[1]] - init.W[seen[0]])[None, :].copy()
            model.intercept_ = np.array([init.b[seen[1]] - init.b[seen[0]]])
        else:
            model.coef_ = init.W[seen].copy()
            model.intercept_ = init.b[seen].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on separable few-label problems
        model.fit(X, y, sample_weight=sample_weight)
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    classes = np.asarray(model.classes_)
    if len(classes) == 2:  # binary LR stores one vector; softmax form is +-half of it
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    W[classes] = coef
    b[classes] = intercept
    unseen = np.setdiff1d(np.arange(n_classes), classes)
    if len(unseen):
        b[unseen] = intercept.min() - UNSEEN_BIAS_GAP
    return _Linear(W, b)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _hstack(embeddings: np.ndarray, tfidf_rows: Any, weight: float) -> Any:
    try:
        from scipy import sparse
    except ImportError:
        return np.hstack([embeddings, weight * np.asarray(tfidf_rows)])
    if sparse.issparse(tfidf_rows):
        return sparse.hstack([sparse.csr_matrix(embeddings), weight * tfidf_rows], format="csr")
    return np.hstack([embeddings, weight * np.asarray(tfidf_rows)])


def _as_embeddings(embeddings: np.ndarray, *, keep_float32: bool = False) -> np.ndarray:
    X = np.asarray(embeddings)
    if not (keep_float32 and X.dtype == np.float32):
        X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ConfigError(f"embeddings must be a 2-D array (n, d), got shape {X.shape}")
    return X


def _check_labels(labels: np.ndarray, n_classes: int, n: int) -> np.ndarray:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != n:
        raise ConfigError(f"{n} embeddings but {len(y)} labels")
    if n_classes < 2:
        raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ConfigError(f"label ids must lie in [0, {n_classes}), got {y.min()}..{y.max()}")
    return y


# --------------------------------------------------------------------------- the live head


class LiveHead:
    """Logistic regression on embeddings, optionally with TF-IDF of the project's texts."""

    def __init__(self, config: LiveHeadConfig | None = None) -> None:
        self.config = config or LiveHeadConfig()
        self.n_classes = 0
        self.features_used = "embed"
        self.selection: dict[str, Any] = {}
        self.embed: _Linear | None = None  # embedding-only LR (always fitted: LP-FT init)
        self.tfidf_model: _Linear | None = None  # ensemble: LR on TF-IDF alone
        self.concat: _Linear | None = None  # concat: LR on embeddings (+) weighted TF-IDF
        self.tfidf: PoolTfidf | None = None
        self.n_labels = 0
        self.extra: dict[str, Any] = {}  # what save() was given (e.g. the encoder's fingerprint)

    # ---- fitting
    def fit(
        self,
        embeddings: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        texts: Sequence[str] | None = None,
        tfidf: PoolTfidf | None = None,
        *,
        features: str | None = None,
        warm_start: LiveHead | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> LiveHead:
        """Fit on the labelled items. ``features`` overrides the config (e.g. a cached "auto"
        choice, so a refit after every label does not cross-validate every time).
        ``warm_start``: a previous head over the same classes and embeddings; its
        embedding-only weights start the solver (same optimum, fewer iterations).
        ``sample_weight``: one weight per item (self-training gives pseudo-labels less)."""
        X = _as_embeddings(embeddings)
        y = _check_labels(labels, n_classes, len(X))
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != (len(y),) or not (sample_weight > 0).all():
                raise ConfigError(f"sample_weight must hold {len(y)} positive weights")
        wanted = features or self.config.features
        if wanted not in FEATURES:
            raise ConfigError(f"features={wanted!r}; choose one of {FEATURES}")
        if wanted != "embed" and (texts is None or tfidf is None):
            if features == "hybrid" or (features is None and self.config.features == "hybrid"):
                raise ConfigError("features='hybrid' needs the labelled texts and a PoolTfidf")
            wanted = "embed"
        if texts is not None and len(texts) != len(X):
            raise ConfigError(f"{len(X)} embeddings but {len(texts)} texts")
        self.n_classes = n_classes
        self.n_labels = len(y) if sample_weight is None else int((sample_weight >= 1).sum())
        self.tfidf = tfidf if wanted != "embed" else None
        if wanted == "auto":
            assert texts is not None and tfidf is not None
            wanted, self.selection = select_features(X, y, n_classes, texts, tfidf, self.config)
            if wanted == "embed":
                self.tfidf = None
        else:
            self.selection = {"features": wanted, "reason": "set in the config or by the caller"}
        self.features_used = wanted
        init = None
        if (warm_start is not None and warm_start.embed is not None
                and warm_start.n_classes == n_classes and warm_start.config == self.config):
            init = warm_start.embed
        w = sample_weight
        self.embed = _fit_linear(X, y, n_classes, self.config, init=init, sample_weight=w)
        self.tfidf_model = self.concat = None
        if wanted == "hybrid":
            assert texts is not None and self.tfidf is not None
            T = self.tfidf.transform(texts)
            if self.config.hybrid_mode == "ensemble":
                self.tfidf_model = _fit_linear(T, y, n_classes, self.config, sample_weight=w)
            else:
                joined = _hstack(X, T, self.config.tfidf_weight)
                self.concat = _fit_linear(joined, y, n_classes, self.config, sample_weight=w)
        return self

    @classmethod
    def ensemble(cls, embed_head: LiveHead, tfidf_model: _Linear, tfidf: PoolTfidf,
                 selection: Mapping[str, Any] | None = None, *, share: float = 0.5,
                 mixture: str | None = None) -> LiveHead:
        """The hybrid head of ``embed_head``'s embedding LR and a TF-IDF LR fitted elsewhere
        (the live refit keeps the TF-IDF LR between label-growth refits); ``share``: the TF-IDF
        LR's weight in the mixture of their probabilities; ``mixture``: which (:func:`mix`;
        default ``embed_head.config.tfidf_mixture``)."""
        if embed_head.embed is None:
            raise ConfigError("the embedding head is not fitted yet")
        if tfidf_model.W.shape != (embed_head.n_classes, tfidf.n_features):
            raise ConfigError(
                f"the TF-IDF model has weights {tfidf_model.W.shape}, expected "
                f"({embed_head.n_classes}, {tfidf.n_features})"
            )
        head = cls(replace(embed_head.config, features="hybrid", hybrid_mode="ensemble",
                           tfidf_share=share,
                           tfidf_mixture=mixture or embed_head.config.tfidf_mixture))
        head.n_classes, head.n_labels = embed_head.n_classes, embed_head.n_labels
        head.embed, head.tfidf_model, head.tfidf = embed_head.embed, tfidf_model, tfidf
        head.features_used = "hybrid"
        head.selection = dict(selection or {"features": "hybrid"})
        return head

    # ---- prediction
    def predict_proba(
        self, embeddings: np.ndarray, texts: Sequence[str] | None = None, *,
        tfidf_rows: Any = None,
    ) -> np.ndarray:
        """(n, n_classes) probabilities; a hybrid head needs the items' texts too, or their
        TF-IDF rows in this head's vocabulary (``tfidf_rows``: a cache of them, e.g. the live
        refit's, saves transforming the texts again)."""
        if self.embed is None:
            raise ConfigError("the live head is not fitted yet")
        X = _as_embeddings(embeddings, keep_float32=True)
        if X.shape[1] != self.embed.W.shape[1]:
            raise ConfigError(
                f"embeddings have {X.shape[1]} dimensions, the head was fitted on "
                f"{self.embed.W.shape[1]}"
            )
        if self.features_used == "embed":
            return softmax(self.embed.logits(X))
        if tfidf_rows is not None:
            if tfidf_rows.shape != (len(X), self.tfidf.n_features if self.tfidf else -1):
                raise ConfigError(f"TF-IDF rows of shape {tfidf_rows.shape} for {len(X)} items")
            T = tfidf_rows
        elif texts is None or len(texts) != len(X):
            raise ConfigError("this live head uses TF-IDF features: pass one text per embedding")
        else:
            assert self.tfidf is not None
            T = self.tfidf.transform(texts)
        if self.concat is not None:
            return softmax(self.concat.logits(_hstack(X, T, self.config.tfidf_weight)))
        assert self.tfidf_model is not None
        return mix(softmax(self.embed.logits(X)), softmax(self.tfidf_model.logits(T)),
                   self.config.tfidf_share, self.config.tfidf_mixture)

    def linear_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W (n_classes, d), b (n_classes,))`` of the embedding-only multinomial LR:
        ``softmax(e @ W.T + b)`` on a mean-pooled, L2-normalised embedding ``e``. Use it to
        initialise an adapter head that reads the same pooled embedding (LP-FT)."""
        if self.embed is None:
            raise ConfigError("the live head is not fitted yet")
        return self.embed.W.copy(), self.embed.b.copy()

    # ---- persistence (no pickle: .npy + JSON; loads with NumPy alone)
    def save(self, directory: str | Path, *, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the head to ``directory``; ``extra`` (e.g. the encoder it belongs to) goes into
        ``live_head.json`` verbatim."""
        if self.embed is None:
            raise ConfigError("the live head is not fitted yet")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {"embed_W": self.embed.W, "embed_b": self.embed.b}
        if self.tfidf_model is not None:
            arrays.update(tfidf_W=self.tfidf_model.W, tfidf_b=self.tfidf_model.b)
        if self.concat is not None:
            arrays.update(concat_W=self.concat.W, concat_b=self.concat.b)
        for name, array in arrays.items():
            np.save(out / f"{name}.npy", np.asarray(array, dtype=np.float32), allow_pickle=False)
        if self.tfidf is not None and self.features_used == "hybrid":
            self.tfidf.save(out)
        meta = {
            "format": "tapestry-live-head",
            "version": FORMAT_VERSION,
            "n_classes": self.n_classes,
            "n_labels": self.n_labels,
            "features": self.features_used,
            "config": self.config.to_dict(),
            "selection": _jsonable(self.selection),
            "arrays": sorted(arrays),
            "extra": dict(extra or {}),
        }
        (out / "live_head.json").write_text(json.dumps(meta, indent=2))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> LiveHead:
        source = Path(directory)
        meta = json.loads((source / "live_head.json").read_text())
        if meta.get("format") != "tapestry-live-head" or meta.get("version") != FORMAT_VERSION:
            raise ConfigError(f"{source} does not hold a live head of format {FORMAT_VERSION}")
        head = cls(LiveHeadConfig.from_dict(
            {"tfidf_mixture": SAVED_BEFORE_MIXTURE, **meta["config"]}))
        arrays = {
            name: np.load(source / f"{name}.npy", allow_pickle=False).astype(np.float64)
            for name in meta["arrays"]
        }
        head.n_classes = int(meta["n_classes"])
        head.n_labels = int(meta["n_labels"])
        head.features_used = meta["features"]
        head.selection = meta.get("selection", {})
        head.extra = meta.get("extra", {})
        head.embed = _Linear(arrays["embed_W"], arrays["embed_b"])
        if "tfidf_W" in arrays:
            head.tfidf_model = _Linear(arrays["tfidf_W"], arrays["tfidf_b"])
        if "concat_W" in arrays:
            head.concat = _Linear(arrays["concat_W"], arrays["concat_b"])
        if head.features_used == "hybrid":
            head.tfidf = PoolTfidf.load(source)
        return head


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=float))


# --------------------------------------------------------------------------- cross-validation


@dataclass
class CrossValidation:
    """Out-of-fold probabilities of the live head over the labelled items.

    ``scored`` marks the items that got out-of-fold probabilities: items of a class with fewer
    than 2 labels are never held out (a fold without its class could only get it wrong, and a
    fold with it would leave none to learn from); they stay in every training fold so the head
    still knows the class. Their rows of ``probs`` are NaN."""

    probs: np.ndarray
    scored: np.ndarray
    folds: int

    @property
    def n_scored(self) -> int:
        return int(self.scored.sum())

    def describe(self) -> str:
        """What the evidence is, e.g. ``"5-fold CV over 120 labels"``."""
        skipped = len(self.scored) - self.n_scored
        extra = f" (+{skipped} of classes with one label, never held out)" if skipped else ""
        return f"{self.folds}-fold CV over {self.n_scored} labels{extra}"

    def macro_f1(self, labels: np.ndarray | Sequence[int]) -> float:
        y = np.asarray(labels, dtype=np.int64)
        return macro_f1(y[self.scored], self.probs[self.scored].argmax(axis=1))


def cv_folds_for(labels: np.ndarray, folds: int) -> int:
    """``k`` for stratified k-fold: ``min(folds, smallest class count)`` over the classes with 2+
    labels (0 when no class has 2 labels): every fold then holds every such class."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    counts = counts[counts >= 2]
    return int(min(folds, counts.min())) if len(counts) else 0


def _folds(
    y: np.ndarray, n_classes: int, config: LiveHeadConfig,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, int]:
    """The live head's cross-validation folds over labels ``y``: ((train rows, held-out rows)
    per fold, which rows are ever held out, k). Stratified k-fold (scikit-learn's
    ``StratifiedKFold``, shuffled with ``config.seed``), ``k = cv_folds_for(y, config.cv_folds)``
    over the classes with 2+ labels; rows of a class with one label are in every training fold
    and never held out. Raises ``ConfigError`` when fewer than 2 rows can be held out."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=n_classes)
    scored = counts[y] >= 2
    k = cv_folds_for(y, config.cv_folds)
    if k < 2 or scored.sum() < 2:
        raise ConfigError(
            f"cross-validation needs a class with at least 2 labels, got {len(y)} labels"
        )
    always = np.flatnonzero(~scored)
    rows = np.flatnonzero(scored)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=config.seed)
    folds = [(np.concatenate([rows[train], always]), rows[test])
             for train, test in splitter.split(rows, y[rows])]
    return folds, scored, k


def cross_validate(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    texts: Sequence[str] | None = None,
    tfidf: PoolTfidf | None = None,
    *,
    config: LiveHeadConfig | None = None,
    features: str | None = None,
) -> CrossValidation:
    """Stratified k-fold cross-validation of the live head (:func:`_folds`); see
    :class:`CrossValidation` for the classes with one label.

    Raises ``ConfigError`` when fewer than 2 items can be scored."""
    config = config or LiveHeadConfig()
    X = _as_embeddings(embeddings)
    y = _check_labels(labels, n_classes, len(X))
    wanted = features or config.features
    if wanted == "auto":
        wanted = "embed"  # never select features on the folds we score (no double dipping)
    folds, scored, k = _folds(y, n_classes, config)
    out = np.full((len(y), n_classes), np.nan)
    for train, test in folds:
        head = LiveHead(config).fit(
            X[train],
            y[train],
            n_classes,
            None if texts is None else [texts[i] for i in train],
            tfidf,
            features=wanted,
        )
        out[test] = head.predict_proba(X[test], None if texts is None else [texts[i] for i in test])
    return CrossValidation(out, scored, k)


def linear_out_of_fold(
    X: Any, labels: np.ndarray, n_classes: int, config: LiveHeadConfig | None = None,
) -> CrossValidation:
    """Out-of-fold probabilities of the live head's logistic regression on features ``X`` (dense
    embeddings or sparse TF-IDF rows), on the same folds as :func:`cross_validate`, so two
    feature sets scored with it are judged on the same items; items of a class with one label
    are never held out (NaN rows).

    Raises ``ConfigError`` when fewer than 2 items can be scored."""
    config = config or LiveHeadConfig()
    y = _check_labels(labels, n_classes, X.shape[0])
    folds, scored, k = _folds(y, n_classes, config)
    out = np.full((len(y), n_classes), np.nan)
    for train, test in folds:
        out[test] = softmax(_fit_linear(X[train], y[train], n_classes, config).logits(X[test]))
    return CrossValidation(out, scored, k)


def cv_probs(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    texts: Sequence[str] | None = None,
    tfidf: PoolTfidf | None = None,
    *,
    config: LiveHeadConfig | None = None,
    features: str | None = None,
) -> np.ndarray:
    """Out-of-fold probabilities of the live head for every labelled item: the live head's
    stand-in for a dev set in projects without one. Items of a class with one label (never held
    out by :func:`cross_validate`) get the probabilities of a head fitted on the other items."""
    config = config or LiveHeadConfig()
    X = _as_embeddings(embeddings)
    y = _check_labels(labels, n_classes, len(X))
    if len(y) < 2:
        raise ConfigError("cross-validation needs at least 2 labelled items")
    wanted = "embed" if (features or config.features) == "auto" else (features or config.features)
    if cv_folds_for(y, config.cv_folds) < 2:  # every class has one label: leave one out
        out = np.zeros((len(y), n_classes))
        for i in range(len(y)):
            rest = np.flatnonzero(np.arange(len(y)) != i)
            out[i] = _fit_rest(X, y, n_classes, texts, tfidf, config, wanted, rest, [i])[0]
        return out
    cv = cross_validate(X, y, n_classes, texts, tfidf, config=config, features=wanted)
    out = cv.probs
    lonely = np.flatnonzero(~cv.scored)
    if len(lonely):
        rest = np.flatnonzero(cv.scored)
        out[lonely] = _fit_rest(X, y, n_classes, texts, tfidf, config, wanted, rest, lonely)
    return out


def _fit_rest(
    X: np.ndarray, y: np.ndarray, n_classes: int, texts: Sequence[str] | None,
    tfidf: PoolTfidf | None, config: LiveHeadConfig, features: str, train: np.ndarray,
    test: Sequence[int] | np.ndarray,
) -> np.ndarray:
    head = LiveHead(config).fit(
        X[train], y[train], n_classes,
        None if texts is None else [texts[i] for i in train], tfidf, features=features,
    )
    return head.predict_proba(X[test], None if texts is None else [texts[i] for i in test])


def select_features(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    texts: Sequence[str],
    tfidf: PoolTfidf,
    config: LiveHeadConfig,
) -> tuple[str, dict[str, Any]]:
    """Pick "embed" or "hybrid" by out-of-fold macro-F1 on the labelled items. With fewer than
    ``auto_min_labels`` labels (or fewer than 2 classes with 2+ items) CV is too noisy: embed."""
    counts = np.bincount(y, minlength=n_classes)
    if len(y) < config.auto_min_labels or int((counts >= 2).sum()) < 2:
        return "embed", {
            "features": "embed",
            "reason": f"{len(y)} labels: below auto_min_labels={config.auto_min_labels} "
            "or fewer than 2 classes with 2+ labels",
        }
    scores = {}
    for name in ("embed", "hybrid"):
        cv = cross_validate(X, y, n_classes, texts, tfidf, config=config, features=name)
        scores[name] = cv.macro_f1(y)
    chosen = "hybrid" if scores["hybrid"] > scores["embed"] + config.auto_margin else "embed"
    return chosen, {
        "features": chosen,
        "cv_macro_f1": scores,
        "reason": f"{config.cv_folds}-fold CV macro-F1 embed {scores['embed']:.3f}, "
        f"hybrid {scores['hybrid']:.3f} (hybrid needs +{config.auto_margin})",
    }


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the labels in the gold labels or the predictions (as worker.ml.evaluation)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    labels = np.union1d(y_true, y_pred)
    f1s = []
    for c in labels:
        tp = float(np.sum((y_true == c) & (y_pred == c)))
        fp = float(np.sum((y_true != c) & (y_pred == c)))
        fn = float(np.sum((y_true == c) & (y_pred != c)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


def mix(embed_probs: np.ndarray, tfidf_probs: np.ndarray, share: float,
        mixture: str = DEFAULT_MIXTURE) -> np.ndarray:
    """The hybrid's probabilities with the TF-IDF half at ``share``: ``"arithmetic"``,
    ``(1 - share) * embed_probs + share * tfidf_probs``; ``"geometric"``, the normalised
    weighted geometric mean ``softmax((1 - share) * log embed_probs + share * log tfidf_probs)``
    (log-linear pooling: a half that is sure of a class counts for more than one that spreads
    its mass, whatever their temperatures)."""
    if mixture == "arithmetic":
        return (1 - share) * embed_probs + share * tfidf_probs
    if mixture != "geometric":
        raise ConfigError(f"mixture={mixture!r}; choose one of {MIXTURES}")
    tiny = np.finfo(np.float64).tiny
    logits = ((1 - share) * np.log(np.maximum(embed_probs, tiny))
              + share * np.log(np.maximum(tfidf_probs, tiny)))
    return softmax(logits)


def best_tfidf_share(
    y_true: np.ndarray, embed_probs: np.ndarray, tfidf_probs: np.ndarray,
    shares: Sequence[float] = TFIDF_SHARES, mixture: str = DEFAULT_MIXTURE,
) -> float:
    """The TF-IDF half's share ``s`` of the hybrid's ``mixture`` (:func:`mix`), with
    the best macro-F1 on ``y_true`` among ``shares``; a tie keeps the share closest to 0.5.
    Texts with many distinctive words lean on them (20 Newsgroups and spam e-mails chose 0.75),
    R8's news briefs on the embeddings (mostly 0.25), tweets chose 0.5 (docs/results.md, issue
    18)."""
    return best_tfidf_pooling(y_true, embed_probs, tfidf_probs, shares, (mixture,))[1]


def best_tfidf_pooling(
    y_true: np.ndarray, embed_probs: np.ndarray, tfidf_probs: np.ndarray,
    shares: Sequence[float] = TFIDF_SHARES, mixtures: Sequence[str] = MIXTURES,
    margin: float = 0.0,
) -> tuple[str, float]:
    """The mixture and the TF-IDF half's share with the best macro-F1 on ``y_true`` among
    ``mixtures`` x ``shares``; a tie keeps the earlier mixture (arithmetic first: it lets a class
    that one half finds implausible through, which rare classes need), then the share closest to
    0.5. ``margin``: the first mixture's even mean is kept unless the best beats it by more."""
    if embed_probs.shape != tfidf_probs.shape or len(embed_probs) != len(y_true):
        raise ConfigError(f"probabilities {embed_probs.shape} and {tfidf_probs.shape} for "
                          f"{len(y_true)} labels")
    if len(y_true) == 0:
        return mixtures[0], 0.5
    even = (mixtures[0], 0.5)
    options = [(m, s) for m in mixtures for s in shares]
    scores = {o: macro_f1(y_true, mix(embed_probs, tfidf_probs, o[1], o[0]).argmax(axis=1))
              for o in {*options, even}}
    best = max(options, key=lambda o: (scores[o], -mixtures.index(o[0]), -abs(o[1] - 0.5)))
    if margin > 0 and scores[best] <= scores[even] + margin:
        return even
    return best


# --------------------------------------------------------------------------- cold start


def zero_shot_scores(
    item_embeddings: np.ndarray, label_embeddings: np.ndarray, *, temperature: float = 0.05
) -> np.ndarray:
    """Softmaxed cosine similarities (n, n_classes) of items to label prototypes.

    ``label_embeddings`` holds one embedding per class of the label name (plus its optional
    one-line description), embedded by the caller with the same encoder. ``temperature`` 0.05
    turns the typical 0.1-0.3 cosine spread of sentence encoders into usable confidences.
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    items = _unit_rows(_as_embeddings(item_embeddings))
    labels = _unit_rows(_as_embeddings(label_embeddings))
    if items.shape[1] != labels.shape[1]:
        raise ConfigError(
            f"item embeddings have {items.shape[1]} dimensions, labels {labels.shape[1]}"
        )
    return softmax(items @ labels.T / temperature)


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.asarray(X / np.where(norms > 0, norms, 1.0))


def diverse_seed(embeddings: np.ndarray, k: int, seed: int = 0) -> list[int]:
    """``k`` distinct item indices: the items nearest to k-means centres of the (unit) embeddings
    (the k-means seeding of ALPS / cluster-based cold start), largest cluster first."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    X = _unit_rows(_as_embeddings(embeddings))
    if not 1 <= k <= len(X):
        raise ConfigError(f"k must lie in [1, {len(X)}], got {k}")
    kmeans: Any
    if len(X) > 20_000:
        kmeans = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=2048)
    else:
        kmeans = KMeans(n_clusters=k, random_state=seed, n_init=1)
    assignment = kmeans.fit_predict(X)
    centres = kmeans.cluster_centers_
    order = np.argsort(-np.bincount(assignment, minlength=k), kind="stable")
    chosen: list[int] = []
    taken = np.zeros(len(X), dtype=bool)
    for c in order:
        distance = np.linalg.norm(X - centres[c], axis=1)
        distance[taken] = np.inf
        best = int(np.argmin(distance))
        chosen.append(best)
        taken[best] = True
    return chosen


# --------------------------------------------------------------------------- promotion


@dataclass
class ServedChoice:
    name: str
    scores: dict[str, float]
    reason: str


def choose_served(
    dev_probs: Mapping[str, np.ndarray],
    dev_labels: Sequence[int] | np.ndarray,
    *,
    add_average: bool = True,
    min_gain: float = 0.0,
    evidence: str | None = None,
) -> ServedChoice:
    """The candidate ("live_head", "adapter", "average") with the best dev macro-F1.

    ``evidence`` names what the labels are when they are not a dev set (e.g. "a held-out slice
    of 18 labels"); it goes into the reason.

    "average" (the mean of the live head's and the adapter's probabilities) is added when both are
    given. A costlier candidate (order: live_head, adapter, average) must beat every cheaper one
    by more than ``min_gain``; ties go to the cheaper one, so the live head wins a tie.
    """
    y = np.asarray(dev_labels, dtype=np.int64)
    probs = dict(dev_probs)
    if not probs:
        raise ConfigError("choose_served needs at least one candidate")
    unknown = sorted(set(probs) - set(CANDIDATES_BY_COST))
    if unknown:
        raise ConfigError(f"unknown candidates {unknown}; known: {list(CANDIDATES_BY_COST)}")
    for name, p in probs.items():
        if p.ndim != 2 or len(p) != len(y):
            raise ConfigError(f"{name}: probabilities of shape {p.shape} for {len(y)} dev labels")
    if add_average and "live_head" in probs and "adapter" in probs and "average" not in probs:
        if probs["live_head"].shape != probs["adapter"].shape:
            raise ConfigError("live_head and adapter probabilities differ in shape")
        probs["average"] = 0.5 * (probs["live_head"] + probs["adapter"])
    if len(y) == 0:
        cheapest = next(n for n in CANDIDATES_BY_COST if n in probs)
        return ServedChoice(cheapest, {}, "no dev labels: serving the cheapest model")
    scores = {n: macro_f1(y, probs[n].argmax(axis=1)) for n in CANDIDATES_BY_COST if n in probs}
    best = None
    for name in CANDIDATES_BY_COST:  # cheapest first: a costlier one must beat the best so far
        if name in scores and (best is None or scores[name] > scores[best] + min_gain):
            best = name
    assert best is not None
    listed = ", ".join(f"{n} {s:.3f}" for n, s in scores.items())
    if evidence is not None:
        return ServedChoice(best, scores, f"best macro-F1 on {evidence} ({listed})")
    return ServedChoice(best, scores, f"best dev macro-F1 on {len(y)} items ({listed})")


# --------------------------------------------------------------------------- promotion, no dev set

HOLDOUT_FRACTION = 0.15
MIN_SLICE = 2
"""Fewer held-out items than this compare nothing: the live head is served."""


def _unit_hash(seed: int, item_id: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def holdout_slice(
    item_ids: Sequence[int], labels: Sequence[int] | np.ndarray, *,
    fraction: float = HOLDOUT_FRACTION, seed: int = 0,
) -> np.ndarray:
    """Which labelled items an adapter round holds out when the project has no dev set (a bool
    mask over ``item_ids``): the adapter does not train on them and is scored on them.

    Stratified by class: every class is sampled separately at ``fraction``; a class with 2+
    labels always has at least one item in the slice and at least one left to train on; a class
    with one label is never held out. Membership is a fixed function of ``(seed, item id)``: an
    item with ``u(seed, id) < fraction`` is held out for as long as there are enough labels of its
    class, so the slice grows with the labels and an item an earlier (warm-started) adapter
    trained on does not become evidence later (only the top-up of a class that just reached 2
    labels can move a trained item into the slice).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction must lie in (0, 1), got {fraction}")
    ids = [int(i) for i in item_ids]
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(ids):
        raise ConfigError(f"{len(ids)} item ids but {len(y)} labels")
    u = np.fromiter((_unit_hash(seed, i) for i in ids), dtype=np.float64, count=len(ids))
    mask = np.zeros(len(ids), dtype=bool)
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        if len(members) < 2:
            continue
        ranked = members[np.argsort(u[members], kind="stable")]
        take = int((u[members] < fraction).sum())
        take = min(max(take, 1), len(members) - 1)
        mask[ranked[:take]] = True
    return mask


@dataclass
class HeldOut:
    """An adapter version's probabilities on the slice its round held out."""

    item_ids: np.ndarray
    probs: np.ndarray


def promote_without_dev(
    cv: CrossValidation | None,
    item_ids: Sequence[int],
    labels: Sequence[int] | np.ndarray,
    held_out: HeldOut | None,
    *,
    min_gain: float = 0.0,
) -> ServedChoice:
    """The served model of a project without a dev set.

    ``cv``: the live head's cross-validation over the labelled items (``item_ids``, ``labels``
    in the same order; None when too few labels). ``held_out``: the current adapter's
    probabilities on the slice its round held out (None when there is no adapter, or its round
    had a dev set). The adapter, the live head's out-of-fold probabilities on the same items and
    their average are compared by :func:`choose_served` on the slice items that are still
    labelled (with their current labels); otherwise the live head is served on its CV score.
    The scores keep the live head's CV macro-F1 under ``"live_head"`` (its learning curve) and
    the slice scores under ``"slice_<candidate>"``.
    """
    y = np.asarray(labels, dtype=np.int64)
    if cv is None:
        reason = "no dev set and too few labels to cross-validate: serving the live head"
        return ServedChoice("live_head", {}, reason)
    cv_f1 = cv.macro_f1(y)
    scores = {"live_head": cv_f1}
    head_note = f"live head macro-F1 {cv_f1:.3f} by {cv.describe()}"
    if held_out is None:
        return ServedChoice("live_head", scores, f"no dev set: serving the live head ({head_note})")
    position = {int(i): r for r, i in enumerate(item_ids)}
    rows, slice_rows = [], []
    for s_row, item_id in enumerate(np.asarray(held_out.item_ids).tolist()):
        r = position.get(int(item_id))
        if r is not None and cv.scored[r]:
            rows.append(r)
            slice_rows.append(s_row)
    if len(rows) < MIN_SLICE:
        return ServedChoice("live_head", scores, (
            f"no dev set: serving the live head ({head_note}); {len(rows)} item(s) of the "
            "adapter's held-out slice are still labelled, too few to compare"
        ))
    adapter = np.asarray(held_out.probs, dtype=np.float64)[slice_rows]
    if adapter.shape[1] != cv.probs.shape[1]:
        return ServedChoice("live_head", scores, (
            f"no dev set: serving the live head ({head_note}); the adapter's held-out "
            "probabilities are over another label set"
        ))
    picked = choose_served(
        {"live_head": cv.probs[rows], "adapter": adapter}, y[rows], min_gain=min_gain,
        evidence=f"a held-out slice of {len(rows)} labels",
    )
    scores.update({f"slice_{name}": value for name, value in picked.scores.items()})
    return ServedChoice(
        picked.name, scores,
        f"no dev set: {picked.reason}, the live head's out of fold; {head_note}",
    )
