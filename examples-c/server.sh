#!/bin/sh
# Starts or stops the bundled session server for the example tests.
#
#   server.sh start <server-binary> <state-dir> [server options...]
#   server.sh stop  <server-binary> <state-dir>
#
# start launches the server on a free port, records its PID in <state-dir>/pid and waits until
# the server has written <state-dir>/port. stop terminates the recorded server and waits for it.
set -eu

usage() {
    echo "usage: $0 start|stop <server-binary> <state-dir> [server options...]" >&2
    exit 2
}

[ $# -ge 3 ] || usage
action=$1
server=$2
state_dir=$3
shift 3
pid_file=$state_dir/pid
port_file=$state_dir/port
log_file=$state_dir/server.log

. "$(dirname "$0")/process.sh"

stop_server() {
    [ -f "$pid_file" ] || { echo "no server recorded in $pid_file"; return 0; }
    pid=$(cat "$pid_file")
    rm -f "$pid_file" "$port_file"
    if ! is_running "$pid" || ! is_program "$pid" "$server"; then
        echo "server (PID $pid) is no longer running"
        return 0
    fi
    terminate "$pid" || return 1
    echo "server (PID $pid) stopped"
}

start_server() {
    if [ ! -x "$server" ]; then
        echo "server binary not found or not executable: $server (run cargo build --release)" >&2
        exit 1
    fi
    mkdir -p "$state_dir"
    # A server left over from an interrupted run would hold stale state.
    stop_server >/dev/null
    rm -f "$port_file"

    # Output goes to a log file: ctest waits for every holder of its pipes to exit.
    "$server" --listen 127.0.0.1:0 --port-file "$port_file" \
        --user alice:secret --allow-anonymous "$@" \
        </dev/null >"$log_file" 2>&1 &
    pid=$!
    echo "$pid" >"$pid_file"

    ticks=0
    while [ ! -s "$port_file" ]; do
        if ! is_running "$pid"; then
            echo "server exited before listening; its log ($log_file):" >&2
            cat "$log_file" >&2
            rm -f "$pid_file"
            exit 1
        fi
        if [ "$ticks" -ge "$ticks_per_10s" ]; then
            echo "server (PID $pid) wrote no port file within 10 s; its log ($log_file):" >&2
            cat "$log_file" >&2
            rm -f "$pid_file"
            terminate "$pid" || true
            exit 1
        fi
        sleep "$step"
        ticks=$((ticks + 1))
    done
    echo "server (PID $pid) listening on 127.0.0.1:$(cat "$port_file")"
}

case $action in
    start) start_server "$@" ;;
    stop) stop_server ;;
    *) usage ;;
esac
