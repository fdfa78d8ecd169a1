#!/usr/bin/env bash
# The whole test suite: lint, types, and pytest. The Secret Service tests run against a
# real gnome-keyring in a private D-Bus session when dbus-run-session and
# gnome-keyring-daemon are installed (CI installs them; elsewhere those tests skip).
# Extra arguments go to pytest. Uses .venv (made on first run) unless PYTHON is set.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then
    python3 -m venv .venv
    PY=.venv/bin/python
fi
"$PY" -m pip install --quiet --disable-pip-version-check -r requirements-ci.txt -e .

"$PY" -m ruff check src tests benchmarks
"$PY" -m ruff format --check src tests benchmarks
"$PY" -m mypy

if command -v dbus-run-session >/dev/null && command -v gnome-keyring-daemon >/dev/null; then
    exec dbus-run-session -- bash scripts/with-keyring.sh "$PY" -m pytest "$@"
fi
if [ -n "${CI:-}" ]; then
    echo "error: CI needs dbus-run-session and gnome-keyring-daemon for the keyring tests" >&2
    exit 1
fi
echo "note: no dbus-run-session/gnome-keyring-daemon here; the Secret Service tests will skip" >&2
exec "$PY" -m pytest "$@"
