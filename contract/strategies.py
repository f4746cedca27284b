"""The acquisition strategy catalogue: names, what the UI says about each, the default.

The implementations live in ``worker.ml.acquisition`` (numpy); its registry builds exactly the
strategies named here (``tests/worker/ml/acquisition`` checks it), so the web can list and
validate them without importing numpy.
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    "random": "Random sampling (baseline)",
    "least_confidence": "Least confidence",
    "margin": "Smallest margin between the top two classes",
    "entropy": "Highest predictive entropy",
    "coreset": "Core-set: cover the embedding space (greedy k-center)",
    "cluster_uncertain": "Hybrid: k-means clusters, smallest-margin item per cluster (default)",
    "ensemble_disagreement": "Disagreement between two adapter variants",
    "badge": "BADGE: diverse gradient embeddings (uncertain and diverse)",
    "minority_focus": "Minority focus: classes with the worst dev F1 (polish phase)",
    "alps": "Cold start (ALPS): representative items before any label",
}
"""Every strategy the worker implements, with its one-line description."""

STRATEGIES: tuple[str, ...] = tuple(DESCRIPTIONS)
"""Every strategy name, in the order the UI lists them."""

COLD_START_STRATEGY = "alps"
"""Applied by the worker by itself before the first model exists; not a project's choice."""

DEFAULT_STRATEGY = "cluster_uncertain"
"""k-means clusters, then the smallest-margin item per cluster: the best area under the learning
curve on both R8 (imbalanced, 8 classes) and 20NG (balanced, 20 classes) in the strategy study,
where every single-criterion strategy lost on at least one of them (docs/results.md)."""

STRATEGY_ALIASES = {"hybrid": "cluster_uncertain"}
"""Projects created before the data model named the registry's default stored ``hybrid``."""

PROJECT_STRATEGY_CHOICES: tuple[tuple[str, str], ...] = (
    ("cluster_uncertain", DESCRIPTIONS["cluster_uncertain"]),
    ("entropy", DESCRIPTIONS["entropy"]),
    ("margin", DESCRIPTIONS["margin"]),
    ("least_confidence", DESCRIPTIONS["least_confidence"]),
    ("badge", DESCRIPTIONS["badge"]),
    ("coreset", DESCRIPTIONS["coreset"]),
    ("ensemble_disagreement", DESCRIPTIONS["ensemble_disagreement"]),
    ("minority_focus", "Minority focus: classes with the worst dev F1"),
    ("random", DESCRIPTIONS["random"]),
)
"""What a project may choose, in the settings page's order: every strategy but the cold start."""

PROJECT_STRATEGIES: tuple[str, ...] = tuple(name for name, _ in PROJECT_STRATEGY_CHOICES)


MULTI_LABEL_STRATEGY_CHOICES: tuple[tuple[str, str], ...] = (
    ("threshold_margin", "Margin to threshold: the label closest to its threshold (default)"),
    ("cluster_threshold_margin",
     "Hybrid: k-means clusters, the item with the label closest to its threshold per cluster"),
    ("mmc", "MMC: largest expected loss reduction, with the number of labels predicted"),
    ("binary_entropy", "Highest mean binary entropy over the labels"),
    ("random", DESCRIPTIONS["random"]),
)
"""What a multi-label project may choose (``worker.ml.multilabel.acquisition_order``); on the
Cooking Stack Exchange simulation margin to threshold was the best or within 0.8 points of the
best at every budget from 2 to 20 % of the pool, and mean binary entropy fell to or below random
from 5 % (docs/results.md)."""

MULTI_LABEL_STRATEGIES: tuple[str, ...] = tuple(name for name, _ in MULTI_LABEL_STRATEGY_CHOICES)
DEFAULT_MULTI_LABEL_STRATEGY = "threshold_margin"


def resolve_strategy(name: str) -> str:
    """The catalogue name of a stored project strategy (old names map through the aliases)."""
    return STRATEGY_ALIASES.get(name, name)
