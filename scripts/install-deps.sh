#!/bin/sh
# Installs the tools the tests need when they are missing: with apt-get when run as root,
# otherwise it names what to install and fails.
set -eu

# command:package pairs (files for libraries). `install-deps.sh bench` adds the benchmarks' needs;
# `install-deps.sh docs` checks for doxygen only (`make docs`).
needed="cmake:cmake valgrind:valgrind pkg-config:pkgconf cc:gcc openssl:openssl tinyproxy:tinyproxy squid:squid microsocks:microsocks htpasswd:apache2-utils haproxy:haproxy nginx:nginx nats-server:nats-server promtool:prometheus"
[ "${1:-}" = docs ] && needed="doxygen:doxygen"

missing=""
for pair in $needed; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing="$missing $pkg"
done
# The Python package's tests make a virtual environment: Debian's python3 needs python3-venv.
if [ "${1:-}" != docs ]; then
    command -v python3 >/dev/null 2>&1 || missing="$missing python3"
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$missing python3-venv"
fi
if [ "${1:-}" = bench ]; then
    [ -f /usr/include/libwebsockets.h ] || missing="$missing libwebsockets-dev"
    command -v tinyproxy >/dev/null 2>&1 || missing="$missing tinyproxy"
    # The peers' comparison: brokers, and the C clients' libraries.
    [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing="$missing mosquitto"
    [ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || missing="$missing nats-server"
    [ -f /usr/include/MQTTAsync.h ] || missing="$missing libpaho-mqtt-dev"
    [ -f /usr/include/mosquitto.h ] || missing="$missing libmosquitto-dev"
    [ -f /usr/include/nats/nats.h ] || missing="$missing libnats-dev"
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
else
    echo "missing test tools:$missing (install them, or run 'make test' as root to install via apt-get)" >&2
    exit 1
fi
