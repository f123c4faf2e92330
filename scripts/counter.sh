#!/usr/bin/env bash
# The counter on the simulated store: the daemon (`edge run --simulate`) in the background,
# the cashier's terminal (`edge ui`) in the foreground; the daemon stops when the UI quits.
# Usage: scripts/counter.sh [HOME] [edge ui options...]   (HOME default: demo-home/sim)
# Scan from another terminal with: echo CODE > HOME/run/scanner   (codes in HOME/samples.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
home="${1:-demo-home/sim}"
shift || true
log="${TMPDIR:-/tmp}/edge-daemon-$(id -u).log"   # not in HOME: a new demo home must start empty
started=""
if ! edge --home "$home" status >/dev/null 2>&1; then
  edge --home "$home" run --simulate >"$log" 2>&1 &
  started=$!
  trap 'kill "$started" 2>/dev/null; wait "$started" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do   # up to 10 s for the socket
    edge --home "$home" status >/dev/null 2>&1 && break
    kill -0 "$started" 2>/dev/null || { echo "daemon failed to start, see $log" >&2; exit 1; }
    sleep 0.1
  done
fi
edge --home "$home" ui "$@"
