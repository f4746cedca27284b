# Sourced by run-demo.sh and run-tests.sh: create/update .venv for the given extras.
#   ensure_venv demo        ensure_venv dev,demo
# torch comes first: from the local wheel when this machine has one, else the PyTorch CPU index.
# A stamp file skips the (slow) install when pyproject.toml and the extras have not changed.

TORCH_VERSION="2.13.0"
TORCH_WHEEL="${TAPESTRY_TORCH_WHEEL:-/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl}"
TORCH_INDEX="${TAPESTRY_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

log() { printf '\033[1m[tapestry]\033[0m %s\n' "$*" >&2; }

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
       && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)'; then
      echo "$candidate"; return 0
    fi
  done
  log "Python 3.11+ not found (Debian: apt-get install python3 python3-venv)"; return 1
}

ensure_venv() {
  local extras="$1" python stamp want
  if [ ! -x .venv/bin/python ]; then
    python="$(find_python)"
    if ! "$python" -m venv .venv 2>/dev/null; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing python3-venv"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        rm -rf .venv && "$python" -m venv .venv
      else
        log "cannot create a virtualenv; install python3-venv"; return 1
      fi
    fi
  fi
  stamp=".venv/.tapestry-installed"
  want="$(cat pyproject.toml | sha256sum | cut -c1-16) $extras"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/tapestry ] \
     && .venv/bin/python -c 'import torch' 2>/dev/null; then
    return 0
  fi
  if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') else 1)" 2>/dev/null; then
    if [ -f "$TORCH_WHEEL" ]; then
      log "installing torch from $TORCH_WHEEL"
      .venv/bin/pip install -q "$TORCH_WHEEL"
    else
      log "installing torch==$TORCH_VERSION from $TORCH_INDEX"
      .venv/bin/pip install -q "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX"
    fi
  fi
  log "installing tapestry[$extras]"
  .venv/bin/pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
}
