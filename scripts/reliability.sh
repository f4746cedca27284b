#!/usr/bin/env bash
# The reliability probe: 30 clients, kill -9 of the worker and of the web process, on SQLite and on
# Postgres + Redis (see tests/reliability/suite.py). --full (default): shipped timeouts, writes
# tests/benchmarks/results/reliability.{json,md}; --short: the CI variant, about a minute a backend.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m tests.reliability "$@"
