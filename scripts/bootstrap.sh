#!/usr/bin/env bash
# Create or refresh .venv from requirements.lock. Idempotent: when the lock file and
# pyproject.toml are unchanged since the last successful run it returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.headwise-lock.sha256"
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

# TFX 1.16 is built for Python 3.10: use python3.10 from PATH, else from pyenv.
find_python310() {
  if command -v python3.10 >/dev/null 2>&1 && python3.10 -c '' 2>/dev/null; then
    command -v python3.10; return
  fi
  local root
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for p in "$root"/versions/3.10*/bin/python3.10; do
    [ -x "$p" ] && { echo "$p"; return; }
  done
  return 1
}
PY=$(find_python310) || {
  echo "bootstrap: Python 3.10 not found (looked on PATH and in pyenv). Install it, e.g. 'pyenv install 3.10'." >&2
  exit 1
}

# uv resolves and installs the TFX tree in seconds where pip backtracks for minutes.
# Without uv on PATH, install it into that Python 3.10 and run it as `python -m uv` (a pyenv
# shim would only appear after `pyenv rehash`; a system python3 may refuse pip, PEP 668).
UV_VERSION=0.13.9
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
else
  if ! "$PY" -m uv --version >/dev/null 2>&1; then
    echo "bootstrap: installing uv $UV_VERSION into $PY" >&2
    "$PY" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
  fi
  UV=("$PY" -m uv)
fi

echo "bootstrap: building $VENV with $PY from requirements.lock" >&2
rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "${UV[@]}" venv -q --seed --python "$PY" "$VENV"
VIRTUAL_ENV="$PWD/$VENV" "${UV[@]}" pip sync -q requirements.lock
VIRTUAL_ENV="$PWD/$VENV" "${UV[@]}" pip install -q --no-deps -e .
echo "$want" > "$STAMP"
echo "bootstrap: ready ($("$VENV/bin/python" --version))" >&2
