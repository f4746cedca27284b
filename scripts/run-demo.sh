#!/usr/bin/env bash
# Command 1 of the README: set up .venv and run the demo (web + a real Celery worker, embedded
# SQLite database and broker). Ctrl-C stops both. Extra arguments go to `tapestry demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv demo
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec .venv/bin/tapestry demo "$@"
