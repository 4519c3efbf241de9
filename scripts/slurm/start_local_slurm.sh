#!/usr/bin/env bash
# A one-node SLURM on this machine, for testing `experiments.sweep --launcher=slurm` and
# multi-host runs under srun (tests/experiments/test_sweep_slurm.py runs it).
#
#   scripts/slurm/start_local_slurm.sh [DIR]      # DIR default: $CNNJAX_SLURM_DIR or /tmp/cnnjax_slurm
#   export SLURM_CONF=DIR/slurm.conf              # then sbatch/srun/squeue/scontrol use it
#   scripts/slurm/start_local_slurm.sh --stop [DIR]
#
# Installs slurm-wlm and munge from the distribution's packages (apt-get) when they are missing
# and this runs as root; writes DIR/slurm.conf for one node (this host, `hostname -s`, with
# $CNNJAX_SLURM_CPUS CPUs, default 16, whatever the hardware: SlurmdParameters=config_overrides),
# cgroup-free (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none), no accounting; starts
# munged (its own socket and key in DIR), slurmctld and slurmd, and waits for the node to be idle.
# Everything lives in DIR (state, spool, logs, pid files); ports are picked free, so it does not
# touch a system SLURM. Running it again while its daemons are up just reports them.
# Exit codes: 0 up (prints `export SLURM_CONF=...`), 3 cannot be started here (reason on stderr).
set -euo pipefail

STOP=0
if [[ "${1:-}" == "--stop" ]]; then STOP=1; shift; fi
DIR="$(realpath -m "${1:-${CNNJAX_SLURM_DIR:-/tmp/cnnjax_slurm}}")"
CPUS="${CNNJAX_SLURM_CPUS:-16}"
NODE="$(hostname -s)"
CONF="$DIR/slurm.conf"

cannot() { echo "start_local_slurm: cannot start SLURM here: $*" >&2; exit 3; }

stop_all() {
  for name in slurmd slurmctld munged; do
    if [[ -f "$DIR/$name.pid" ]] && kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null; then
      kill "$(cat "$DIR/$name.pid")" || true
    fi
  done
}

if [[ $STOP == 1 ]]; then stop_all; echo "stopped the SLURM of $DIR"; exit 0; fi

up() { SLURM_CONF="$CONF" timeout 10 sinfo -h -n "$NODE" -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; }

if [[ -f "$CONF" ]] && up; then
  echo "export SLURM_CONF=$CONF"; exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  [[ $(id -u) == 0 ]] || cannot "slurmctld/slurmd/munged are not installed and this is not root"
  command -v apt-get >/dev/null || cannot "slurmctld/slurmd/munged are not installed and there is no apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge \
    >"${TMPDIR:-/tmp}/start_local_slurm_apt.log" 2>&1 \
    || cannot "apt-get install slurm-wlm munge failed (see ${TMPDIR:-/tmp}/start_local_slurm_apt.log)"
fi
[[ $(id -u) == 0 ]] || cannot "slurmd must run as root (it starts jobs as their users)"
getent hosts "$NODE" >/dev/null || cannot "the host name $NODE does not resolve (add it to /etc/hosts)"

stop_all
mkdir -p "$DIR"/{munge,state,spool,log}
chmod 700 "$DIR/munge"
[[ -f "$DIR/munge/munge.key" ]] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1 count=1024 2>/dev/null; chmod 400 "$DIR/munge/munge.key"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port); SLURMD_PORT=$(free_port)

cat >"$CONF" <<CONF
# Written by scripts/slurm/start_local_slurm.sh: one node, no cgroups, no accounting.
ClusterName=cnnjax
SlurmctldHost=$NODE
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=600
SchedulerParameters=sched_interval=2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
  --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
  || cannot "munged did not start (see $DIR/log/munged.log)"
export SLURM_CONF="$CONF"
slurmctld -f "$CONF" -c || cannot "slurmctld did not start (see $DIR/log/slurmctld.log)"
slurmd -f "$CONF" -N "$NODE" -c || cannot "slurmd did not start (see $DIR/log/slurmd.log)"

for _ in $(seq 60); do
  if up; then echo "export SLURM_CONF=$CONF"; exit 0; fi
  scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
  sleep 1
done
cannot "the node $NODE never became idle (logs in $DIR/log)"
