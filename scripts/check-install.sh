#!/bin/sh
# Installs into a temporary prefix and checks what is there: a C program built against it with
# pkg-config and with the CMake package (find_package(libsession), shared and static, also from a
# DESTDIR-staged tree); that the package refuses incompatible versions; examples-c built against
# the package, connect_sync run against the installed session-server; libraries without debug
# information; and that `make uninstall` removes all of it.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
series=${version%.*}
major=${version%%.*}
minor=${series#*.}
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

# A CMake project of its own that links main.c with each of the package's targets.
mkdir -p "$tmp/app"
cp "$tmp/main.c" "$tmp/app/main.c"
cat > "$tmp/app/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(app LANGUAGES C)
find_package(libsession ${LIBSESSION_REQUEST} CONFIG REQUIRED)
add_executable(app_shared main.c)
target_link_libraries(app_shared PRIVATE libsession::libsession)
add_executable(app_static main.c)
target_link_libraries(app_static PRIVATE libsession::static)
CMAKE

# cmake_app BUILD-DIR PREFIX TARGET: configures the project against the package under PREFIX,
# builds TARGET and runs it.
cmake_app() {
    cmake -S "$tmp/app" -B "$1" -DCMAKE_PREFIX_PATH="$2" -DLIBSESSION_REQUEST="$series"
    grep "^libsession_DIR:PATH=$2/lib/cmake/libsession\$" "$1/CMakeCache.txt"
    cmake --build "$1" --target "$3"
    "$1/$3" | grep CONNECTED_ACTIVE
}

cmake_shared() {
    cmake_app "$tmp/app-build" "$prefix" app_shared
    readelf -d "$tmp/app-build/app_shared" | grep 'NEEDED.*libsession.so.0'
}
check "CMake find_package(libsession $series), libsession::libsession" cmake_shared

cmake_static() {
    cmake_app "$tmp/app-build" "$prefix" app_static
    if readelf -d "$tmp/app-build/app_static" | grep 'NEEDED.*libsession'; then
        return 1
    fi
}
check "CMake libsession::static" cmake_static

# The package found where a staged install put it, not where PREFIX says.
cmake_staged() {
    make -s install DESTDIR="$tmp/stage" PREFIX=/opt/libsession
    cmake_app "$tmp/app-staged" "$tmp/stage/opt/libsession" app_shared
}
check "CMake package from a DESTDIR install" cmake_staged

# Requests the package must refuse: a later major version and, before 1.0, another 0.y. Each must
# be refused by the version file (CMake names the version it considered), not missed.
if [ "$major" -eq 0 ]; then
    rejected="9.0;0.$((minor + 1))"
else
    rejected="9.0;$((major + 1)).0"
fi
mkdir -p "$tmp/versions"
cat > "$tmp/versions/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(versions NONE)
foreach(request IN LISTS REJECTED)
  find_package(libsession ${request} CONFIG)
  if(libsession_FOUND)
    message(FATAL_ERROR "libsession ${libsession_VERSION} accepted a request for ${request}")
  endif()
endforeach()
CMAKE
cmake_rejects() {
    status=0
    cmake -S "$tmp/versions" -B "$tmp/versions-build" -DCMAKE_PREFIX_PATH="$prefix" -DREJECTED="$rejected" \
        > "$tmp/versions.log" 2>&1 || status=$?
    cat "$tmp/versions.log"
    test "$status" -eq 0
    test "$(grep -c "version: $version\$" "$tmp/versions.log")" -eq 2
}
check "CMake find_package refuses $rejected" cmake_rejects

# examples-c finds the package (no SESSION_LIB_DIR given) and its session-server target.
examples_c() {
    cmake -S examples-c -B "$tmp/examples-c" -DCMAKE_PREFIX_PATH="$prefix"
    grep "^libsession_DIR:PATH=$prefix/lib/cmake/libsession\$" "$tmp/examples-c/CMakeCache.txt"
    grep "^SESSION_SERVER:FILEPATH=$prefix/bin/session-server\$" "$tmp/examples-c/CMakeCache.txt"
    cmake --build "$tmp/examples-c"
    ctest --test-dir "$tmp/examples-c" -R '^connect_sync$' --output-on-failure
}
check "examples-c against the package" examples_c

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
