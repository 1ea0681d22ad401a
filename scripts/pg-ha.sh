#!/usr/bin/env bash
# The database's own availability (issue 17 item 4): PostgreSQL 15 as a primary and a
# streaming-replication standby managed by pg_auto_failover (Debian's
# postgresql-15-auto-failover), two control-plane instances over it, and the primary's loss:
# pg_auto_failover promotes the standby, the control plane reconnects (its multi-host --db URL
# finds the new primary), and every acknowledged job is still there exactly once.
#
# Why pg_auto_failover: it is packaged by Debian for the PostgreSQL Debian ships, runs as three
# processes on one machine or three (a monitor and two nodes) with no consensus store to run
# beside it (Patroni needs etcd, Consul or ZooKeeper; repmgr's automatic failover needs its own
# repmgrd on every node plus a witness to avoid split brain), and its monitor makes the promotion
# decision in one place, so two primaries are never accepted at once.
#
# Usage (as root, on a machine with PostgreSQL 15's binaries; not part of CI — it installs a
# package and takes about a minute): scripts/pg-ha.sh [path/to/suanwang]
# Ports 5600 (monitor), 5601, 5602 (nodes), 7201, 7202 (control plane) must be free.
set -euo pipefail

BIN=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/debug/suanwang}
[ -x "$BIN" ] || { echo "no suanwang binary at $BIN (cargo build first, or pass its path)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (the nodes run as user postgres)" >&2; exit 2; }
if ! command -v pg_autoctl >/dev/null && [ ! -x /usr/lib/postgresql/15/bin/pg_autoctl ]; then
  apt-get install -y -q postgresql-15-auto-failover >/dev/null
fi
export PATH=/usr/lib/postgresql/15/bin:$PATH
BASE=$(mktemp -d /tmp/suanwang-pgha.XXXXXX)
chown postgres "$BASE"
PIDS=()
killtree() { # PID: the process and everything under it, at once
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do killtree "$c"; done
  kill -9 "$1" 2>/dev/null || true
}
cleanup() {
  for p in "${PIDS[@]}"; do killtree "$p"; done
  # postgres processes left by a keeper that died first
  pkill -9 -f "$BASE" 2>/dev/null || true
}
trap cleanup EXIT
as_pg() { runuser -u postgres -- env PATH="$PATH" "$@"; }
step() { printf '\n== %s\n' "$*"; }
until_true() { # SECONDS COMMAND…: polls until the command succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "timed out: $*" >&2; return 1; }
    sleep 0.5
  done
}

step "monitor and two nodes (pg_auto_failover)"
as_pg pg_autoctl create monitor --pgdata "$BASE/monitor" --pgport 5600 --hostname 127.0.0.1 \
  --auth trust --no-ssl >"$BASE/monitor.log" 2>&1
as_pg pg_autoctl run --pgdata "$BASE/monitor" >>"$BASE/monitor.log" 2>&1 &
PIDS+=($!)
disown $!
MONITOR=postgres://autoctl_node@127.0.0.1:5600/pg_auto_failover
until_true 60 psql "$MONITOR" -c 'select 1'
for n in 1 2; do
  as_pg pg_autoctl create postgres --pgdata "$BASE/node$n" --pgport 560$n --hostname 127.0.0.1 \
    --monitor "$MONITOR" --auth trust --no-ssl --run >"$BASE/node$n.log" 2>&1 &
  PIDS+=($!)
  disown $!
  # the first becomes the primary before the second joins as its standby
  until_true 120 sh -c "psql '$MONITOR' -Atc \"select count(*) from pgautofailover.node where reportedstate in ('primary','secondary','single')\" | grep -qx $n"
done
psql "$MONITOR" -Atc "select nodename, nodeport, reportedstate from pgautofailover.node order by nodeid"

DB="postgres://postgres@127.0.0.1:5601,127.0.0.1:5602/postgres"
step "two control-plane instances on $DB"
OP=$("$BIN" token create --db "$DB" --role operator --name ops)
TENANT=$("$BIN" token create --db "$DB" --role tenant --name acme-ai)
for i in 1 2; do
  RUST_LOG=warn "$BIN" serve --db "$DB" --instance "cp$i" --listen "127.0.0.1:720$i" \
    --credit-limit-fen unlimited >"$BASE/cp$i.log" 2>&1 &
  PIDS+=($!)
  disown $!
done
until_true 60 sh -c "curl -sf 127.0.0.1:7201/healthz && curl -sf 127.0.0.1:7202/healthz"
curl -s 127.0.0.1:7201/healthz; echo; curl -s 127.0.0.1:7202/healthz; echo
export SUANWANG_SERVER=http://127.0.0.1:7201,http://127.0.0.1:7202 SUANWANG_TOKEN=$TENANT

submit() { # NAME: one job, acknowledged (the CLI retries with a key of its own across instances)
  printf '{"name":"%s","tenant":"acme-ai","kind":"batch","origin":"beijing","resources":{"family":"general","count":1},"work":{"run_time_s":60}}' "$1" >"$BASE/$1.json"
  "$BIN" submit "$BASE/$1.json" --json | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])'
}
: >"$BASE/acked"
for k in $(seq 1 20); do echo "before-$k $(submit "before-$k")" >>"$BASE/acked"; done
echo "20 jobs acknowledged before the failover"

step "the primary is lost (node1's PostgreSQL and its keeper killed)"
killtree "${PIDS[1]}"
pkill -9 -f "$BASE/node1" || true
START=$SECONDS
until_true 180 sh -c "psql '$MONITOR' -Atc \"select reportedstate from pgautofailover.node where nodeport = 5602\" | grep -Eqx 'primary|wait_primary|single'"
echo "pg_auto_failover promoted node2 after $((SECONDS - START)) s"
until_true 120 sh -c "curl -s 127.0.0.1:7201/healthz | grep -q '\"role\":\"leader\"' || curl -s 127.0.0.1:7202/healthz | grep -q '\"role\":\"leader\"'"
echo "the control plane leads again $((SECONDS - START)) s after the primary's loss"
for k in $(seq 1 20); do echo "after-$k $(submit "after-$k")" >>"$BASE/acked"; done
echo "20 more jobs acknowledged after the failover"

step "every acknowledged job, exactly once"
SUANWANG_TOKEN=$OP "$BIN" jobs --json >"$BASE/jobs.json"
python3 - "$BASE/acked" "$BASE/jobs.json" <<'EOF'
import json, sys
acked = [l.split() for l in open(sys.argv[1]) if l.strip()]
jobs = json.load(open(sys.argv[2]))
jobs = jobs["jobs"] if isinstance(jobs, dict) else jobs
by_id = {j["id"]: j for j in jobs}
names = [j["name"] for j in jobs]
assert len(names) == len(set(names)), "a submission applied twice"
for name, i in acked:
    assert by_id.get(int(i), {}).get("name") == name, f"acknowledged job {i} ({name}) lost"
print(f"{len(acked)} acknowledged jobs present, none twice, of {len(jobs)} jobs")
EOF
echo "pg-ha: passed (logs in $BASE)"
