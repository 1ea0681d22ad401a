#!/usr/bin/env bash
# Issue 17's targets, measured (outside CI): takeover time after kill -9 of the leader over
# TRIALS trials (p50, max; target ≤ lease + 1 s), and submissions per second through the
# leader and through a follower (which forwards every write to the leader), each against the
# same 2-instance control plane; and one takeover right after LOADED submissions, with the time
# the new leader took to load the state from its own copy of the engine against a full rebuild
# of the same log. Prints one JSON object.
#
# Usage: scripts/bench-failover.sh [path/to/suanwang]   (PostgreSQL at $SUANWANG_TEST_PG or
#        postgres://postgres@127.0.0.1:5432/postgres; env TRIALS=20 LEASE_MS=3000 JOBS=5000
#        LOADED=20000)
set -euo pipefail
BIN=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/release/suanwang}
[ -x "$BIN" ] || { echo "no suanwang binary at $BIN (cargo build --release first, or pass its path)" >&2; exit 2; }
ADMIN=${SUANWANG_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}
TRIALS=${TRIALS:-20} LEASE_MS=${LEASE_MS:-3000} JOBS=${JOBS:-5000} LOADED=${LOADED:-20000}
NAME=suanwang_bench_failover_$$
psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $NAME" -c "CREATE DATABASE $NAME" >/dev/null
DB="${ADMIN%/*}/$NAME"
DIR=$(mktemp -d /tmp/suanwang-bench-failover.XXXXXX)
declare -A PID PORT=([a]=7301 [b]=7302)
cleanup() { for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
start() { # NAME
  RUST_LOG=warn "$BIN" serve --db "$DB" --instance "$1" --lease-ms "$LEASE_MS" --listen "127.0.0.1:${PORT[$1]}" \
    --credit-limit-fen unlimited --auth-fail-burst 0 >>"$DIR/$1.log" 2>&1 &
  PID[$1]=$!
  disown $!
}
role() { curl -s --max-time 0.5 "127.0.0.1:${PORT[$1]}/healthz" | python3 -c 'import sys,json; print(json.load(sys.stdin)["role"])' 2>/dev/null || echo down; }
until_role() { # NAME ROLE: polls every 10 ms
  local deadline=$((SECONDS + 60))
  until [ "$(role "$1")" = "$2" ]; do
    [ $SECONDS -lt $deadline ] || { echo "$1 never became $2" >&2; exit 1; }
    sleep 0.01
  done
}
TENANT=$("$BIN" token create --db "$DB" --role tenant --name acme-ai)
start a; until_role a leader
start b; until_role b follower
: >"$DIR/takeovers"
for t in $(seq 1 "$TRIALS"); do
  if [ "$(role a)" = leader ]; then L=a F=b; else L=b F=a; fi
  # the leader is busy: a job a trial keeps its lease fresh from the writes, as in service
  printf '{"name":"t%s","tenant":"acme-ai","kind":"batch","origin":"beijing","resources":{"family":"general","count":1},"work":{"run_time_s":60}}' "$t" >"$DIR/job.json"
  SUANWANG_SERVER="http://127.0.0.1:${PORT[$L]}" SUANWANG_TOKEN=$TENANT "$BIN" submit "$DIR/job.json" >/dev/null
  kill -9 "${PID[$L]}"
  T0=$(date +%s%N)
  until_role "$F" leader
  T1=$(date +%s%N)
  echo $(((T1 - T0) / 1000000)) >>"$DIR/takeovers"
  start "$L"; until_role "$L" follower
done
submit_rate() { # URL[,URL]: bench submit's accepted submissions per second through it
  SUANWANG_SERVER=$1 SUANWANG_TOKEN=$TENANT "$BIN" bench submit --jobs "$JOBS" --clients 64 --json |
    python3 -c 'import sys,json; d=json.load(sys.stdin); print(d["accepted_per_sec"])'
}
# each rate on a fresh database and a fresh pair: the jobs of one run stay live (600 s) and
# would slow the next one's scheduling
fresh_pair() {
  for n in a b; do kill -9 "${PID[$n]}" 2>/dev/null || true; done
  sleep 0.2
  psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $NAME" -c "CREATE DATABASE $NAME" >/dev/null
  TENANT=$("$BIN" token create --db "$DB" --role tenant --name acme-ai)
  start a; until_role a leader
  start b; until_role b follower
}
fresh_pair; LEADER_RATE=$(submit_rate "http://127.0.0.1:${PORT[a]}")
fresh_pair; FOLLOWER_RATE=$(submit_rate "http://127.0.0.1:${PORT[b]}")
# the follower named first: its forwarded answers name the leader, and the client moves there
fresh_pair; BOTH_RATE=$(submit_rate "http://127.0.0.1:${PORT[b]},http://127.0.0.1:${PORT[a]}")
# a takeover after a busy log: LOADED jobs (long-running, so they stay live and the snapshot
# holds them) submitted through the leader, then kill -9 it at once. The follower leads from its
# own copy of the engine; a plain `serve` started afterwards on the same database rebuilds from
# the snapshot and the log — what the takeover would have cost without the copy
# (`suanwang_replay_seconds` on each)
replay_s() { curl -s "127.0.0.1:$1/metrics" | awk '$1 == "suanwang_replay_seconds" { print $2 }'; }
fresh_pair
SUANWANG_SERVER="http://127.0.0.1:${PORT[a]}" SUANWANG_TOKEN=$TENANT "$BIN" bench submit --jobs "$LOADED" \
  --clients 64 --json >/dev/null
kill -9 "${PID[a]}"
T0=$(date +%s%N)
until_role b leader
T1=$(date +%s%N)
LOADED_TAKEOVER_MS=$(((T1 - T0) / 1000000))
LOADED_COPY_S=$(replay_s "${PORT[b]}")
LOADED_FROM=$(grep -o 'state loaded from [^)]*' "$DIR/b.log" | tail -1)
kill -9 "${PID[b]}"
RUST_LOG=warn "$BIN" serve --db "$DB" --listen 127.0.0.1:7304 --credit-limit-fen unlimited --auth-fail-burst 0 \
  >>"$DIR/replay.log" 2>&1 &
PID[replay]=$!
disown $!
until curl -sf 127.0.0.1:7304/healthz >/dev/null; do sleep 0.05; done
LOADED_FULL_S=$(replay_s 7304)
kill -9 "${PID[replay]}"
# the baseline in the same session: one plain `serve` on its own database
psql "$ADMIN" -qc "DROP DATABASE IF EXISTS ${NAME}_one" -c "CREATE DATABASE ${NAME}_one" >/dev/null
ONE="${ADMIN%/*}/${NAME}_one"
TENANT=$("$BIN" token create --db "$ONE" --role tenant --name acme-ai)
RUST_LOG=warn "$BIN" serve --db "$ONE" --listen 127.0.0.1:7303 --credit-limit-fen unlimited --auth-fail-burst 0 \
  >>"$DIR/one.log" 2>&1 &
PID[one]=$!
disown $!
until curl -sf 127.0.0.1:7303/healthz >/dev/null; do sleep 0.05; done
ONE_RATE=$(submit_rate http://127.0.0.1:7303)
python3 - "$DIR/takeovers" "$LEASE_MS" "$LEADER_RATE" "$FOLLOWER_RATE" "$BOTH_RATE" "$ONE_RATE" \
  "$LOADED" "$LOADED_TAKEOVER_MS" "$LOADED_COPY_S" "$LOADED_FULL_S" "$LOADED_FROM" <<'EOF'
import json, statistics, sys
ms = sorted(int(l) for l in open(sys.argv[1]) if l.strip())
lease = int(sys.argv[2])
print(json.dumps({
    "loaded_jobs": int(sys.argv[7]), "loaded_takeover_ms": int(sys.argv[8]),
    "loaded_state_from": sys.argv[11],
    "loaded_state_s_from_copy": float(sys.argv[9] or "nan"), "loaded_state_s_full_replay": float(sys.argv[10] or "nan"),
    "trials": len(ms), "lease_ms": lease,
    "takeover_p50_ms": statistics.median(ms), "takeover_max_ms": max(ms),
    "within_lease_plus_1s": sum(m <= lease + 1000 for m in ms),
    "submit_per_sec_via_leader": float(sys.argv[3]), "submit_per_sec_via_follower": float(sys.argv[4]),
    "submit_per_sec_two_instances": float(sys.argv[5]), "submit_per_sec_one_instance": float(sys.argv[6]),
}))
EOF
psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $NAME" -c "DROP DATABASE IF EXISTS ${NAME}_one" >/dev/null 2>&1 || true
