#!/usr/bin/env bash
# The peer figure for `suanwang bench submit` (issue 11): how many jobs Slurm's sbatch accepts per
# second from 64 parallel clients on this machine, on the one-node cluster of
# scripts/slurm-local.sh. Prints JSON. Usage: scripts/bench-sbatch.sh [JOBS] [CLIENTS]
set -euo pipefail
jobs=${1:-2000}
clients=${2:-64}
command -v sbatch >/dev/null || { echo "sbatch not found: install slurm-wlm and run scripts/slurm-local.sh" >&2; exit 1; }
scontrol ping >/dev/null || { echo "slurmctld does not answer: run scripts/slurm-local.sh" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"; scancel --name=suanwang-bench-sbatch >/dev/null 2>&1 || true' EXIT
start=$(date +%s.%N)
seq "$jobs" | xargs -P "$clients" -I{} sbatch --parsable --hold --job-name=suanwang-bench-sbatch \
  --output=/dev/null --wrap true > "$out/ids" 2> "$out/errors" || true
end=$(date +%s.%N)
accepted=$(grep -c '^[0-9]' "$out/ids" || true)
errors=$((jobs - accepted))
python3 - "$accepted" "$errors" "$start" "$end" "$clients" <<'PY'
import json, sys
accepted, errors, start, end, clients = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
wall = end - start
print(json.dumps({"peer": "sbatch", "clients": clients, "accepted": accepted, "errors": errors,
                  "wall_s": round(wall, 3), "accepted_per_sec": round(accepted / wall) if wall > 0 else None}))
PY
