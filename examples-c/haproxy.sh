#!/bin/sh
# Starts or stops haproxy in front of the bundled server, cutting every connection that stays
# idle for a second: sessions through it keep losing their connection and reconnecting.
#
#   haproxy.sh start <state-dir>    (after server.sh start: forwards to the port in <state-dir>/port)
#   haproxy.sh stop  <state-dir>
#
# start records haproxy's port in <state-dir>/haproxy-port. Without haproxy it fails under
# CI=true; elsewhere it says so and writes no port, and the examples that need it report a skip.
set -eu

[ $# -eq 2 ] || { echo "usage: $0 start|stop <state-dir>" >&2; exit 2; }
action=$1
state_dir=$2
pid_file=$state_dir/haproxy-pid
port_file=$state_dir/haproxy-port
log_file=$state_dir/haproxy.log
conf=$state_dir/haproxy.cfg

. "$(dirname "$0")/process.sh"

stop_haproxy() {
    [ -f "$pid_file" ] || return 0
    pid=$(cat "$pid_file")
    rm -f "$pid_file" "$port_file"
    if is_running "$pid" && is_program "$pid" haproxy; then
        terminate "$pid" || return 1
        echo "haproxy (PID $pid) stopped"
    fi
}

# True if something listens on 127.0.0.1:$1 (or on all addresses).
is_listening() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltn "sport = :$1" | grep -q .
    else
        # /proc/net/tcp: local address as hex IP:port, state 0A is LISTEN.
        hex=$(printf '%04X' "$1")
        grep -Eq "^ *[0-9]+: (0100007F|00000000):$hex [0-9A-F:]+ 0A " /proc/net/tcp
    fi
}

start_haproxy() {
    stop_haproxy >/dev/null
    haproxy=$(command -v haproxy || true)
    if [ -z "$haproxy" ]; then
        if [ "${CI:-}" = true ]; then
            echo "haproxy is not installed; 'make test' installs it" >&2
            exit 1
        fi
        echo "haproxy is not installed (run 'make test' as root to install it); examples that need it will be skipped"
        exit 0
    fi
    server_port=$(cat "$state_dir/port")
    # Try a few ports from a range. noreuseport makes a taken port fail the bind instead of
    # sharing it, so haproxy exits; otherwise it is ours once it listens.
    attempt=0
    while [ "$attempt" -lt 10 ]; do
        port=$(( ($$ + attempt * 7919 + 5000) % 30000 + 20000 ))
        attempt=$((attempt + 1))
        is_listening "$port" && continue
        # The idle timeouts are the point: after 1 s without traffic either way haproxy closes
        # both sides, which the client sees as a lost connection.
        cat >"$conf" <<CONF
global
    maxconn 100
    noreuseport

defaults
    mode http
    timeout connect 2s
    timeout client 1s
    timeout server 1s
    timeout tunnel 1s

frontend diffusion
    bind 127.0.0.1:$port
    default_backend session_server

backend session_server
    server session_server 127.0.0.1:$server_port
CONF
        "$haproxy" -db -f "$conf" </dev/null >"$log_file" 2>&1 &
        pid=$!
        ticks=0
        while [ "$ticks" -lt "$ticks_per_10s" ] && is_running "$pid"; do
            # Still running a moment after the port listens: the socket is haproxy's, not one
            # that another program took first (haproxy exits when its bind fails).
            if is_listening "$port" && sleep "$step" && is_running "$pid"; then
                echo "$pid" >"$pid_file"
                echo "$port" >"$port_file"
                echo "haproxy (PID $pid) listening on 127.0.0.1:$port, forwarding to $server_port, cutting idle connections after 1 s"
                return 0
            fi
            sleep "$step"
            ticks=$((ticks + 1))
        done
        terminate "$pid" >/dev/null 2>&1 || true
    done
    echo "haproxy did not start; its last log:" >&2
    cat "$log_file" >&2
    exit 1
}

case $action in
    start) start_haproxy ;;
    stop) stop_haproxy ;;
    *) echo "usage: $0 start|stop <state-dir>" >&2; exit 2 ;;
esac
