#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, to run `mibench run --executor slurm` against the
# real sbatch, squeue and scancel (README "Running on a cluster"; the tests marked `slurm`).
#
#   scripts/slurm_local.sh [--install] start [DIR]   munge, slurmctld and slurmd (as root); waits
#                                                   until the node is idle, prints SLURM_CONF
#   scripts/slurm_local.sh stop [DIR]                cancels this cluster's jobs, stops its daemons
#                                                   by their pid files; keeps DIR and its logs
#   scripts/slurm_local.sh status [DIR]              the daemons, the node and the queue
#
# DIR (the argument, else $MIBENCH_SLURM_DIR, else ${TMPDIR:-/tmp}/mibench-slurm) holds
# slurm.conf, the controller's state, the daemons' pid files and logs (slurmctld.log, slurmd.log).
# One node named after this host with its CPUs and memory (from `slurmd -C`), one partition
# `debug`, no accounting database (sacct does not work). Every start begins with an empty
# queue. Nothing is installed unless --install is given (apt-get install -y slurm-wlm munge).
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin"      # the daemons live there; a user's PATH may lack it

usage() { echo "usage: $0 [--install] start|stop|status [DIR]" >&2; exit 2; }

install=0
[ "${1:-}" = "--install" ] && { install=1; shift; }
cmd="${1:-}"
[ -n "$cmd" ] || usage
dir="${2:-${MIBENCH_SLURM_DIR:-${TMPDIR:-/tmp}/mibench-slurm}}"
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {    # stop_pidfile NAME FILE: TERM, then KILL after 10 s
    local name="$1" file="$2" pid
    if ! alive "$file"; then
        echo "$name: not running"
        return 0
    fi
    pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "$name: killed (pid $pid did not stop within 10 s)"
    else
        echo "$name: stopped (pid $pid)"
    fi
}

check_tools() {
    local missing=()
    for tool in munged munge unmunge slurmctld slurmd sbatch squeue sinfo scancel scontrol; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ] && [ "$install" = 1 ]; then
        echo "installing slurm-wlm and munge with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
        missing=()
        for tool in munged munge unmunge slurmctld slurmd sbatch squeue sinfo scancel scontrol; do
            command -v "$tool" >/dev/null || missing+=("$tool")
        done
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        echo "missing: ${missing[*]} (Debian: apt-get install -y slurm-wlm munge, or run $0 --install start)" >&2
        exit 1
    fi
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0                               # a munged is running already: use it
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        echo "wrote a new /etc/munge/munge.key"
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown -R munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- munged                 # as the munge user, as Debian's service runs it
    touch "$dir/munged.started"                # stop ends only a munged that this script started
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "munged started but \`munge -n | unmunge\` fails; see /var/log/munge/munged.log" >&2
    exit 1
}

write_conf() {
    local host node cpus mem
    host=$(hostname -s)
    node=$(slurmd -C | head -1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    mkdir -p "$dir/state" "$dir/spool"
    cat >"$conf" <<EOF
# Written by scripts/slurm_local.sh: one node, one partition, no accounting.
ClusterName=mibench-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# quick reactions, for tests: a cancelled job is killed 5 s after its SIGTERM; a node that
# stops answering is marked down after 20 s
KillWait=5
SlurmdTimeout=20
MessageTimeout=5
# a job that asks for no memory gets its CPUs' share, so that jobs run side by side
DefMemPerCPU=$((mem / cpus))
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_idle() {
    local state=""
    for _ in $(seq 120); do
        state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
        [ "$state" = "idle" ] && return 0
        sleep 0.5
    done
    echo "the node is not idle after 60 s (state: ${state:-unknown}); the logs:" >&2
    tail -n 15 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    exit 1
}

case "$cmd" in
start)
    check_tools
    if [ "$(id -u)" != 0 ]; then
        echo "start needs root (munged's key, and slurmd starts jobs as their users)" >&2
        exit 1
    fi
    if alive "$dir/slurmctld.pid" || alive "$dir/slurmd.pid"; then
        echo "already running in $dir; stop it first ($0 stop $dir)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    start_munge
    write_conf
    slurmctld -c                               # -c: begin with an empty queue
    slurmd
    wait_idle
    sinfo
    echo "export SLURM_CONF=$conf"
    ;;
stop)
    if alive "$dir/slurmctld.pid"; then        # no job of this cluster outlives it
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 40); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
        fi
    fi
    stop_pidfile slurmd "$dir/slurmd.pid"
    stop_pidfile slurmctld "$dir/slurmctld.pid"
    if [ -e "$dir/munged.started" ]; then
        stop_pidfile munged /run/munge/munged.pid
        rm -f "$dir/munged.started"
    fi
    if [ -d "$dir" ]; then echo "logs kept in $dir"; fi
    ;;
status)
    for d in slurmctld slurmd; do
        if alive "$dir/$d.pid"; then echo "$d: running (pid $(cat "$dir/$d.pid"))"; else echo "$d: not running"; fi
    done
    if alive "$dir/slurmctld.pid"; then
        sinfo
        squeue
        echo "export SLURM_CONF=$conf"
    fi
    ;;
*)
    usage
    ;;
esac
