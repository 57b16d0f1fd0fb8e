#!/bin/sh
# Starts the bundled server on a free loopback port and runs two C examples against it: the state
# listener (connect, print each state change, close), then publish/subscribe (one session
# publishes, another receives). Stops the server and prints its log.
set -eu
release=${1:-target/release}
tmp=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
        server_pid=""
        # The log went to a file so that it does not interleave with the examples' output.
        echo
        echo "demo: the server's log"
        cat "$tmp/server.log" || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for example in state_listener pubsub; do
    cc -std=c99 -Wall -Wextra -Werror -Iinclude "examples-c/$example.c" -o "$tmp/$example" \
        -L"$release" -lsession -lpthread -Wl,-rpath,"$(cd "$release" && pwd)"
done

"$release/session-server" --listen 127.0.0.1:0 --port-file "$tmp/port" --user alice:secret \
    --allow-anonymous >"$tmp/server.log" 2>&1 &
server_pid=$!
i=0
while [ ! -s "$tmp/port" ]; do
    i=$((i + 1))
    [ "$i" -gt 100 ] && { echo "demo: the server did not start" >&2; exit 1; }
    sleep 0.1
done
url="ws://127.0.0.1:$(cat "$tmp/port")/diffusion"
echo "demo: bundled server listening at $url"
echo
echo "demo: state_listener: connect, print each state change, close"
"$tmp/state_listener" "$url"
echo
echo "demo: pubsub: session B publishes, session A receives"
"$tmp/pubsub" "$url"
