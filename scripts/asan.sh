#!/bin/sh
# Builds the library with AddressSanitizer (nightly rustc, -Zsanitizer=address) and runs every C
# program of examples-c, built with -fsanitize=address, against it.
#
#   asan.sh <build-dir>
#
# Without a nightly toolchain the run fails under CI=true; elsewhere it says so and skips.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 <build-dir>" >&2; exit 2; }
build_dir=$1
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "AddressSanitizer run: no nightly Rust toolchain (rustup toolchain install nightly)" >&2
        exit 1
    fi
    echo "SKIPPED: AddressSanitizer run of the library: no nightly Rust toolchain (rustup toolchain install nightly)"
    exit 0
fi

# The sanitizer needs an explicit target, so that build scripts and proc macros stay uninstrumented.
target=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR=target/asan cargo +nightly build --release --lib --target "$target"
lib_dir=$(pwd)/target/asan/$target/release
ln -sf libsession.so "$lib_dir/libsession.so.0"

flags="-fsanitize=address -fno-omit-frame-pointer"
cmake -S examples-c -B "$build_dir" -DSESSION_LIB_DIR="$lib_dir" \
    -DSESSION_SERVER="$(pwd)/target/release/session-server" \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" -DTEST_TIMEOUT=120
cmake --build "$build_dir"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 ctest --test-dir "$build_dir" --output-on-failure
