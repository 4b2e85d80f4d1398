#!/usr/bin/env bash
# Conformance: drive the sandbox with the official Supabase Auth Python client
# (supabase_auth, pinned) and raw HTTP, to show that real clients parse every answer the
# sandbox gives. Called by .ci/run; runs alone with `bash .ci/conformance.sh`.
# Needs python3 with venv, and PyPI. Fails loudly when either is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
VENV="$TARGET_DIR/conformance-venv"
CLIENT="supabase_auth==2.34.1"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || { echo "conformance: cannot create a venv at $VENV (is python3-venv installed?)" >&2; exit 1; }
fi
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("supabase_auth") != "2.34.1")' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$CLIENT" \
        || { echo "conformance: pip install $CLIENT failed" >&2; exit 1; }
fi

cargo build --quiet --example sandbox

OUT="$(mktemp)"
ERR="$(mktemp)"
# Port 0: the sandbox picks a free port and prints it in its export line (no race).
"$TARGET_DIR/debug/examples/sandbox" --port 0 --fixture examples/fixtures/team.yaml >"$OUT" 2>"$ERR" &
SANDBOX_PID=$!
cleanup() {
    kill "$SANDBOX_PID" 2>/dev/null || true
    wait "$SANDBOX_PID" 2>/dev/null || true
    rm -f "$OUT" "$ERR"
}
trap cleanup EXIT

for _ in $(seq 1 200); do
    grep -q '^export MAP_SUPABASE_SERVICE_ROLE_KEY=' "$OUT" && break
    if ! kill -0 "$SANDBOX_PID" 2>/dev/null; then
        echo "conformance: the sandbox exited:" >&2
        cat "$ERR" >&2
        exit 1
    fi
    sleep 0.05
done
grep -q '^export MAP_SUPABASE_SERVICE_ROLE_KEY=' "$OUT" || { echo "conformance: the sandbox never printed its key" >&2; cat "$ERR" >&2; exit 1; }
# shellcheck disable=SC1090
source <(grep '^export ' "$OUT")

"$VENV/bin/python" .ci/conformance.py
