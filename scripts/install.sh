#!/bin/sh
# `make install` and `make uninstall` (the Makefile passes PREFIX, LIBDIR, INCLUDEDIR, BINDIR,
# DATADIR, DESTDIR, VERSION, RELEASE, STRIP and NATIVE_STATIC_LIBS in the environment).
#
#   install.sh install     copies the libraries and session-server with their debug information
#                          stripped, the header, the pkg-config file and the CMake package
#                          (LIBDIR/cmake/libsession) under DESTDIR, and lists
#                          every file and directory it created in
#                          DATADIR/libsession/install-manifest.txt
#   install.sh uninstall   removes the files that manifest lists, then the directories it lists
#                          that are empty
#
# Manifest paths are those of the target system (without DESTDIR); directories end with "/".
set -eu

case "$PREFIX" in
    /*) ;;
    *) echo "PREFIX must be an absolute path, not '$PREFIX'" >&2; exit 1 ;;
esac
manifest="$DATADIR/libsession/install-manifest.txt"

install_all() {
    soname=$(readelf -d "$RELEASE/libsession.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
    [ -n "$soname" ] || { echo "$RELEASE/libsession.so has no soname" >&2; exit 1; }
    list=$(mktemp)
    trap 'rm -f "$list"' EXIT

    make_dir "$LIBDIR"
    make_dir "$LIBDIR/pkgconfig"
    make_dir "$LIBDIR/cmake/libsession"
    make_dir "$INCLUDEDIR"
    make_dir "$BINDIR"
    make_dir "$DATADIR/libsession"

    # Debian's rules for what it ships: shared objects and programs keep only the symbols
    # linking and loading need, static libraries lose their debug sections only. The build
    # tree's copies (profile.release has debug = 1) are the ones to debug with.
    put_stripped 755 --strip-unneeded "$RELEASE/libsession.so" "$LIBDIR/libsession.so.$VERSION"
    put_link "libsession.so.$VERSION" "$LIBDIR/$soname"
    put_link "$soname" "$LIBDIR/libsession.so"
    put_stripped 644 --strip-debug "$RELEASE/libsession.a" "$LIBDIR/libsession.a"
    put_stripped 755 --strip-unneeded "$RELEASE/session-server" "$BINDIR/session-server"
    put 644 include/session.h "$INCLUDEDIR/session.h"

    sed -e "s|@PREFIX@|$PREFIX|" -e "s|@LIBDIR@|$LIBDIR|" -e "s|@INCLUDEDIR@|$INCLUDEDIR|" \
        -e "s|@VERSION@|$VERSION|" -e "s|@LIBS_PRIVATE@|$NATIVE_STATIC_LIBS|" \
        session.pc.in > "$DESTDIR$LIBDIR/pkgconfig/session.pc"
    echo "$LIBDIR/pkgconfig/session.pc" >> "$list"
    install_cmake_package

    # A second install into the same place keeps what the first one recorded: the directories
    # it created, and files of another version.
    echo "$manifest" >> "$list"
    if [ -f "$DESTDIR$manifest" ]; then
        cat "$DESTDIR$manifest" >> "$list"
    fi
    sort -u "$list" > "$DESTDIR$manifest"
    echo "installed libsession $VERSION in $DESTDIR$PREFIX; files listed in $DESTDIR$manifest"
}

# The CMake package: paths relative to its own directory, so that the tree can move; pthread
# as Threads::Threads.
install_cmake_package() {
    dir="$LIBDIR/cmake/libsession"
    libdir_rel=$(realpath -m -s --relative-to="$dir" "$LIBDIR")
    includedir_rel=$(realpath -m -s --relative-to="$dir" "$INCLUDEDIR")
    bindir_rel=$(realpath -m -s --relative-to="$dir" "$BINDIR")
    cmake_libs=$(for l in $NATIVE_STATIC_LIBS; do echo "$l"; done |
        sed -e 's/^-lpthread$/Threads::Threads/' -e 's/^-l//' | paste -sd ';' -)
    case $(readelf -h "$RELEASE/libsession.so" | sed -n 's/.*Class: *//p') in
        ELF64) pointer_size=8 ;;
        *) pointer_size=4 ;;
    esac
    sed -e "s|@VERSION@|$VERSION|g" -e "s|@SONAME@|$soname|" -e "s|@NATIVE_STATIC_LIBS@|$cmake_libs|" \
        -e "s|@LIBDIR_FROM_CONFIG@|$libdir_rel|" -e "s|@INCLUDEDIR_FROM_CONFIG@|$includedir_rel|" \
        -e "s|@BINDIR_FROM_CONFIG@|$bindir_rel|" \
        cmake/libsessionConfig.cmake.in > "$DESTDIR$dir/libsessionConfig.cmake"
    sed -e "s|@VERSION@|$VERSION|" -e "s|@SIZEOF_VOID_P@|$pointer_size|g" \
        cmake/libsessionConfigVersion.cmake.in > "$DESTDIR$dir/libsessionConfigVersion.cmake"
    echo "$dir/libsessionConfig.cmake" >> "$list"
    echo "$dir/libsessionConfigVersion.cmake" >> "$list"
}

# Creates directory $1, listing it and each parent that did not exist (DESTDIR itself is not
# part of the target system).
make_dir() {
    d=$1
    while [ "$d" != / ] && [ ! -d "$DESTDIR$d" ]; do
        echo "$d/" >> "$list"
        d=$(dirname "$d")
    done
    mkdir -p "$DESTDIR$1"
}

# put MODE SOURCE DEST
put() {
    install -m "$1" "$2" "$DESTDIR$3"
    echo "$3" >> "$list"
}

# put_stripped MODE STRIP-OPTION SOURCE DEST: written beside DEST and renamed over it, so that
# programs running with the old file keep their mapping of it.
put_stripped() {
    $STRIP "$2" -o "$DESTDIR$4.tmp" "$3"
    chmod "$1" "$DESTDIR$4.tmp"
    mv -f "$DESTDIR$4.tmp" "$DESTDIR$4"
    echo "$4" >> "$list"
}

# put_link TARGET LINK
put_link() {
    ln -sfn "$1" "$DESTDIR$2"
    echo "$2" >> "$list"
}

uninstall_all() {
    if [ ! -f "$DESTDIR$manifest" ]; then
        echo "$DESTDIR$manifest not found: nothing was installed there by 'make install' (same PREFIX and DESTDIR?)" >&2
        exit 1
    fi
    entries=$(cat "$DESTDIR$manifest")
    echo "$entries" | grep '^/.*[^/]$' | while IFS= read -r f; do
        rm -f "$DESTDIR$f"
    done
    # Deepest first; a directory that holds anything else stays.
    echo "$entries" | grep '^/.*/$' | sort -r | while IFS= read -r d; do
        rmdir "$DESTDIR$d" 2>/dev/null || true
    done
    echo "uninstalled libsession from $DESTDIR$PREFIX"
}

case "${1:-}" in
    install) install_all ;;
    uninstall) uninstall_all ;;
    *) echo "usage: $0 install|uninstall" >&2; exit 2 ;;
esac
