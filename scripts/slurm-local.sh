#!/usr/bin/env bash
# A one-node Slurm cluster on this machine for the Slurm executor's tests (Debian's slurm-wlm
# 22.05 + munge, run as root, no systemd). Adapted from ../shared/recipes/slurm-local.sh.
# Idempotent: does nothing when a controller already answers. Exits 1 when it cannot.
set -euo pipefail
if sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "slurm-local: needs root to start slurmctld/slurmd" >&2; exit 1; fi
command -v slurmctld >/dev/null || { echo "slurm-local: slurm-wlm is not installed" >&2; exit 1; }
H=$(hostname -s)
mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
[ -f /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || munged --force
CPUS=$(nproc); MEM=$(( $(free -m | awk '/Mem/{print $2}') - 1024 ))
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$H
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
NodeName=$H CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc' && exit 0; sleep 0.5; done
echo "slurm-local: the node did not become idle" >&2
exit 1
