#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, from Debian's packages, for the `slurm` test tier.
#
#   bash scripts/slurm_cluster.sh start    # install slurm-wlm + munge if missing, configure, start, wait for the node
#   bash scripts/slurm_cluster.sh status   # one line: running or not (exit 0 / 1)
#   bash scripts/slurm_cluster.sh stop     # stop the daemons this script started
#
# Every command is safe to repeat. `start` exits 3 with one line saying why when this machine cannot host
# the cluster (not root, no apt-get, someone else's slurm.conf), so callers can skip the tier, and 1 when
# it should have worked but did not (a failed install, a daemon that does not come up).
set -euo pipefail

# All of the cluster's state lives in one folder, so `stop` + `rm -rf` leaves nothing behind but packages.
STATE="${XABLATE_SLURM_STATE:-/var/lib/xablate-slurm}"
# The clients (sinfo, sbatch, scontrol: also the ones submitit runs inside jobs) read this path unless
# SLURM_CONF says otherwise, so the config goes there and every environment finds the cluster.
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARK="# Written by xablate's scripts/slurm_cluster.sh: a one-node test cluster on localhost."
KEY=/etc/munge/munge.key

say() { echo "slurm_cluster: $*"; }
die() { echo "slurm_cluster: $*" >&2; exit 1; }
unavailable() { echo "slurm_cluster: $*" >&2; exit 3; }

munge_ok() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
ctld_ok() { command -v scontrol >/dev/null && timeout 5 scontrol ping 2>/dev/null | grep -q "is UP"; }
node_state() { timeout 5 sinfo -h -N -o '%T' 2>/dev/null | head -n1; }
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return 0
  command -v apt-get >/dev/null || unavailable "slurm-wlm is not installed and there is no apt-get to install it"
  mkdir -p "$STATE"
  say "installing slurm-wlm and munge with apt-get (about 20 s)"
  # Quiet and non-interactive; the log is kept because a failed install is otherwise silent.
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurm-wlm munge; } >"$STATE/apt.log" 2>&1; then
    die "apt-get install slurm-wlm munge failed (see $STATE/apt.log)"
  fi
}

start_munge() {
  munge_ok && return 0
  # The package's postinst normally creates the key; create one if it did not (or was removed).
  if [ ! -s "$KEY" ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
  fi
  # munged refuses to start unless its key, socket and state folders belong to it and are private.
  chown munge:munge /etc/munge "$KEY"
  chmod 700 /etc/munge
  chmod 400 "$KEY"
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
  # --force: a stale socket or pid file from an earlier, killed munged would otherwise stop it.
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 50); do munge_ok && return 0; sleep 0.1; done
  die "munged did not start (see /var/log/munge/munged.log)"
}

write_conf() {
  local node hw
  node="$(hostname -s)"
  # The node's real CPUs, sockets, cores and memory, as slurmd itself measures them: a node configured
  # with more than it has is drained, and jobs' --mem requests must fit RealMemory.
  local keys='^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)='
  hw="$(slurmd -C | head -n1 | tr ' ' '\n' | grep -E "$keys" | paste -sd' ')"
  [ -n "$hw" ] || die "slurmd -C did not describe this machine"
  mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$STATE/log"
  cat >"$CONF.tmp" <<EOF
$MARK
# State, logs and the job completion records are under $STATE.
ClusterName=xablate
SlurmctldHost=$node(127.0.0.1)
# The daemons run as root: a throw-away cluster needs no separate slurm user or file ownership.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job may start again only after the credential lifetime (default 120 s); 10 s keeps tests short.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups: containers and VMs often lack a delegated cgroup tree, and tests need no confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# Look at pending jobs every 2 s (defaults 60 s and 30 s): a requeued job then restarts once it is eligible.
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
ReturnToService=2
# Pre-empted and timed-out jobs are put back in the queue (submitit runs 'scontrol requeue').
JobRequeue=1
# Finished jobs leave squeue/scontrol after 60 s (default 300); their record stays in the jobcomp file.
MinJobAge=60
# SIGTERM -> SIGKILL grace at the end of a job: short, because jobs here checkpoint on the earlier signal.
KillWait=10
# No slurmdbd (so sacct has no data): each finished, requeued or cancelled job appends a line here.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.txt
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  # A changed config needs the daemons restarted; an unchanged one keeps a running cluster as it is.
  if cmp -s "$CONF.tmp" "$CONF"; then
    rm -f "$CONF.tmp"
  else
    mv "$CONF.tmp" "$CONF"
    CONF_CHANGED=1
  fi
}

stop_daemons() {
  local name pidfile
  for name in slurmd slurmctld; do
    pidfile="$STATE/$name.pid"
    if pid_alive "$pidfile"; then
      kill "$(cat "$pidfile")"
      for _ in $(seq 50); do pid_alive "$pidfile" || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  done
}

start() {
  [ "$(id -u)" -eq 0 ] || unavailable "needs root (it installs packages and runs the SLURM daemons as root)"
  if [ -e "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
    unavailable "$CONF exists and was not written by this script; refusing to overwrite a real cluster's config"
  fi
  install_packages
  start_munge
  CONF_CHANGED=0
  write_conf
  if [ "$CONF_CHANGED" -eq 1 ]; then stop_daemons; fi
  if ! pid_alive "$STATE/slurmctld.pid"; then
    # -c: a fresh controller state each start, so no jobs of an earlier session come back.
    slurmctld -c -f "$CONF"
  fi
  if ! pid_alive "$STATE/slurmd.pid"; then
    slurmd -f "$CONF"
  fi
  local state=""
  for _ in $(seq 60); do
    state="$(node_state || true)"
    case "$state" in
      idle | mixed | allocated)
        say "running: node $(hostname -s) is $state; job records in $STATE/jobcomp.txt"
        return 0
        ;;
    esac
    sleep 0.5
  done
  die "the node did not become idle within 30 s (sinfo says '${state:-nothing}'; logs in $STATE/log/)"
}

status() {
  if ctld_ok && state="$(node_state)" && [ -n "$state" ]; then
    say "running: node $(hostname -s) is $state"
  else
    say "not running"
    return 1
  fi
}

stop() {
  [ "$(id -u)" -eq 0 ] || die "needs root"
  stop_daemons
  # munged is only ours if this script's config is in place; a real cluster's munged is left alone.
  if [ -e "$CONF" ] && grep -qxF "$MARK" "$CONF" && [ -s /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  fi
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: bash scripts/slurm_cluster.sh start|stop|status" >&2; exit 2 ;;
esac
