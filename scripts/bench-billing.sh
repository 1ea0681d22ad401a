#!/usr/bin/env bash
# Issue 13's last target, measured (outside CI): what billing adds to `bench submit`'s p99.
# The same binary is started RUNS times each way, alternating, on a fresh SQLite store: with
# billing (every admitted job holds its price, every ended job is settled: hold, post,
# provider and platform shares in the same group commit) and with `--no-billing` (metered,
# nobody charged) — the baseline, run in the same session on the same machine. Jobs end
# during the run (`--time-scale`, default 0.001) so settlements are in the measurement.
# Prints one JSON object: each run's p99, rate, server CPU seconds and MB written, and the ratios of the
# medians (with ÷ without).
#
# Usage: scripts/bench-billing.sh [path/to/suanwang]   (env RUNS=3 JOBS=20000 CLIENTS=64
#        TIME_SCALE=0.001 PORT=7311 SERVER_LOG=warn — the server's SUANWANG_LOG; its log is kept)
set -euo pipefail
BIN=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/release/suanwang}
[ -x "$BIN" ] || { echo "no suanwang binary at $BIN (cargo build --release first, or pass its path)" >&2; exit 2; }
RUNS=${RUNS:-3} JOBS=${JOBS:-20000} CLIENTS=${CLIENTS:-64} TIME_SCALE=${TIME_SCALE:-0.001} PORT=${PORT:-7311}
DIR=$(mktemp -d /tmp/suanwang-bench-billing.XXXXXX)
PID=
cleanup() { [ -z "$PID" ] || kill -9 "$PID" 2>/dev/null || true; }
trap cleanup EXIT
run() { # N MODE(on|off): one fresh server, one bench submit; appends "MODE p99_ms rate" to results
  local data="$DIR/$1-$2" flag=()
  [ "$2" = off ] && flag=(--no-billing)
  local tenant
  tenant=$("$BIN" token create --data "$data" --role tenant --name acme-ai)
  SUANWANG_LOG=${SERVER_LOG:-warn} "$BIN" up --data "$data" --no-local-agent --listen "127.0.0.1:$PORT" --time-scale "$TIME_SCALE" \
    --credit-limit-fen unlimited --auth-fail-burst 0 "${flag[@]}" >>"$DIR/$1-$2.log" 2>&1 &
  PID=$!
  local deadline=$((SECONDS + 60))
  until curl -sf "127.0.0.1:$PORT/healthz" >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "the server did not start; see $DIR/$1-$2.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "run $1, billing $2 …" >&2
  SUANWANG_SERVER="http://127.0.0.1:$PORT" SUANWANG_TOKEN=$tenant "$BIN" bench submit --jobs "$JOBS" \
    --clients "$CLIENTS" --json |
    python3 -c 'import sys,json; d=json.load(sys.stdin); print(sys.argv[1], d["p99_ms"], d["accepted_per_sec"], d["errors"], end=" ")' "$2" \
      >>"$DIR/results"
  # the server's CPU time (user + system, clock ticks) over its whole life: start, the run, idle
  # until now — the steadier figure: p99 on a shared 2-core machine varies ±30 % run to run
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%s ", ($14 + $15) / hz }' "/proc/$PID/stat" >>"$DIR/results"
  # and the bytes it wrote to storage (the database, its WAL and checkpoints): where billing's
  # cost goes on SQLite (ARCHITECTURE.md → store)
  awk '$1 == "write_bytes:" { print $2 }' "/proc/$PID/io" >>"$DIR/results"
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
}
for n in $(seq 1 "$RUNS"); do
  # alternate which goes first, so neither always meets a cooler machine
  if [ $((n % 2)) = 1 ]; then run "$n" on; run "$n" off; else run "$n" off; run "$n" on; fi
done
python3 - "$DIR/results" "$JOBS" "$CLIENTS" "$TIME_SCALE" <<'EOF'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
runs = {m: [(float(p), float(r), int(e), float(c), int(w)) for mm, p, r, e, c, w in rows if mm == m]
        for m in ("on", "off")}
med = {m: tuple(statistics.median(x[i] for x in v) for i in (0, 1, 3, 4)) for m, v in runs.items()}
print(json.dumps({
    "jobs": int(sys.argv[2]), "clients": int(sys.argv[3]), "time_scale": float(sys.argv[4]),
    "billing_p99_ms": [x[0] for x in runs["on"]], "no_billing_p99_ms": [x[0] for x in runs["off"]],
    "billing_per_sec": [x[1] for x in runs["on"]], "no_billing_per_sec": [x[1] for x in runs["off"]],
    "billing_server_cpu_s": [x[3] for x in runs["on"]], "no_billing_server_cpu_s": [x[3] for x in runs["off"]],
    "billing_server_write_mb": [round(x[4] / 1e6, 1) for x in runs["on"]],
    "no_billing_server_write_mb": [round(x[4] / 1e6, 1) for x in runs["off"]],
    "errors": sum(x[2] for v in runs.values() for x in v),
    "p99_ratio": round(med["on"][0] / med["off"][0], 3),
    "rate_ratio": round(med["on"][1] / med["off"][1], 3),
    "server_cpu_ratio": round(med["on"][2] / med["off"][2], 3),
    "server_write_ratio": round(med["on"][3] / med["off"][3], 3),
}))
EOF
