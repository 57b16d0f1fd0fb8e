#!/bin/sh
# Installs into a temporary prefix and checks what is there: a C program built against it with
# pkg-config, shared and static; libraries without debug information; session-server; and that
# `make uninstall` removes all of it.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
passed=0
failed=0

# check NAME COMMAND...: runs COMMAND, showing its output only when it fails. The subshell is not
# a condition, so that `set -e` stops a check function at its first failing command.
check() {
    name=$1
    shift
    set +e
    (set -e; "$@") > "$tmp/log" 2>&1
    status=$?
    set -e
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAILED: $name"
        sed 's/^/    /' "$tmp/log"
    fi
}

# A directory that exists before the install, which uninstall must leave.
mkdir -p "$prefix/share"
make -s install PREFIX="$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cat > "$tmp/main.c" <<'C'
#include <session.h>
#include <stdio.h>
int main(void) {
    printf("%s\n", session_state_as_string(CONNECTED_ACTIVE));
    return session_state_get(NULL) == SESSION_STATE_UNKNOWN ? 0 : 1;
}
C

pkg_config_shared() {
    # shellcheck disable=SC2046
    cc -std=c99 -Wall -Wextra -Werror "$tmp/main.c" -o "$tmp/dynamic" $(pkg-config --cflags --libs session) \
        -Wl,-rpath,"$prefix/lib"
    "$tmp/dynamic" | grep CONNECTED_ACTIVE
}
check "pkg-config, shared" pkg_config_shared

pkg_config_static() {
    # shellcheck disable=SC2046
    cc -std=c99 "$tmp/main.c" -o "$tmp/static" $(pkg-config --cflags session) "$prefix/lib/libsession.a" \
        $(pkg-config --static --libs-only-l session | sed 's/-lsession//')
    "$tmp/static" | grep CONNECTED_ACTIVE
}
check "pkg-config, static" pkg_config_static

soname_links() {
    readelf -d "$prefix/lib/libsession.so" | grep 'SONAME.*libsession.so.0'
    test -L "$prefix/lib/libsession.so.0"
}
check "soname and links" soname_links

no_debug_info() {
    for f in "$prefix/lib/libsession.so" "$prefix/lib/libsession.a" "$prefix/bin/session-server"; do
        if readelf -S "$f" | grep '\.debug_info'; then
            echo "$f has debug information"
            return 1
        fi
    done
}
check "no debug information" no_debug_info

check "session-server --help" sh -c '"$1/bin/session-server" --help | grep Usage' - "$prefix"

# Everything install created goes; the directory that was there before stays, empty.
uninstall_leaves_nothing() {
    make -s uninstall PREFIX="$prefix"
    left=$(cd "$prefix" && find . | sort | tr '\n' ' ')
    echo "left in the prefix: $left"
    test "$left" = ". ./share "
}
check "uninstall" uninstall_leaves_nothing

echo "install check: $passed passed, $failed failed"
test "$failed" -eq 0
