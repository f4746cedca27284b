"""Offline active-learning simulation (``tapestry simulate``): the whole loop with an oracle.

Pure: imports the ML core only (no app/, Celery or database). ``main`` is the CLI;
``run_simulation`` the typed function it wraps.
"""

from worker.simulate.cli import main
from worker.simulate.config import ArmSpec, SimulationConfig, parse_adapter
from worker.simulate.runner import SimulationReport, run_simulation

__all__ = [
    "ArmSpec",
    "SimulationConfig",
    "SimulationReport",
    "main",
    "parse_adapter",
    "run_simulation",
]
