#!/bin/sh
# Installs into a temporary prefix and builds a C program against it with pkg-config, once
# against the shared library and once statically.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s install PREFIX="$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cat > "$tmp/main.c" <<'C'
#include <session.h>
#include <stdio.h>
int main(void) {
    printf("%s\n", session_state_as_string(CONNECTED_ACTIVE));
    return session_state_get(NULL) == SESSION_STATE_UNKNOWN ? 0 : 1;
}
C
cc -std=c99 -Wall -Wextra -Werror "$tmp/main.c" -o "$tmp/dynamic" $(pkg-config --cflags --libs session) \
    -Wl,-rpath,"$tmp/prefix/lib"
"$tmp/dynamic" | grep -q CONNECTED_ACTIVE
cc -std=c99 "$tmp/main.c" -o "$tmp/static" $(pkg-config --cflags session) "$tmp/prefix/lib/libsession.a" \
    $(pkg-config --static --libs-only-l session | sed 's/-lsession//')
"$tmp/static" | grep -q CONNECTED_ACTIVE
readelf -d "$tmp/prefix/lib/libsession.so" | grep -q 'SONAME.*libsession.so.0'
test -L "$tmp/prefix/lib/libsession.so.0"
echo "install check: 3 passed, 0 failed"
