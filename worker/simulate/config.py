"""What a simulation runs: arms (adapter x strategy, optionally on the TAPT base) and the loop.

An arm spec is ``[tapt:]ADAPTER[+ADAPTER]:STRATEGY``:

- ``ADAPTER`` is a kind with dash-separated options: ``lora-r16``, ``lora-r8-mlp`` (targets
  attention + MLP), ``lora-r8-top3`` (adapters only in the top 3 layers), ``bottleneck-b32``,
  ``ia3``, ``prompt``, ``full``. ``lora-r8+lora-r16`` trains two variants per round for
  ensemble disagreement (the first one is evaluated).
- ``STRATEGY`` is an acquisition strategy name, or ``all``: train once on every pool label (a
  ceiling, e.g. ``full:all`` is full fine-tuning on all labels).
- ``tapt:`` runs the arm on the TAPT-adapted base (TAPT runs once per data set).
- ``live:`` runs the two-speed learner the product serves (``worker.simulate.two_speed``): the
  live head on frozen embeddings, refit after every batch, picks the queue with ``STRATEGY``;
  the adapter is retrained in the background when labels grow by ``adapter_growth``; the model
  scored is the one ``choose_served`` picks on the dev set. ``live:none:STRATEGY`` has no adapter.
- ``tfidf-lr``, ``tfidf-svm``, ``embed-lr``: cheap baselines on random labels (DATA.md), added by
  default (``cheap_baselines``) next to the product's arms.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contract.adapter_config import KINDS, AdapterConfig
from contract.budget import BudgetPlan
from contract.errors import ConfigError
from worker.ml.acquisition import STRATEGIES
from worker.simulate.baselines import BASELINE_ARMS, BUDGET_FRACTIONS

ALL_LABELS = "all"
LIVE = "live"
NO_ADAPTER = "none"
SEED_STRATEGIES = ("random", "diverse", "alps")
_OPTION = re.compile(r"^(r|b|top)(\d+)$|^(mlp)$")


def parse_adapter(spec: str, num_layers: int | None = None) -> AdapterConfig:
    """``lora-r16-mlp-top3`` -> AdapterConfig(kind="lora", r=16, targets="attention+mlp", ...).

    ``topN`` needs the base's depth (``num_layers``) to become layer indices; without it the
    spec is only checked.
    """
    kind, *options = spec.split("-")
    if kind not in KINDS:
        raise ConfigError(f"adapter {spec!r}: kind must be one of {', '.join(KINDS)}")
    kwargs: dict[str, Any] = {"kind": kind}
    for option in options:
        match = _OPTION.match(option)
        if match is None:
            raise ConfigError(
                f"adapter {spec!r}: unknown option {option!r}; use rN (LoRA rank), bN (bottleneck "
                "size), topN (adapters in the top N layers) or mlp (also target the MLP)"
            )
        letter, number, mlp = match.groups()
        if mlp:
            kwargs["targets"] = "attention+mlp"
        elif letter == "r":
            kwargs["r"], kwargs["alpha"] = int(number), 2 * int(number)
        elif letter == "b":
            kwargs["bottleneck_size"] = int(number)
        else:
            top = int(number)
            if top < 1:
                raise ConfigError(f"adapter {spec!r}: topN needs N >= 1")
            if num_layers is not None:
                kwargs["layers"] = list(range(max(0, num_layers - top), num_layers))
    return AdapterConfig(**kwargs)


@dataclass(frozen=True)
class ArmSpec:
    """One arm of the experiment, parsed from its spec string."""

    spec: str
    adapters: tuple[str, ...]
    strategy: str
    tapt: bool = False
    live: bool = False
    baseline: bool = False

    @classmethod
    def parse(cls, spec: str) -> ArmSpec:
        if spec.strip() in BASELINE_ARMS:
            return cls(spec=spec.strip(), adapters=(), strategy="random", baseline=True)
        parts = spec.strip().split(":")
        live = parts[0] == LIVE
        if live:
            parts = parts[1:]
        tapt = bool(parts) and parts[0] == "tapt"
        if tapt:
            parts = parts[1:]
        if len(parts) != 2 or not all(parts):
            raise ConfigError(
                f"arm {spec!r}: expected [tapt:]ADAPTER:STRATEGY, e.g. 'tapt:lora-r8:entropy'"
            )
        adapters, strategy = tuple(parts[0].split("+")), parts[1]
        if adapters == (NO_ADAPTER,):
            if not live:
                raise ConfigError(f"arm {spec!r}: adapter 'none' only exists for live: arms")
            adapters = ()
        for adapter in adapters:
            parse_adapter(adapter)
        if live and (strategy == ALL_LABELS or len(adapters) > 1):
            raise ConfigError(
                f"arm {spec!r}: a live: arm takes one adapter (or 'none') and a query strategy"
            )
        if strategy != ALL_LABELS and strategy not in STRATEGIES:
            raise ConfigError(
                f"arm {spec!r}: strategy must be '{ALL_LABELS}' or one of {', '.join(STRATEGIES)}"
            )
        if strategy == "ensemble_disagreement" and len(adapters) < 2:
            raise ConfigError(
                f"arm {spec!r}: ensemble disagreement needs two adapter variants, "
                "e.g. 'lora-r8+lora-r16:ensemble_disagreement'"
            )
        if len(adapters) > 1 and strategy != "ensemble_disagreement":
            raise ConfigError(f"arm {spec!r}: several adapters only make sense for an ensemble")
        if strategy == "alps":
            raise ConfigError(
                f"arm {spec!r}: alps is a cold-start strategy; use --seed-strategy alps instead"
            )
        return cls(spec=spec.strip(), adapters=adapters, strategy=strategy, tapt=tapt, live=live)

    def adapter_configs(self, num_layers: int) -> tuple[AdapterConfig, ...]:
        return tuple(parse_adapter(a, num_layers) for a in self.adapters)

    @property
    def is_ceiling(self) -> bool:
        return self.strategy == ALL_LABELS

    @property
    def random_twin(self) -> str:
        """The random-sampling baseline with the same adapter and base (itself for a baseline)."""
        if self.baseline:
            return self.spec
        adapter = self.adapters[0] if self.adapters else NO_ADAPTER
        return f"{'live:' if self.live else ''}{'tapt:' if self.tapt else ''}{adapter}:random"


@dataclass
class SimulationConfig:
    """Everything one ``tapestry simulate`` run needs; validated up front."""

    dataset: str
    """'20ng', 'r8', or a CSV/JSONL path with text and label columns."""
    arms: tuple[str, ...] = ("live:tapt:lora-r8:cluster_uncertain",)
    add_baselines: bool = True
    """Add the random twin of every arm and the full fine-tuning ceiling ('full:all')."""
    cheap_baselines: tuple[str, ...] = BASELINE_ARMS
    """Cheap baseline arms on random labels, scored at the budget fractions and at every label
    count a product arm reports (so gaps compare equal numbers of labels)."""
    budget_fractions: tuple[float, ...] = BUDGET_FRACTIONS
    """Shares of the pool at which the summary compares arms (plus the seed-set point)."""
    adapter_growth: float | None = None
    """live: arms retrain the adapter when the labels reach this factor times those of its last
    training (None: 1, i.e. every batch, on a GPU; 2 on a CPU)."""
    min_train_steps: int = 30
    """live: arms run at least this many optimizer steps per adapter round (class-balanced
    sampling with replacement when the labels are few)."""
    live_features: str = "auto"
    """The live head's features: 'embed', 'hybrid' (+ TF-IDF of the pool) or 'auto' (by CV)."""
    live_self_training: bool = False
    """live: arms self-train the (embedding) live head on confident pool items unless that loses on
    the dev set, as the product's live refit does when ``TAPESTRY_LIVE_SELF_TRAINING`` is on
    (``worker.ml.self_training``; on by default in the product, off here unless asked for with
    ``--self-training``, so that simulations stay comparable with earlier ones)."""
    test_file: str | None = None
    """A CSV/JSONL file scored as the test split instead of a held-out share of ``dataset``."""
    embed_cache: Path | None = None
    """Where frozen embeddings are cached (default: ~/.cache/tapestry-sim/embeddings)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    seed_size: int = 100
    seed_strategy: str = "random"
    """How the seed set is chosen: 'random', 'diverse' (items nearest the k-means centres of the
    frozen embeddings) or 'alps' (needs TAPT; surprisal embeddings)."""
    batch_size: int = 100
    budget: int = 1000
    reserve_fraction: float = 0.15
    polish_strategy: str = "minority_focus"
    pool_size: int | None = None
    """Subsample of the train split used as the pool (None: all of it)."""
    test_size: int | None = None
    """Subsample of the official test split used for the curves (None: all of it)."""
    dev_size: int = 200
    """Labelled dev items held out of the pool (early stopping, per-class F1, stopping rules);
    counted on the labels axis. 0: no dev set; cross-validation of the live head on the
    labelled items stands in for it (per-class F1 for the polish phase, the dev-gain rule)."""
    stop_set_size: int = 500
    score_sample: int | None = None
    """Score only this many random unlabelled items per round (None: the whole pool)."""
    dedup_threshold: float | None = None
    max_length: int = 128
    epochs: int = 3
    train_batch_size: int = 16
    patience: int = 1
    warm_start: bool = True
    base_model: str = "minilm"
    tapt_steps: int = 200
    tapt_batch_size: int = 32
    device: str = "auto"
    precision: str = "auto"
    workers: int = 1
    time_limit_s: float | None = None
    """Wall-clock limit: after it, runs finish their current round and stop (curves end early)."""
    out_dir: Path | None = None
    work_dir: Path | None = None
    """Where TAPT models go (default: a folder inside out_dir's parent temp space)."""
    label_column: str = "label"
    text_column: str = "text"
    add_ceiling: bool = True
    """With ``add_baselines``: also run full fine-tuning on every pool label ('full:all')."""
    ceiling: float | None = None
    """A known macro-F1 ceiling (e.g. published); replaces 'full:all' as the 100 % mark."""
    resume: bool = False
    """Continue the run recorded in ``out_dir/runs.jsonl`` (finished (arm, seed) are skipped)."""
    estimate: bool = False
    """Time a few real steps before the runs and log an estimate per arm (the CLI's default)."""
    profile: str = "gpu"
    """'cpu' or 'gpu': which defaults the command line chose (recorded, changes nothing here)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.arms = tuple(self.arms)
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.arms:
            raise ConfigError("give at least one arm, e.g. --arm tapt:lora-r8:entropy")
        parsed = [ArmSpec.parse(a) for a in self.arms]
        if len({a.spec for a in parsed}) != len(parsed):
            raise ConfigError("each arm may appear only once")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds must be distinct and at least one (use >= 3 for any claim)")
        if self.seed_size < 1 or self.seed_size > self.budget:
            raise ConfigError(
                f"seed_size must be in [1, budget={self.budget}], got {self.seed_size}"
            )
        if self.seed_strategy not in SEED_STRATEGIES:
            raise ConfigError(f"seed_strategy must be one of {SEED_STRATEGIES}")
        BudgetPlan(self.budget, self.batch_size, self.reserve_fraction)
        if self.polish_strategy not in STRATEGIES:
            raise ConfigError(f"polish_strategy must be one of {', '.join(STRATEGIES)}")
        for name in ("pool_size", "test_size", "score_sample"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 or None (everything), got {value}")
        if self.dev_size < 0 or self.stop_set_size < 0:
            raise ConfigError("dev_size and stop_set_size must be >= 0")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ConfigError(f"time_limit_s must be > 0 seconds, got {self.time_limit_s}")
        if self.ceiling is not None and not 0 < self.ceiling <= 1:
            raise ConfigError(f"ceiling is a macro-F1 in (0, 1], got {self.ceiling}")
        if self.resume and self.out_dir is None:
            raise ConfigError("--resume needs --out (the folder whose runs.jsonl it continues)")
        if self.profile not in PROFILES:
            raise ConfigError(f"profile must be one of {', '.join(PROFILES)}")
        if self.tapt_steps < 1:
            raise ConfigError(f"tapt_steps must be >= 1, got {self.tapt_steps}")
        self.cheap_baselines = tuple(self.cheap_baselines)
        self.budget_fractions = tuple(float(f) for f in self.budget_fractions)
        unknown = sorted(set(self.cheap_baselines) - set(BASELINE_ARMS))
        if unknown:
            raise ConfigError(f"unknown cheap baselines {unknown}; choose from {BASELINE_ARMS}")
        if any(not 0 < f <= 1 for f in self.budget_fractions):
            raise ConfigError(f"budget fractions must lie in (0, 1], got {self.budget_fractions}")
        if self.adapter_growth is not None and self.adapter_growth < 1:
            raise ConfigError(f"adapter_growth must be >= 1, got {self.adapter_growth}")
        if self.min_train_steps < 0:
            raise ConfigError(f"min_train_steps must be >= 0, got {self.min_train_steps}")
        from worker.ml.live_head import FEATURES

        if self.live_features not in FEATURES:
            raise ConfigError(f"live_features must be one of {FEATURES}")

    @property
    def arm_specs(self) -> list[ArmSpec]:
        """The arms to run, baselines added (random twins first, then the ceiling)."""
        arms = [ArmSpec.parse(a) for a in self.arms]
        if self.add_baselines:
            have = {a.spec for a in arms}
            for arm in list(arms):
                twin = arm.random_twin
                if not arm.is_ceiling and twin not in have:
                    arms.append(ArmSpec.parse(twin))
                    have.add(twin)
            if self.add_ceiling and "full:all" not in have:
                arms.append(ArmSpec.parse("full:all"))
        return arms

    @property
    def needs_tapt(self) -> bool:
        return self.seed_strategy == "alps" or any(a.tapt for a in self.arm_specs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["arms"] = list(self.arms)
        data["seeds"] = list(self.seeds)
        data["cheap_baselines"] = list(self.cheap_baselines)
        data["budget_fractions"] = list(self.budget_fractions)
        for key in ("out_dir", "work_dir", "embed_cache"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data

    def summary_line(self) -> str:
        return (
            f"{self.dataset}: budget {self.budget}, seed set {self.seed_size}, batch "
            f"{self.batch_size}, reserve {self.reserve_fraction:.0%}, seeds {list(self.seeds)}, "
            f"max_length {self.max_length}, pool {self.pool_size or 'all'}"
        )


PROFILES: dict[str, dict[str, Any]] = {
    "gpu": {
        "arms": ("live:tapt:lora-r8:cluster_uncertain",),
        "seeds": (0, 1, 2),
        "tapt_steps": 200,
        "add_ceiling": True,
        "adapter_growth": 1.0,
    },
    "cpu": {
        "arms": ("live:lora-r8:cluster_uncertain",),
        "seeds": (0, 1),
        "tapt_steps": 50,
        "add_ceiling": False,
        "adapter_growth": 2.0,
    },
}
"""Command-line defaults per ``--profile``. 'cpu' (the default without a GPU) is sized for a
2-core machine and a 2,000-item pool: no full fine-tuning ceiling (give --ceiling or ask for
'full:all'), two seeds, TAPT off in the default arm (50 steps when an arm asks for it), the
adapter retrained only when the labels double; the live head answers every batch."""


def default_profile() -> str:
    """'gpu' when torch sees a CUDA device, else 'cpu'."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "gpu" if torch.cuda.is_available() else "cpu"


def default_work_dir(config: SimulationConfig) -> Path:
    if config.work_dir is not None:
        return Path(config.work_dir)
    if config.out_dir is not None:
        return Path(config.out_dir).parent / (Path(config.out_dir).name + "-work")
    return Path.cwd() / "simulation-work"
