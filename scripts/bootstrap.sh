#!/usr/bin/env bash
# Create or refresh .venv from requirements.lock.
#
# Needs: a Python 3.10 (on PATH or in pyenv) and a reachable package index.
# Writes:  .venv/ (the environment, plus the uv binary in .venv/.bootstrap/ when uv is not on
#          PATH) and uv's download cache (~/.cache/uv, or $UV_CACHE_DIR). Nothing else: the
#          Python 3.10 it finds is only used to create .venv and is never installed into.
#
# Idempotent: when requirements.lock, pyproject.toml and this script are unchanged since the last
# run that passed the checks at the end, it returns in well under a second. A .venv without
# that stamp (a run that was killed, or failed its checks) is never trusted: it is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.headwise-ready"
UV_VERSION=0.13.9
want=$(cat requirements.lock pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ -z "${1:-}" ] && [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

say() { echo "bootstrap: $*" >&2; }
die() { echo "bootstrap: error: $*" >&2; exit 1; }

# TFX 1.16 is built for Python 3.10: use python3.10 from PATH, else from pyenv. (A pyenv shim
# for a version that is not selected is on PATH but fails to run, hence the `-c ''` probe.)
find_python310() {
  if command -v python3.10 >/dev/null 2>&1 && python3.10 -c '' 2>/dev/null; then
    python3.10 -c 'import sys; print(sys.executable)'; return
  fi
  local root
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for p in "$root"/versions/3.10*/bin/python3.10; do
    [ -x "$p" ] && { echo "$p"; return; }
  done
  return 1
}
PY=$(find_python310) || die "Python 3.10 not found (looked on PATH and in pyenv). \
Install it, e.g. 'pyenv install 3.10', and run again."
if [ "${1:-}" = "--print-python" ]; then echo "$PY"; exit 0; fi  # the interpreter .venv is made from

# A .venv that was stamped for an older lock was complete: sync it in place. One without a
# stamp is whatever a killed or failed run left: start again from nothing.
if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ]; then
  say "requirements changed: updating $VENV"
else
  [ -e "$VENV" ] && say "$VENV is not marked ready (an interrupted or failed set-up): rebuilding it"
  rm -rf "$VENV"
  say "creating $VENV with $PY"
  "$PY" -m venv "$VENV" || die "'$PY -m venv $VENV' failed (on Debian: apt-get install python3.10-venv)"
fi
rm -f "$STAMP"
VPY="$PWD/$VENV/bin/python"

# uv installs the TFX tree in seconds where pip backtracks for minutes. Without uv on PATH, fetch
# it into .venv/.bootstrap with the new venv's own pip (never the found interpreter's), and always
# name the target interpreter: `python -m uv` from another interpreter would install into that one.
if command -v uv >/dev/null 2>&1; then
  UV=$(command -v uv)
else
  UV="$PWD/$VENV/.bootstrap/bin/uv"
  if ! "$UV" --version >/dev/null 2>&1; then
    say "uv is not on PATH: installing uv $UV_VERSION into $VENV/.bootstrap"
    "$VPY" -m pip install -q --disable-pip-version-check --no-cache-dir \
      --target "$VENV/.bootstrap" "uv==$UV_VERSION" \
      || die "could not install uv $UV_VERSION from the package index (is it reachable?)"
  fi
fi

say "installing requirements.lock into $VENV (uv $("$UV" --version | cut -d' ' -f2))"
"$UV" pip sync --python "$VPY" requirements.lock \
  || die "'uv pip sync requirements.lock' failed; see uv's message above"
"$UV" pip install -q --python "$VPY" --no-deps -e . \
  || die "'uv pip install -e .' failed; see uv's message above"

# Check the result before calling it ready: the packages import from .venv, and the CLI runs.
TF_CPP_MIN_LOG_LEVEL=3 PYTHONWARNINGS=ignore "$VPY" - "$PWD/$VENV" <<'EOF' \
  || die "$VENV is incomplete (see above); run 'make venv' again to rebuild it"
import importlib.metadata as md
import os
import sys

# `python -` puts the working directory first on sys.path, where setuptools' editable build
# leaves headwise.egg-info: look only where the venv's interpreter looks for an installed package.
sys.path = [p for p in sys.path if p and os.path.realpath(p) != os.path.realpath(os.getcwd())]
venv = os.path.realpath(sys.argv[1])
problems = []
if os.path.realpath(sys.prefix) != venv:
    problems.append(f"sys.prefix is {sys.prefix}, not {venv}")
for module in ("tfx", "tensorflow", "headwise"):
    try:
        dist = md.distribution(module)
        __import__(module)
    except Exception as e:  # noqa: BLE001 - report whatever went wrong
        problems.append(f"cannot import {module}: {type(e).__name__}: {e}")
        continue
    where = os.path.realpath(str(dist._path))  # the .dist-info folder: where it was installed
    if not where.startswith(venv + os.sep):
        problems.append(f"{module} is installed in {where}, not in {venv}")
for p in problems:
    print(f"bootstrap: error: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
"$VENV/bin/headwise" --help >/dev/null \
  || die "'$VENV/bin/headwise --help' failed; run 'make venv' again to rebuild $VENV"

echo "$want" > "$STAMP"
# Every module's .pyc, written once, in the background. uv writes none, and where
# PYTHONDONTWRITEBYTECODE=1 is set (many Docker images, these machines) Python never does, so
# every process (each `headwise` command, pipeline component and test that starts one) would
# compile TF and TFX from source again (importing tfx+tfma+tft: 19.7 s without them, 7.5 s
# with). Compiling all of .venv takes about 35 s on 2 cores, longer than the rest of a set-up
# with uv's cache filled, so it does not hold the set-up up: until it is done a process
# compiles what it imports as before. Each .pyc is written atomically (py_compile), so a
# compile that is cut short, or one racing another, leaves nothing half-written.
SITE="$PWD/$VENV/lib/python3.10/site-packages"
(cd / && nohup nice -n 10 "$VPY" -m compileall -q -j 0 "$SITE" </dev/null >/dev/null 2>&1 &)
say "ready ($("$VPY" --version), $VENV); compiling its bytecode in the background (about 35 s)"
