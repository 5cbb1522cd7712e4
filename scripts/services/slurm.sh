# Starts a single-node Slurm cluster (munged, slurmctld, slurmd) for the cluster tests and
# exports SLURM_CONF and HISTODIFF_SLURM=1.
#
# Sourced by scripts/test.sh; may also be run directly (`bash scripts/services/slurm.sh`
# prints the export lines). Idempotent: installs slurm-wlm and munge from Debian only when
# absent, writes slurm.conf under target/services/slurm, starts the daemons only when they
# are not answering, and checks that a batch job runs and that `scancel --signal=USR1
# --batch` reaches the batch shell (what preemption and `--signal=B:USR1@N` rely on). A
# second call only checks that the node is up (about a second). Fails loudly.
#
# No systemd and no cgroups here: proctrack/linuxproc, task/none, daemons run as root
# (SlurmUser=root). No accounting database: job state comes from squeue/scontrol (finished
# jobs are kept MinJobAge seconds) and jobcomp/filetxt keeps a line per finished job.
# Settings: HISTODIFF_SLURM_PORT (slurmctld port, default 16817; slurmd uses +1),
# HISTODIFF_SERVICES_DIR (default <repo>/target/services).

histodiff_slurm_fail() {
  echo "slurm.sh: $*" >&2
  return 1
}

histodiff_slurm_install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { histodiff_slurm_fail "installing Slurm needs root"; return 1; }
  echo "slurm.sh: installing slurm-wlm and munge from Debian (first time only)" >&2
  apt-get update -qq || { histodiff_slurm_fail "apt-get update failed"; return 1; }
  # No init system here: keep the packages from trying to start their services.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
  local rc=$?
  [ "$made_policy" -eq 1 ] && rm -f "$policy"
  [ "$rc" -eq 0 ] || { histodiff_slurm_fail "apt-get install slurm-wlm munge failed"; return 1; }
}

# munged runs as `munge` with the distribution's key (created here when the package did
# not); slurm finds it at the default socket /run/munge/munge.socket.2.
histodiff_slurm_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged ||
    { histodiff_slurm_fail "munged did not start (see /var/log/munge/munged.log)"; return 1; }
  local i
  for i in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  histodiff_slurm_fail "munged does not answer"
}

# Writes slurm.conf for this machine; prints "changed" when its content differs.
histodiff_slurm_conf() {
  local dir="$1" port="$2" host cpus mem_mb
  host="$(hostname -s)"
  cpus="$(nproc)"
  # 90 % of RAM for jobs; each CPU's default share lets jobs without --mem run side by side.
  mem_mb="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
  mkdir -p "$dir/state" "$dir/spool"
  cat >"$dir/slurm.conf.new" <<EOF
# Written by scripts/services/slurm.sh: single-node test cluster, no systemd, no cgroups.
ClusterName=histodiff
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
ReturnToService=2
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
# Finished jobs stay visible to scontrol for an hour: the executor reads their state there.
MinJobAge=3600
KillWait=10
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=$((mem_mb / cpus))
EOF
  if cmp -s "$dir/slurm.conf.new" "$dir/slurm.conf"; then
    rm -f "$dir/slurm.conf.new"
  else
    mv "$dir/slurm.conf.new" "$dir/slurm.conf"
    echo changed
  fi
}

# Stops the daemon whose pid file is given (only that process).
histodiff_slurm_stop() {
  local pidfile="$1" pid i
  [ -s "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

histodiff_slurm_alive() {
  local pidfile="$1"
  [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

histodiff_slurm_start() {
  local dir="$1"
  if ! histodiff_slurm_alive "$dir/slurmctld.pid"; then
    slurmctld -c || { tail -n 20 "$dir/slurmctld.log" >&2; histodiff_slurm_fail "slurmctld did not start"; return 1; }
  fi
  if ! histodiff_slurm_alive "$dir/slurmd.pid"; then
    slurmd -N "$(hostname -s)" || { tail -n 20 "$dir/slurmd.log" >&2; histodiff_slurm_fail "slurmd did not start"; return 1; }
  fi
}

# Waits until the node accepts jobs (idle, mixed or allocated).
histodiff_slurm_wait_node() {
  local dir="$1" state i
  for i in $(seq 120); do
    state="$(sinfo -h -N -o %T 2>/dev/null | head -n 1)"
    case "$state" in
      idle | mixed | allocated | completing) return 0 ;;
    esac
    sleep 0.5
  done
  sinfo -N -l >&2 || true
  sinfo -R >&2 || true
  tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2
  histodiff_slurm_fail "node not idle after 60 s (state: ${state:-none})"
}

# A batch job runs, and USR1 sent to its batch shell arrives (preemption relies on it).
histodiff_slurm_smoke() {
  local dir="$1/smoke" id i state
  rm -rf "$dir" && mkdir -p "$dir"
  sbatch --wait -Q -p debug -t 1 -o "$dir/ok.out" --wrap 'echo smoke-ok' >/dev/null ||
    { histodiff_slurm_fail "smoke job failed"; return 1; }
  grep -q smoke-ok "$dir/ok.out" || { histodiff_slurm_fail "smoke job wrote no output"; return 1; }
  cat >"$dir/usr1.sh" <<'EOF'
#!/bin/bash
trap 'echo got-usr1; exit 0' USR1
echo started
for i in $(seq 600); do sleep 0.1; done
echo no-signal
exit 3
EOF
  id="$(sbatch --parsable -p debug -t 2 --signal=B:USR1@5 -o "$dir/usr1.out" "$dir/usr1.sh")" ||
    { histodiff_slurm_fail "sbatch of the signal probe failed"; return 1; }
  for i in $(seq 100); do
    grep -q started "$dir/usr1.out" 2>/dev/null && break
    sleep 0.2
  done
  scancel --batch --signal=USR1 "$id" || { histodiff_slurm_fail "scancel --signal=USR1 failed"; return 1; }
  for i in $(seq 100); do
    state="$(squeue -h -j "$id" -o %T 2>/dev/null)"
    [ -z "$state" ] && break
    sleep 0.2
  done
  grep -q got-usr1 "$dir/usr1.out" 2>/dev/null ||
    { cat "$dir/usr1.out" >&2; histodiff_slurm_fail "the batch shell did not receive USR1"; return 1; }
}

histodiff_slurm_main() {
  local root dir port changed
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  dir="${HISTODIFF_SERVICES_DIR:-$root/target/services}/slurm"
  port="${HISTODIFF_SLURM_PORT:-16817}"
  histodiff_slurm_install || return 1
  histodiff_slurm_munge || return 1
  changed="$(histodiff_slurm_conf "$dir" "$port")"
  export SLURM_CONF="$dir/slurm.conf"
  if [ -n "$changed" ]; then
    histodiff_slurm_stop "$dir/slurmd.pid"
    histodiff_slurm_stop "$dir/slurmctld.pid"
  fi
  if ! histodiff_slurm_alive "$dir/slurmctld.pid" || ! histodiff_slurm_alive "$dir/slurmd.pid"; then
    histodiff_slurm_start "$dir" || return 1
    histodiff_slurm_wait_node "$dir" || return 1
    histodiff_slurm_smoke "$dir" || return 1
  else
    histodiff_slurm_wait_node "$dir" || return 1
  fi
  export HISTODIFF_SLURM=1
  echo "slurm.sh: ready (SLURM_CONF=$SLURM_CONF)" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  histodiff_slurm_main
  echo "export SLURM_CONF=$SLURM_CONF HISTODIFF_SLURM=1"
else
  histodiff_slurm_main
fi
