"""Plain records of what a simulation measured; JSON round-trip for the results file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CurvePoint:
    """The model after one round, scored on the test split."""

    round: int
    labels: int
    phase: str
    accuracy: float
    macro_f1: float
    dev_macro_f1: float | None
    train_s: float
    score_s: float = 0.0
    acquire_s: float = 0.0
    strategy: str = ""
    stop_rules_fired: tuple[str, ...] = ()
    dev_labels: int = 0
    """Dev labels included in ``labels`` (a person labels them too; 0 where none are counted)."""
    served: str = ""
    """live: arms: the model scored here, as ``choose_served`` picked it on the dev set."""
    live_macro_f1: float | None = None
    """live: arms: the live head's own test macro-F1 (whatever was served)."""
    live_dev_macro_f1: float | None = None
    adapter_dev_macro_f1: float | None = None
    test_s: float = 0.0
    """Seconds spent scoring the test split (and the stop set) this round."""


@dataclass
class ArmRun:
    """One arm with one seed: its learning curve and where stopping rules fired."""

    dataset: str
    arm: str
    seed: int
    points: list[CurvePoint] = field(default_factory=list)
    stop_evidence: dict[str, str] = field(default_factory=dict)
    """First round's evidence for each rule that fired (rule -> evidence)."""
    seconds: float = 0.0
    truncated: bool = False
    """True when the time limit ended the run before its budget was spent."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["points"] = [asdict(p) for p in self.points]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArmRun:
        points = [
            CurvePoint(**{**p, "stop_rules_fired": tuple(p.get("stop_rules_fired", ()))})
            for p in data["points"]
        ]
        return cls(
            dataset=data["dataset"],
            arm=data["arm"],
            seed=int(data["seed"]),
            points=points,
            stop_evidence=dict(data.get("stop_evidence", {})),
            seconds=float(data["seconds"]),
            truncated=bool(data.get("truncated", False)),
        )


CSV_COLUMNS = (
    "dataset",
    "arm",
    "seed",
    "round",
    "labels",
    "phase",
    "strategy",
    "accuracy",
    "macro_f1",
    "dev_macro_f1",
    "train_s",
    "score_s",
    "acquire_s",
    "test_s",
    "stop_rules_fired",
    "dev_labels",
    "served",
    "live_macro_f1",
)


def csv_rows(runs: list[ArmRun]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        for p in run.points:
            row = {"dataset": run.dataset, "arm": run.arm, "seed": run.seed, **asdict(p)}
            row["stop_rules_fired"] = ";".join(p.stop_rules_fired)
            rows.append({k: row[k] for k in CSV_COLUMNS})
    return rows
