#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on this machine (for tests and CI).
#
#   .ci/slurm-up.sh          # install (if needed), configure, start, wait for idle node
#   .ci/slurm-down.sh        # stop what this script started
#
# What it does (idempotent; a re-run is a no-op when everything is already up
# with the same configuration, otherwise it restarts cleanly):
#   * installs Debian's slurm-wlm + munge (apt-get) if slurmctld/slurmd/munged are missing
#   * creates the munge key if missing
#   * writes /etc/slurm/slurm.conf + /etc/slurm/gres.conf for ONE node = this host
#     (CPUs/RealMemory read from nproc/free, one fake GPU "gpu:1" backed by /dev/null,
#     partition "debug", no accounting, MinJobAge=600 so `squeue` can report finished jobs)
#   * starts munged, slurmctld, slurmd as daemons and records which ones it started
#     in $STATE_DIR (used by slurm-down.sh)
#   * waits until `sinfo` reports the node idle
#
# Its last line of stdout is machine readable:
#   SLURM_UP_STARTED=1   daemons were (re)started by this call
#   SLURM_UP_STARTED=0   everything was already running (nothing changed)
# Exit status is non-zero (with a loud message on stderr) if SLURM cannot run.
#
# Environment knobs:
#   SLURM_UP_TIMEOUT       seconds to wait for the node to become idle (default 90)
#   SLURM_UP_FORCE=1       overwrite an /etc/slurm/slurm.conf not written by this script
#   SLURM_UP_PARTITION     partition name (default: debug)
#   SLURM_UP_NO_INSTALL=1  never call apt-get (fail if SLURM is not installed)
set -euo pipefail

MARKER="# managed-by: normsharp .ci/slurm-up.sh"
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
GRES_CONF=$CONF_DIR/gres.conf
STATE_DIR=/run/normsharp-slurm
LOG_DIR=/var/log/slurm
SPOOL_CTLD=/var/lib/slurm/slurmctld
SPOOL_D=/var/lib/slurm/slurmd
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
MUNGE_KEY=/etc/munge/munge.key
TIMEOUT=${SLURM_UP_TIMEOUT:-90}
PARTITION=${SLURM_UP_PARTITION:-debug}

log() { echo "[slurm-up] $*"; }
die() {
    {
        echo
        echo "##################################################################"
        echo "[slurm-up] ERROR: SLURM CANNOT RUN ON THIS MACHINE"
        echo "[slurm-up] $*"
        for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
            if [ -r "$f" ]; then
                echo "---- last lines of $f ----"
                tail -n 25 "$f" || true
            fi
        done
        echo "##################################################################"
    } >&2
    exit 1
}

# --- privileges ---------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    die "needs root (or password-less sudo) to install and run slurmctld/slurmd/munged."
fi
as_root() { "${SUDO[@]}" "$@"; }

# pid from a pid file if that process is alive and has the expected name
alive_pid() { # $1 = pidfile, $2 = expected comm
    local pid comm
    [ -r "$1" ] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [ -n "$pid" ] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [ "$comm" = "$2" ] || return 1
    echo "$pid"
}

# --- install --------------------------------------------------------------------
need_install() {
    for b in slurmctld slurmd munged; do
        [ -x "/usr/sbin/$b" ] || return 0
    done
    for b in sbatch squeue sinfo scontrol munge; do
        command -v "$b" >/dev/null 2>&1 || return 0
    done
    return 1
}

if need_install; then
    [ "${SLURM_UP_NO_INSTALL:-0}" = 1 ] && die "SLURM/munge not installed and SLURM_UP_NO_INSTALL=1."
    command -v apt-get >/dev/null 2>&1 || die "SLURM/munge not installed and no apt-get here (Debian/Ubuntu only)."
    log "installing slurm-wlm + munge via apt-get (this takes a minute)"
    # Keep the package maintainer scripts from starting services themselves:
    # we start (and later stop) the daemons explicitly below.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
        created_policy=1
    fi
    set +e
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurm-wlm munge </dev/null
    rc=$?
    set -e
    [ "$created_policy" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || die "apt-get install slurm-wlm munge failed (rc=$rc)."
    need_install && die "apt-get finished but slurmctld/slurmd/munged/sbatch are still missing."
fi

# --- refuse to clobber a real cluster -------------------------------------------
if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF" && [ "${SLURM_UP_FORCE:-0}" != 1 ]; then
    die "$CONF exists and was not written by this script (a real SLURM setup?). Refusing to overwrite it; set SLURM_UP_FORCE=1 to override."
fi

# --- munge key --------------------------------------------------------------------
id munge >/dev/null 2>&1 || die "user 'munge' does not exist (munge package broken?)."
if [ ! -s "$MUNGE_KEY" ] && ! as_root test -s "$MUNGE_KEY"; then
    log "creating munge key $MUNGE_KEY"
    as_root mkdir -p /etc/munge
    if [ -x /usr/sbin/mungekey ]; then
        as_root /usr/sbin/mungekey --create --keyfile="$MUNGE_KEY" --force
    else
        as_root dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
fi
as_root chown munge:munge "$MUNGE_KEY" /etc/munge
as_root chmod 0400 "$MUNGE_KEY"
as_root chmod 0700 /etc/munge

# --- configuration ----------------------------------------------------------------
NODE=$(hostname -s)
[ -n "$NODE" ] || die "hostname -s is empty."
NCPU=$(nproc)
MEM_MB=$(free -m | awk '/^Mem:/ {print $2}')
[ -n "$MEM_MB" ] || die "could not read total memory from 'free -m'."
# leave ~5% / >=256 MB for the OS so slurmd never sees "Low RealMemory"
RESERVE=$((MEM_MB / 20))
[ "$RESERVE" -lt 256 ] && RESERVE=256
REAL_MEM=$((MEM_MB - RESERVE))
[ "$REAL_MEM" -lt 256 ] && REAL_MEM=$MEM_MB

SLURM_CONF_TEXT=$(
    cat <<EOF
$MARKER
# Single-node test cluster. Regenerated on every run of .ci/slurm-up.sh; do not edit.
ClusterName=normsharp
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
MpiDefault=none
SlurmUser=root
SlurmdUser=root
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
StateSaveLocation=$SPOOL_CTLD
SlurmdSpoolDir=$SPOOL_D
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# keep finished jobs visible to squeue for 10 min (the snakemake slurm plugin
# polls with 'squeue' when there is no accounting database)
MinJobAge=600
InactiveLimit=0
KillWait=10
SlurmctldTimeout=60
SlurmdTimeout=60
# scontrol, run by the slurm executor plugin at every snakemake start, retries for MessageTimeout seconds
# when slurmctld is down (default 10): keep that stall short once the cluster is stopped
MessageTimeout=3
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$REAL_MEM Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
GRES_CONF_TEXT=$(
    cat <<EOF
$MARKER
# one fake GPU so that --gres=gpu:1 / --gpus=1 jobs are schedulable (sets CUDA_VISIBLE_DEVICES)
Name=gpu File=/dev/null
EOF
)

conf_changed=0
write_if_changed() { # $1 = path, $2 = content
    if ! [ -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then
        printf '%s\n' "$2" | as_root tee "$1" >/dev/null
        conf_changed=1
        log "wrote $1"
    fi
}
as_root mkdir -p "$CONF_DIR" "$LOG_DIR" "$SPOOL_CTLD" "$SPOOL_D" "$STATE_DIR"
write_if_changed "$CONF" "$SLURM_CONF_TEXT"
write_if_changed "$GRES_CONF" "$GRES_CONF_TEXT"

# --- daemons ----------------------------------------------------------------------
node_state() { sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1 | tr -d ' ' || true; }
node_ok() { case "$(node_state)" in idle | mix | alloc | comp) return 0 ;; *) return 1 ;; esac }

munge_pid=$(alive_pid "$MUNGE_PID" munged || true)
ctld_pid=$(alive_pid "$CTLD_PID" slurmctld || true)
slurmd_pid=$(alive_pid "$SLURMD_PID" slurmd || true)

if [ "$conf_changed" = 0 ] && [ -n "$munge_pid" ] && [ -n "$ctld_pid" ] && [ -n "$slurmd_pid" ] && node_ok; then
    log "SLURM already up (munged=$munge_pid slurmctld=$ctld_pid slurmd=$slurmd_pid), node $NODE is $(node_state); nothing to do"
    sinfo
    echo "SLURM_UP_STARTED=0"
    exit 0
fi

# Something is missing or the config changed: refuse to touch daemons we did not start
for d in slurmctld slurmd; do
    pidvar="${d}_pid"
    [ "$d" = slurmctld ] && pidvar=ctld_pid
    pid=${!pidvar}
    if [ -n "$pid" ] && ! as_root test -e "$STATE_DIR/started.$d"; then
        die "$d (pid $pid) is running but was not started by this script; stop it first (or use it as is)."
    fi
done

# Clean (re)start of the SLURM daemons: stop the ones we started earlier.
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "$ctld_pid" ] || [ -n "$slurmd_pid" ]; then
    log "restarting slurmctld/slurmd (config changed or node not healthy)"
    SLURM_DOWN_KEEP_MUNGE=1 "$SCRIPT_DIR/slurm-down.sh" || true
    ctld_pid=""
    slurmd_pid=""
fi

if [ -z "$munge_pid" ]; then
    log "starting munged"
    as_root mkdir -p /run/munge /var/log/munge /var/lib/munge
    as_root chown munge:munge /run/munge /var/log/munge /var/lib/munge
    as_root chmod 0755 /run/munge
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID" || die "munged failed to start."
    else
        sudo -n -u munge /usr/sbin/munged --pid-file="$MUNGE_PID" || die "munged failed to start."
    fi
    as_root touch "$STATE_DIR/started.munged"
    for _ in $(seq 1 20); do
        munge_pid=$(alive_pid "$MUNGE_PID" munged || true)
        [ -n "$munge_pid" ] && break
        sleep 0.5
    done
    [ -n "$munge_pid" ] || die "munged did not come up (no live pid in $MUNGE_PID)."
fi
munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munge credential round trip (munge -n | unmunge) failed."

log "starting slurmctld"
as_root /usr/sbin/slurmctld -i </dev/null || die "slurmctld failed to start."
as_root touch "$STATE_DIR/started.slurmctld"
for _ in $(seq 1 30); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    sleep 1
done
scontrol ping 2>/dev/null | grep -q 'is UP' || die "slurmctld does not answer 'scontrol ping'."

log "starting slurmd"
slurmd_t0=$(date +%s)
as_root /usr/sbin/slurmd </dev/null || die "slurmd failed to start."
as_root touch "$STATE_DIR/started.slurmd"

log "waiting up to ${TIMEOUT}s for node $NODE to become idle"
t0=$(date +%s)
resumed=0
while :; do
    st=$(node_state)
    # the node must have registered from the slurmd we just started (the state
    # restored by slurmctld from its state file may say "idle" already)
    sst=$(scontrol show node -o "$NODE" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2 || true)
    sst_epoch=$(date -d "$sst" +%s 2>/dev/null || echo 0)
    case "$st" in
    idle | mix | alloc) [ "$sst_epoch" -ge "$slurmd_t0" ] && break ;;
    down* | drain* | drng* | fail*)
        if [ "$resumed" = 0 ]; then
            log "node state '$st', trying 'scontrol update NodeName=$NODE State=RESUME'"
            as_root scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
            resumed=1
        fi
        ;;
    esac
    if [ $(($(date +%s) - t0)) -ge "$TIMEOUT" ]; then
        sinfo -N -l >&2 || true
        scontrol show node "$NODE" >&2 || true
        die "node $NODE did not become idle within ${TIMEOUT}s (last state: '${st:-unknown}')."
    fi
    sleep 1
done
log "SLURM is up after $(($(date +%s) - t0))s:"
sinfo
echo "SLURM_UP_STARTED=1"
