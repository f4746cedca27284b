"""The acquisition interface: a pool view of precomputed arrays, a pick, and a small ABC.

Strategies never call a model. The worker scores the pool once (probabilities, embeddings and
whatever optional views the chosen strategy declares in ``requires``) and any strategy then runs
on those arrays in milliseconds. That keeps strategies pure numpy, testable on synthetic arrays,
and lets a lead switch strategy without re-scoring.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from contract.errors import ConfigError

FloatArray = np.ndarray
IntArray = np.ndarray

# Names of the optional PoolView fields, used in ``QueryStrategy.requires``.
PROBS = "probs"
EMBEDDINGS = "embeddings"
LABELED_EMBEDDINGS = "labeled_embeddings"
VARIANT_PROBS = "variant_probs"
GRAD_EMBEDDINGS = "grad_embeddings"
SURPRISAL_EMBEDDINGS = "surprisal_embeddings"
CLASS_ERROR = "class_error"
_NOT_PER_ITEM = frozenset({LABELED_EMBEDDINGS, CLASS_ERROR, "label_names"})


@dataclass(frozen=True)
class Pick:
    """One chosen pool item: its index in the view, its score (higher = picked earlier) and why."""

    index: int
    score: float
    reason: str


@dataclass(frozen=True, eq=False)
class PoolView:
    """Everything a strategy may look at, as arrays over the ``n`` unlabeled pool items.

    Row ``i`` of every per-item array describes pool item ``i``; picks refer to these rows.
    Only ``probs`` or ``embeddings`` is needed by most strategies; the rest are optional views
    that specific strategies declare in ``requires``.
    """

    probs: FloatArray | None = None
    """(n, k) class probabilities from the current model."""
    embeddings: FloatArray | None = None
    """(n, d) sentence embeddings (L2-normalised by the classifier)."""
    labeled_embeddings: FloatArray | None = None
    """(m, d) embeddings of items already labelled: core-set treats them as existing centres."""
    variant_probs: tuple[FloatArray, ...] | None = None
    """Two or more (n, k) probability arrays from adapter variants, for ensemble disagreement."""
    grad_embeddings: FloatArray | None = None
    """(n, k*d) head-gradient embeddings for BADGE; derived from probs x embeddings if absent."""
    surprisal_embeddings: FloatArray | None = None
    """(n, d') MLM surprisal embeddings from the TAPT model, for the ALPS cold start."""
    class_error: FloatArray | None = None
    """(k,) dev-set error per class (1 - F1), for minority focus in the polish phase."""
    label_names: tuple[str, ...] | None = None
    """Class names, only to write readable reasons ("likely 'grain'")."""

    def __post_init__(self) -> None:
        n = None
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name in _NOT_PER_ITEM:
                continue
            arrays = value if f.name == VARIANT_PROBS else (value,)
            for array in arrays:
                _check_matrix(f.name, array)
                if n is not None and array.shape[0] != n:
                    raise ConfigError(
                        f"PoolView.{f.name} has {array.shape[0]} rows but other views have {n}; "
                        "every per-item array must describe the same pool items in the same order"
                    )
                n = array.shape[0]
        if n is None:
            raise ConfigError("PoolView needs at least one per-item array (probs or embeddings)")
        self._check_shapes()

    def _check_shapes(self) -> None:
        if self.variant_probs is not None and len(self.variant_probs) < 2:
            raise ConfigError("variant_probs needs at least two adapter variants to disagree")
        if self.labeled_embeddings is not None:
            _check_matrix(LABELED_EMBEDDINGS, self.labeled_embeddings, allow_empty=True)
            if self.embeddings is not None and (
                self.labeled_embeddings.shape[1] != self.embeddings.shape[1]
            ):
                raise ConfigError("labeled_embeddings and embeddings must have the same width")
        if self.class_error is not None:
            err = np.asarray(self.class_error)
            if err.ndim != 1 or not np.all(np.isfinite(err)) or err.min() < 0 or err.max() > 1:
                raise ConfigError("class_error must be a 1-D array of per-class errors in [0, 1]")
            if self.probs is not None and err.shape[0] != self.probs.shape[1]:
                raise ConfigError(
                    f"class_error has {err.shape[0]} classes but probs has {self.probs.shape[1]}"
                )

    def __len__(self) -> int:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name in _NOT_PER_ITEM:
                continue
            return int((value[0] if f.name == VARIANT_PROBS else value).shape[0])
        return 0  # unreachable: __post_init__ demands one per-item array

    def has(self, name: str) -> bool:
        return getattr(self, name) is not None

    def take(self, rows: IntArray) -> PoolView:
        """A view of a subset of rows (used by the subsampling wrapper)."""

        def sub(a: FloatArray | None) -> FloatArray | None:
            return None if a is None else a[rows]

        variants = None
        if self.variant_probs is not None:
            variants = tuple(v[rows] for v in self.variant_probs)
        return PoolView(
            probs=sub(self.probs),
            embeddings=sub(self.embeddings),
            labeled_embeddings=self.labeled_embeddings,
            variant_probs=variants,
            grad_embeddings=sub(self.grad_embeddings),
            surprisal_embeddings=sub(self.surprisal_embeddings),
            class_error=self.class_error,
            label_names=self.label_names,
        )

    def class_name(self, c: int) -> str:
        if self.label_names is not None and 0 <= c < len(self.label_names):
            return repr(self.label_names[c])
        return f"class {c}"


def _check_matrix(name: str, array: object, *, allow_empty: bool = False) -> None:
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise ConfigError(f"PoolView.{name} must be a 2-D numpy array")
    if array.shape[0] == 0 and not allow_empty:
        raise ConfigError(f"PoolView.{name} is empty: there is nothing left to pick from")
    if array.size and not np.isfinite(array).all():
        raise ConfigError(f"PoolView.{name} contains NaN or infinite values; re-score the pool")


class QueryStrategy(ABC):
    """Pick ``n`` items from a pool view. Subclasses implement ``_select`` in a few lines.

    Subclasses are frozen dataclasses whose fields are the strategy's parameters, validated in
    ``__post_init__``. ``needs`` names the PoolView fields the strategy reads, so the worker knows
    what to compute before scoring the pool (see ``build_pool_view``).
    """

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()
    optional: ClassVar[frozenset[str]] = frozenset()

    @property
    def requires(self) -> frozenset[str]:
        """PoolView fields this strategy (with its wrappers) cannot run without."""
        return self.needs

    @property
    def wants(self) -> frozenset[str]:
        """Required fields plus those it uses when present (worth computing if affordable)."""
        return self.requires | self.optional

    def missing_views(self, view: PoolView) -> list[str]:
        return sorted(r for r in self.requires if not view.has(r))

    def select(self, view: PoolView, n: int, *, seed: int = 0) -> list[Pick]:
        """Return up to ``n`` distinct picks, best first; the same seed gives the same picks."""
        if n < 1:
            raise ConfigError(f"query size must be at least 1, got {n}")
        missing = self.missing_views(view)
        if missing:
            raise ConfigError(
                f"strategy {self.name!r} needs {', '.join(missing)} in the pool view; "
                "score the pool with those views (see build_pool_view) or choose another strategy"
            )
        return self._select(view, min(n, len(view)), np.random.default_rng(seed))

    @abstractmethod
    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        """Pick exactly ``n <= len(view)`` distinct rows (fewer only where a wrapper says so)."""


def top_k(scores: FloatArray, k: int) -> IntArray:
    """Indices of the ``k`` highest scores, ties broken by the lower index; never a full sort.

    Deterministic tie-breaking matters: uniform-probability rows (a fresh head) would otherwise
    be picked in an order that depends on the partition algorithm.
    """
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
        threshold = scores[part].min()
        above = np.flatnonzero(scores > threshold)
        ties = np.flatnonzero(scores == threshold)[: k - above.shape[0]]
        candidates = np.concatenate([above, ties])
    else:
        candidates = np.arange(n)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order].astype(np.int64)


def ranked_picks(scores: FloatArray, n: int, describe: Callable[[int], str]) -> list[Pick]:
    """Top-``n`` picks by score with a reason per pick (only the chosen rows are described)."""
    return [Pick(int(i), float(scores[i]), describe(int(i))) for i in top_k(scores, n)]


class ScoreStrategy(QueryStrategy):
    """A strategy that scores every row independently and takes the top ``n``."""

    @abstractmethod
    def scores(self, view: PoolView) -> FloatArray:
        """(n,) informativeness, higher is better."""

    @abstractmethod
    def describe(self, view: PoolView, scores: FloatArray, index: int) -> str:
        """A short human-readable reason for picking row ``index``."""

    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        s = self.scores(view)
        return ranked_picks(s, n, lambda i: self.describe(view, s, i))
