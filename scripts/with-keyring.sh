#!/usr/bin/env bash
# Runs a command with a real Secret Service: gnome-keyring unlocked inside the current
# (private) D-Bus session. Used by scripts/test.sh under dbus-run-session.
set -euo pipefail
# --unlock reads the new keyring's password on stdin and creates the 'login' collection.
eval "$(printf 'esimctl-test-only' | gnome-keyring-daemon --unlock --components=secrets)"
export GNOME_KEYRING_CONTROL
export ESIMCTL_TEST_SECRET_SERVICE=1
exec "$@"
