# Shell helpers shared by the bench scripts (sourced, not run). The script
# defines `log` and the array STARTED_PIDS before using them.

# Stop one process we started, by PID, and reap it.
stop_pid() {
    local pid="$1"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Stop every process in STARTED_PIDS: only what the script started.
stop_started_pids() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid"
    done
}

# A loopback port nobody listens on, below the ephemeral range so a load
# tool's own outgoing connections cannot be handed the same port.
free_port() {
    local port _
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    log "no free port found"
    return 1
}

# Wait (at most ~10 s) until something accepts on 127.0.0.1:$1 while
# process $2 lives.
wait_port() {
    local port="$1" pid="$2" _
    for _ in $(seq 1 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid exited before listening on $port"
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    log "nothing listens on $port"
    return 1
}
