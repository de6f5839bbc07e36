#!/usr/bin/env bash
# Runs every examples/ test against a real auth-service binary (built beforehand with
# `cargo build -p auth-service`; this script builds nothing). Installs what is missing: a
# virtualenv with the pinned Python packages, and each Node directory's locked packages.
#
#   AUTH_SERVICE_BIN  the binary (default ${CARGO_TARGET_DIR:-$HOME/.cache/authbooks-target}/debug/auth-service)
#   extra arguments   passed to pytest (e.g. -k flask, -x)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
started=$SECONDS

export AUTH_SERVICE_BIN="${AUTH_SERVICE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/authbooks-target}/debug/auth-service}"
if [ ! -x "$AUTH_SERVICE_BIN" ]; then
  echo "examples: no auth-service binary at $AUTH_SERVICE_BIN (cargo build -p auth-service first)" >&2
  exit 1
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi

# The virtualenv is rebuilt when the pinned requirements change.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/authbooks-examples-venv"
want="$(cat "$here/requirements-test.txt" "$here/flask/requirements.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements-sha256" 2>/dev/null)" != "$want" ]; then
  echo "examples: installing the Python packages into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements-test.txt"
  echo "$want" >"$venv/.requirements-sha256"
fi

for dir in node oauth-clients/node; do
  npm ci --prefix "$here/$dir" --no-audit --no-fund --loglevel=error >/dev/null
done

status=0
(cd "$here/tests" && "$venv/bin/python" -m pytest -p no:cacheprovider -q -rfE "$@") || status=$?
if [ "$status" = 0 ]; then
  echo "examples: all tests passed in $((SECONDS - started)) s"
else
  echo "examples: FAILED (pytest exit $status) after $((SECONDS - started)) s" >&2
fi
exit "$status"
