#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by .ci/slurm-up.sh.
# Only daemons that slurm-up.sh started (markers in $STATE_DIR) are stopped,
# each by the pid in its pid file (checked against the process name).
# Idempotent: running it when nothing is up is a no-op.
#   SLURM_DOWN_KEEP_MUNGE=1  leave munged running (used by slurm-up.sh for restarts)
set -euo pipefail

STATE_DIR=/run/normsharp-slurm

log() { echo "[slurm-down] $*"; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    SUDO=()
fi
as_root() { "${SUDO[@]}" "$@"; }

stop_daemon() { # $1 = name (comm), $2 = pidfile
    local name=$1 pidfile=$2 pid comm
    if ! [ -e "$STATE_DIR/started.$name" ]; then
        log "$name: not started by slurm-up.sh, leaving it alone"
        return 0
    fi
    pid=""
    [ -r "$pidfile" ] && pid=$(tr -dc '0-9' <"$pidfile")
    comm=$(cat "/proc/${pid:-0}/comm" 2>/dev/null || true)
    if [ -z "$pid" ] || [ "$comm" != "$name" ]; then
        log "$name: not running"
        as_root rm -f "$STATE_DIR/started.$name"
        return 0
    fi
    log "stopping $name (pid $pid)"
    as_root kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$name" ] || break
        sleep 0.5
    done
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$name" ]; then
        log "$name (pid $pid) ignored SIGTERM for 15s, sending SIGKILL"
        as_root kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    as_root rm -f "$STATE_DIR/started.$name" "$pidfile"
}

stop_daemon slurmd /run/slurmd.pid
stop_daemon slurmctld /run/slurmctld.pid
if [ "${SLURM_DOWN_KEEP_MUNGE:-0}" != 1 ]; then
    stop_daemon munged /run/munge/munged.pid
fi
log "done"
