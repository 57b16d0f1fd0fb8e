#!/bin/sh
# Starts or stops tinyproxy, with Basic authentication, in front of the bundled server.
#
#   proxy.sh start <state-dir> [noconnect]   (after server.sh start: CONNECT to its port only)
#   proxy.sh stop  <state-dir> [noconnect]
#
# start records the proxy's port in <state-dir>/proxy-port. With "noconnect" the proxy refuses
# every CONNECT (403) and needs no authentication, so only plain HTTP gets through; its files end
# in -noconnect (<state-dir>/proxy-noconnect-port). Without tinyproxy it fails under
# CI=true; elsewhere it says so and writes no port, and the proxy examples report a skip.
set -eu

[ $# -ge 2 ] || { echo "usage: $0 start|stop <state-dir> [noconnect]" >&2; exit 2; }
action=$1
state_dir=$2
mode=${3:-}
suffix=${mode:+-$mode}
pid_file=$state_dir/proxy$suffix-pid
port_file=$state_dir/proxy$suffix-port
log_file=$state_dir/tinyproxy$suffix.log

. "$(dirname "$0")/process.sh"

stop_proxy() {
    [ -f "$pid_file" ] || return 0
    pid=$(cat "$pid_file")
    rm -f "$pid_file" "$port_file"
    if is_running "$pid" && is_program "$pid" tinyproxy; then
        terminate "$pid" || return 1
        echo "tinyproxy (PID $pid) stopped"
    fi
}

start_proxy() {
    stop_proxy >/dev/null
    tinyproxy=$(command -v tinyproxy || true)
    if [ -z "$tinyproxy" ]; then
        if [ "${CI:-}" = true ]; then
            echo "tinyproxy is not installed; 'make test' installs it" >&2
            exit 1
        fi
        echo "tinyproxy is not installed (run 'make test' as root to install it); proxy examples will be skipped"
        exit 0
    fi
    server_port=$(cat "$state_dir/port")
    if [ "$mode" = noconnect ]; then
        access="ConnectPort 0"
    else
        access="ConnectPort $server_port
BasicAuth demo demo-proxy-pw"
    fi
    # tinyproxy cannot pick a free port itself: try a few from a range, each checked by its log.
    attempt=0
    while [ "$attempt" -lt 10 ]; do
        port=$(( ($$ + attempt * 7919) % 30000 + 20000 ))
        conf=$state_dir/tinyproxy$suffix.conf
        cat >"$conf" <<CONF
Port $port
Listen 127.0.0.1
Timeout 30
LogLevel Info
Allow 127.0.0.1
$access
CONF
        "$tinyproxy" -d -c "$conf" </dev/null >"$log_file" 2>&1 &
        pid=$!
        ticks=0
        while [ "$ticks" -lt "$ticks_per_10s" ] && is_running "$pid"; do
            if grep -q "Starting main loop" "$log_file"; then
                echo "$pid" >"$pid_file"
                echo "$port" >"$port_file"
                echo "tinyproxy (PID $pid) listening on 127.0.0.1:$port, CONNECT to $server_port"
                return 0
            fi
            sleep "$step"
            ticks=$((ticks + 1))
        done
        terminate "$pid" >/dev/null 2>&1 || true
        attempt=$((attempt + 1))
    done
    echo "tinyproxy did not start; its last log:" >&2
    cat "$log_file" >&2
    exit 1
}

case $action in
    start) start_proxy ;;
    stop) stop_proxy ;;
    *) echo "usage: $0 start|stop <state-dir> [noconnect]" >&2; exit 2 ;;
esac
