#!/usr/bin/env bash
# Runs a command with a real Secret Service: gnome-keyring unlocked inside the current
# (private) D-Bus session. Used by scripts/test.sh under dbus-run-session.
#
# The daemon and the command get a throwaway HOME and XDG directories: the test keyring
# (and its password) lives there and goes with it, and the developer's own login keyring
# under the real HOME is never opened, unlocked or created.
set -euo pipefail
sandbox=$(mktemp -d "${TMPDIR:-/tmp}/esimctl-keyring.XXXXXX")
trap 'rm -rf "$sandbox"' EXIT
mkdir -p -m 700 "$sandbox/home" "$sandbox/runtime" "$sandbox/home/.local/share" \
    "$sandbox/home/.config" "$sandbox/home/.cache"
export ESIMCTL_TEST_REAL_HOME="${HOME:-}"
export HOME="$sandbox/home"
export XDG_DATA_HOME="$HOME/.local/share" XDG_CONFIG_HOME="$HOME/.config"
export XDG_CACHE_HOME="$HOME/.cache" XDG_RUNTIME_DIR="$sandbox/runtime"
# --unlock reads the new keyring's password on stdin and creates the 'login' collection.
eval "$(printf 'esimctl-test-only' | gnome-keyring-daemon --unlock --components=secrets)"
export GNOME_KEYRING_CONTROL
export ESIMCTL_TEST_SECRET_SERVICE=1
"$@"
