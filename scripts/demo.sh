#!/bin/sh
# Starts the bundled server on a free loopback port, runs the state listener example against it
# (connect, print each state change, close), then stops the server.
set -eu
release=${1:-target/release}
tmp=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

cc -std=c99 -Wall -Wextra -Werror -Iinclude examples-c/state_listener.c -o "$tmp/state_listener" \
    -L"$release" -lsession -lpthread -Wl,-rpath,"$(cd "$release" && pwd)"

"$release/session-server" --listen 127.0.0.1:0 --port-file "$tmp/port" --user alice:secret \
    --allow-anonymous &
server_pid=$!
i=0
while [ ! -s "$tmp/port" ]; do
    i=$((i + 1))
    [ "$i" -gt 100 ] && { echo "demo: the server did not start" >&2; exit 1; }
    sleep 0.1
done
url="ws://127.0.0.1:$(cat "$tmp/port")/diffusion"
echo "demo: bundled server listening at $url"
"$tmp/state_listener" "$url"
