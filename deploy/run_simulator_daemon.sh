#!/usr/bin/env bash
# Run `trapsim run` in the background.
#
#   run_simulator_daemon.sh start [RUN OPTIONS...]   e.g. start --volatility 1.5 --frequency 0.3
#   run_simulator_daemon.sh status
#   run_simulator_daemon.sh stop
#
# start refuses a second simulator, and returns once the run directory exists (or fails with
# trapsim's error line). stop sends SIGTERM, on which trapsim flushes everything and exits 0,
# and waits for that exit. Exit codes: 0 ok; 1 failure, or status with a stale pid file;
# 2 usage; 3 status: not running.
#
# Environment (paths relative to the current directory, where run directories go too):
#   TRAPSIM_BIN           trapsim executable (default: this checkout's .venv/bin/trapsim,
#                         else trapsim on PATH)
#   TRAPSIM_PID_FILE      default runs/trapsim.pid
#   TRAPSIM_LOG_FILE      default runs/trapsim.log (appended to)
#   TRAPSIM_START_WAIT    seconds start waits for the run to begin (default 60)
#   TRAPSIM_STOP_TIMEOUT  seconds stop waits for the clean exit before SIGKILL (default 60)
# trapsim's own settings come from the same environment (TRAPSIM_REDIS_URL, TRAPSIM_VOLATILITY,
# TRAPSIM_SETTINGS_FILE, ...): `set -a; . /etc/trapsim/trapsim.env; set +a` loads an env file.
set -eu

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -z ${TRAPSIM_BIN:-} ]]; then
    if [[ -x $here/../.venv/bin/trapsim ]]; then
        TRAPSIM_BIN=$here/../.venv/bin/trapsim
    else
        TRAPSIM_BIN=trapsim
    fi
fi
PID_FILE=${TRAPSIM_PID_FILE:-runs/trapsim.pid}
LOG_FILE=${TRAPSIM_LOG_FILE:-runs/trapsim.log}
START_WAIT=${TRAPSIM_START_WAIT:-60}
STOP_TIMEOUT=${TRAPSIM_STOP_TIMEOUT:-60}
me=$(basename "$0")

say() { echo "$me: $*"; }
die() {
    echo "$me: $*" >&2
    exit 1
}

# The pid in the pid file if that process is alive and is trapsim (not a recycled pid).
running_pid() {
    local pid
    [[ -f $PID_FILE ]] || return 1
    pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ $(ps -o args= -p "$pid") == *trapsim* ]] || return 1
    echo "$pid"
}

# trapsim's exit status as recorded in the log by the supervising shell (empty if none yet).
exit_status() {
    grep -a "trapsim (pid $1) exited with status" "$LOG_FILE" 2>/dev/null | tail -n 1 |
        sed 's/.*exited with status //'
}

start() {
    local pid offset waited=0
    if pid=$(running_pid); then
        die "trapsim is already running (pid $pid); not starting a second one"
    fi
    command -v "$TRAPSIM_BIN" >/dev/null || die "trapsim executable not found: $TRAPSIM_BIN"
    command -v setsid >/dev/null || die "setsid (util-linux) not found"
    mkdir -p "$(dirname "$PID_FILE")" "$(dirname "$LOG_FILE")"
    rm -f "$PID_FILE"
    touch "$LOG_FILE"
    offset=$(($(wc -c <"$LOG_FILE") + 1))
    # Passwords in URL options stay out of the log.
    echo "$(date -u +%FT%TZ) $me: starting: $TRAPSIM_BIN run $*" |
        sed -E 's#(://[^:/@ ]*:)[^@ ]*@#\1***@#g' >>"$LOG_FILE"
    # setsid: the run outlives this terminal. The supervising shell waits for trapsim so its
    # exit status lands in the log, then removes the pid file.
    PYTHONUNBUFFERED=1 setsid bash -c '
        bin=$1 pid_file=$2 log=$3 me=$4
        shift 4
        "$bin" run "$@" >>"$log" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$pid_file"
        status=0
        wait "$pid" || status=$?
        echo "$(date -u +%FT%TZ) $me: trapsim (pid $pid) exited with status $status" >>"$log"
        [[ $(cat "$pid_file" 2>/dev/null) != "$pid" ]] || rm -f "$pid_file"
    ' supervise "$TRAPSIM_BIN" "$PID_FILE" "$LOG_FILE" "$me" "$@" </dev/null >/dev/null 2>&1 &
    until [[ -s $PID_FILE ]]; do
        ((++waited < 100)) || die "no pid file $PID_FILE after 10s; log: $LOG_FILE"
        sleep 0.1
    done
    waited=0
    pid=$(<"$PID_FILE")
    # Started once trapsim reports its run directory: options valid, sinks connected.
    until tail -c "+$offset" "$LOG_FILE" | grep -q "^run directory "; do
        if [[ -n $(exit_status "$pid") ]]; then
            tail -c "+$offset" "$LOG_FILE" | grep -a "trapsim: error" >&2 || true
            die "trapsim failed to start (exit status $(exit_status "$pid")); log: $LOG_FILE"
        fi
        if ((waited >= START_WAIT * 10)); then
            say "trapsim (pid $pid) still starting after ${START_WAIT}s; log: $LOG_FILE"
            return 0
        fi
        sleep 0.1
        ((++waited))
    done
    say "trapsim started (pid $pid); $(tail -c "+$offset" "$LOG_FILE" | grep -a -m 1 "^run directory ")"
    say "log: $LOG_FILE"
}

status() {
    local pid last
    if pid=$(running_pid); then
        say "trapsim is running (pid $pid); log: $LOG_FILE"
        grep -a "^run directory " "$LOG_FILE" 2>/dev/null | tail -n 1 || true
        return 0
    fi
    if [[ -f $PID_FILE ]]; then
        say "trapsim is not running, but the pid file $PID_FILE remains (crashed?)"
        return 1
    fi
    last=$(grep -a "exited with status" "$LOG_FILE" 2>/dev/null | tail -n 1 || true)
    say "trapsim is not running${last:+ (the last run exited with status ${last##* })}"
    return 3
}

stop() {
    local pid code waited=0
    if ! pid=$(running_pid); then
        rm -f "$PID_FILE"
        say "trapsim is not running"
        return 0
    fi
    say "stopping trapsim (pid $pid)..."
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= STOP_TIMEOUT * 10)); then
            kill -KILL "$pid" 2>/dev/null || true
            die "trapsim (pid $pid) did not stop within ${STOP_TIMEOUT}s; killed"
        fi
        sleep 0.1
        ((++waited))
    done
    # The supervising shell records the exit status right after trapsim exits.
    for _ in $(seq 50); do
        code=$(exit_status "$pid")
        [[ -z $code ]] || break
        sleep 0.1
    done
    rm -f "$PID_FILE"
    case $code in
        0) say "trapsim stopped cleanly (exit status 0)" ;;
        "") die "trapsim (pid $pid) stopped; its exit status is not in $LOG_FILE" ;;
        *) die "trapsim (pid $pid) exited with status $code; log: $LOG_FILE" ;;
    esac
}

case ${1:-} in
    start)
        shift
        start "$@"
        ;;
    status) status ;;
    stop) stop ;;
    *)
        echo "usage: $me start [trapsim run options...] | status | stop" >&2
        exit 2
        ;;
esac
