# Process helpers shared by the fixture scripts (sourced, not run).

# Poll in tenths of a second where sleep supports it, else in whole seconds.
if sleep 0.1 2>/dev/null; then
    step=0.1
    ticks_per_10s=100
else
    step=1
    ticks_per_10s=10
fi

# True while the process exists and is not a zombie waiting to be reaped.
is_running() {
    kill -0 "$1" 2>/dev/null || return 1
    [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]
}

# True if PID $1 runs program $2, so a recycled PID is never signalled.
is_program() {
    name=$(basename "$2" | cut -c1-15)
    [ "$(ps -o comm= -p "$1" 2>/dev/null)" = "$name" ]
}

# Sends SIGTERM and waits up to 10 s for the process to exit, then resorts to SIGKILL.
terminate() {
    kill -TERM "$1" 2>/dev/null || return 0
    ticks=0
    while is_running "$1"; do
        if [ "$ticks" -ge "$ticks_per_10s" ]; then
            kill -KILL "$1" 2>/dev/null || true
            echo "PID $1 ignored SIGTERM for 10 s; killed" >&2
            return 1
        fi
        sleep "$step"
        ticks=$((ticks + 1))
    done
}

