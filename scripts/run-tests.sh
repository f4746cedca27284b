#!/usr/bin/env bash
# Command 2 of the README (and CI, via .ci/run): set up .venv, start Postgres and Redis if they
# are down, then ruff, mypy, pytest on SQLite, and the database tests again on Postgres.
# With CI=true a missing service is an error, and tests that need one fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
started=$(date +%s)

ensure_venv dev,demo

is_ci() { case "${CI:-}" in 1|true|TRUE|True|yes) return 0;; *) return 1;; esac; }
as_root() { [ "$(id -u)" = 0 ]; }

if [ ! -x /usr/bin/chromium ] && as_root && command -v apt-get >/dev/null; then
  log "installing chromium (browser tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || log "could not install chromium"
fi

PG_HOST="${TAPESTRY_TEST_PG_HOST:-127.0.0.1}"
pg_up() { command -v pg_isready >/dev/null && pg_isready -q -h "$PG_HOST" -p 5432; }
redis_up() { command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }

if ! pg_up && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  log "starting Postgres"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! redis_up && command -v redis-server >/dev/null; then
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
fi
for _ in $(seq 60); do pg_up && redis_up && break; sleep 0.5; done

services_ok=1
if pg_up; then
  if ! psql -h "$PG_HOST" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1; then
    createdb -h "$PG_HOST" -U postgres test
  fi
  export TAPESTRY_TEST_POSTGRES_URL="${TAPESTRY_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@$PG_HOST:5432/test}"
else
  log "Postgres is not reachable on $PG_HOST:5432"; services_ok=0
fi
redis_up || { log "Redis is not reachable on 127.0.0.1:6379"; services_ok=0; }
if [ "$services_ok" = 0 ] && is_ci; then
  log "CI=true and a service is missing: failing"; exit 1
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
log "ruff"; .venv/bin/ruff check .
log "mypy"; .venv/bin/mypy

# pytest exit code 5 means "no tests collected": not a failure for a selection run.
run_pytest() { set +e; .venv/bin/python -m pytest -p no:cacheprovider "$@"; local rc=$?; set -e
  if [ "$rc" = 5 ]; then rc=0; fi; return "$rc"; }

failed=""
log "pytest (SQLite)"
run_pytest --timeout=900 "$@" || failed="$failed sqlite"
if pg_up; then
  log "pytest -m db (Postgres)"
  TAPESTRY_TEST_DATABASE_URL="$TAPESTRY_TEST_POSTGRES_URL" run_pytest --timeout=900 -m db -q "$@" \
    || failed="$failed postgres"
fi
elapsed=$(( $(date +%s) - started ))
if [ -n "$failed" ]; then
  log "FAILED:$failed (after ${elapsed}s)"; exit 1
fi
log "all checks passed in ${elapsed}s"
