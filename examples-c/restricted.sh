#!/bin/sh
# Starts or stops a second bundled server whose configuration file lets user "bob" (password
# "bob-pw") subscribe to and publish on "allowed/" only, for the permission tests.
#
#   restricted.sh start <server-binary> <state-dir>
#   restricted.sh stop  <server-binary> <state-dir>
#
# start writes <state-dir>/restricted.toml (with an argon2 hash made by the server's
# hash-password command) and starts the server with it through server.sh.
set -eu

if [ $# -ne 3 ]; then
    echo "usage: $0 start|stop <server-binary> <state-dir>" >&2
    exit 2
fi
action=$1
server=$2
state_dir=$3
here=$(dirname "$0")

case $action in
    start)
        mkdir -p "$state_dir"
        hash=$(printf 'bob-pw\n' | "$server" hash-password)
        cat >"$state_dir/restricted.toml" <<EOF
[[user]]
name = "bob"
password_hash = "$hash"
roles = ["allowed"]

[[role]]
name = "allowed"
subscribe = ["allowed/"]
publish = ["allowed/"]
EOF
        exec sh "$here/server.sh" start "$server" "$state_dir" --config "$state_dir/restricted.toml"
        ;;
    stop) exec sh "$here/server.sh" stop "$server" "$state_dir" ;;
    *)
        echo "usage: $0 start|stop <server-binary> <state-dir>" >&2
        exit 2
        ;;
esac
