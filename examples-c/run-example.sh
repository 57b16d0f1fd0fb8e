#!/bin/sh
# Runs an example against the server started by server.sh.
#
#   run-example.sh [--scheme wss] <state-dir> <example-binary> [extra args]
#
# The example gets ws://127.0.0.1:PORT/diffusion (or wss://) as its first argument, then the
# extra args; an
# extra arg @NAME stands for the contents of <state-dir>/NAME (e.g. @proxy-port). When such a file
# is missing because its fixture skipped, the example is skipped (exit 77). When
# SESSION_EXAMPLE_LAUNCHER is set (valgrind and its options), the example runs under it.
set -eu

scheme=ws
if [ "${1:-}" = --scheme ]; then
    scheme=$2
    shift 2
fi
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

url="$scheme://127.0.0.1:$port/diffusion"
for arg in "$@"; do
    shift
    case $arg in
        @*)
            file=$state_dir/${arg#@}
            if [ ! -s "$file" ]; then
                echo "skipped: $file is missing (its fixture did not start; see its output)"
                exit 77
            fi
            set -- "$@" "$(cat "$file")"
            ;;
        *) set -- "$@" "$arg" ;;
    esac
done
# shellcheck disable=SC2086
exec ${SESSION_EXAMPLE_LAUNCHER:-} "$example" "$url" "$@"
