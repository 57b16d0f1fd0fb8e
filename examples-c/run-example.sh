#!/bin/sh
# Runs an example against the server started by server.sh.
#
#   run-example.sh <state-dir> <example-binary> [extra args]
#
# The example gets ws://127.0.0.1:PORT/diffusion as its first argument, then the extra args.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 <state-dir> <example-binary> [extra args]" >&2
    exit 2
fi
state_dir=$1
example=$2
shift 2

port_file=$state_dir/port
if [ ! -s "$port_file" ]; then
    echo "no server port in $port_file: is the server_start fixture running?" >&2
    exit 1
fi
port=$(cat "$port_file")
case $port in
    '' | *[!0-9]*)
        echo "bad port '$port' in $port_file" >&2
        exit 1
        ;;
esac

exec "$example" "ws://127.0.0.1:$port/diffusion" "$@"
