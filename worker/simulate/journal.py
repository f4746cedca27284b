"""``runs.jsonl``: each finished (arm, seed) appended as one JSON line the moment it finishes, so
an interrupted simulation keeps what it measured and ``--resume`` continues it.

Every line carries a key of the settings that change results; a resume with other settings is
refused (it would mix two experiments in one summary)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from contract.errors import ConfigError
from worker.simulate.config import SimulationConfig
from worker.simulate.results import ArmRun

RUNS_FILE = "runs.jsonl"
NOT_RESULT_SETTINGS = (
    "out_dir",
    "work_dir",
    "embed_cache",
    "workers",
    "resume",
    "device",
    "profile",
    "estimate",
    "ceiling",
    "time_limit_s",
)
"""Settings that change where or how fast a run goes, not what it measures."""


def settings_key(config: SimulationConfig, dataset: str) -> str:
    data = {k: v for k, v in config.to_dict().items() if k not in NOT_RESULT_SETTINGS}
    data["dataset"] = dataset  # the content-hashed name, not the path
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Journal:
    """Append-only record of finished runs in ``out_dir/runs.jsonl``."""

    def __init__(
        self, out_dir: Path, key: str, *, resume: bool, log: Callable[[str], None]
    ) -> None:
        self.path = Path(out_dir) / RUNS_FILE
        self.key = key
        self.done: dict[tuple[str, int], ArmRun] = {}
        if resume and self.path.is_file():
            for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the interruption: run it again
                    log(f"{self.path} line {number} is incomplete; that run is repeated")
                    continue
                if entry.get("settings") != key:
                    raise ConfigError(
                        f"{self.path} was written by a run with other settings; resume with the "
                        "same data set and options, or give a new --out"
                    )
                run = ArmRun.from_dict(entry["run"])
                if not run.truncated:
                    self.done[(run.arm, run.seed)] = run
            self._rewrite()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file() and self.path.stat().st_size:  # keep, never overwrite
                kept = self.path.with_name(f"runs-before-{int(time.time())}.jsonl")
                self.path.replace(kept)
                log(f"{self.path} held an earlier run (no --resume): moved to {kept.name}")
            self.path.write_text("", encoding="utf-8")

    def _rewrite(self) -> None:
        """Keep only the complete runs (drops a half-written last line)."""
        partial = self.path.with_suffix(".partial")
        partial.write_text("".join(self._line(r) for r in self.done.values()), encoding="utf-8")
        partial.replace(self.path)

    def _line(self, run: ArmRun) -> str:
        return json.dumps({"settings": self.key, "run": run.to_dict()}) + "\n"

    def append(self, run: ArmRun) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(self._line(run))
            handle.flush()

    def finished(self, arm: str, seed: int) -> ArmRun | None:
        return self.done.get((arm, seed))
