#!/usr/bin/env bash
# Syscalls per session: the `conn` load (connect, optional RFC 1929 login,
# CONNECT, 1-byte echo, close) at low concurrency against each
# configuration of bench/compare.sh while `strace -c -f` counts the
# server's syscalls, then a table of calls per session by syscall name and
# in total. Counts do not depend on how busy the machine is, unlike CPU
# time, so they judge a change to the session path. See bench/README.md.
#
# Tunables (environment), besides compare.sh's (PIN, PROXY_BIN, ...):
#   CONFIGS="ours ours-auth haproxy"   any of compare.sh's configurations
#   SYSCALL_SECS=2 SYSCALL_CONCURRENCY=4 SYSCALL_WARMUP=0.5
set -euo pipefail

CONFIGS="${CONFIGS:-ours ours-auth haproxy}"
# shellcheck source=bench/compare.sh
source "$(dirname "${BASH_SOURCE[0]}")/compare.sh"

SYSCALL_SECS="${SYSCALL_SECS:-2}"
SYSCALL_CONCURRENCY="${SYSCALL_CONCURRENCY:-4}"
SYSCALL_WARMUP="${SYSCALL_WARMUP:-0.5}"

# Count config $1's syscalls over one `conn` run into $WORK/$1.counts
# ("name calls errors" lines) and its sessions into $WORK/$1.sessions.
count_syscalls() {
    local config="$1" report="$WORK/$1.conn.json" strace_pid
    # Unmeasured first: pools, caches and the first login's policy call.
    "${ON_LOAD_CPUS[@]}" "$BENCH" conn --proxy "$PROXY_ADDR" "${CREDS[@]}" --target "$CONN_TARGET" \
        --concurrency "$SYSCALL_CONCURRENCY" --duration "$SYSCALL_WARMUP" >/dev/null
    # -f with -p follows every thread of the process (and forked children).
    start_bg "$config.strace" strace -c -f -o "$WORK/$config.strace" -p "$SERVER_PID"
    strace_pid="$BG_PID"
    wait_line "$WORK/$config.strace.err" 'attached' "$strace_pid" >/dev/null ||
        { log "strace did not attach to $config"; return 1; }
    "${ON_LOAD_CPUS[@]}" "$BENCH" conn --proxy "$PROXY_ADDR" "${CREDS[@]}" --target "$CONN_TARGET" \
        --concurrency "$SYSCALL_CONCURRENCY" --duration "$SYSCALL_SECS" --label "$config" --json \
        >"$report"
    # The server closes its side just after the client's last echo.
    sleep 0.3
    kill -INT "$strace_pid"
    wait "$strace_pid" || true
    /usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["connections"]+r["errors"])' \
        "$report" >"$WORK/$config.sessions"
    # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
    awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { errs = (NF == 6) ? $5 : 0; print $NF, $4, errs }' \
        "$WORK/$config.strace" >"$WORK/$config.counts"
}

# One markdown table: rows are syscalls (most frequent first), columns the
# configurations, cells calls per session (failed calls in parentheses).
print_table() {
    local args=() config
    for config in "$@"; do
        args+=("$config" "$(cat "$WORK/$config.sessions")" "$WORK/$config.counts")
    done
    /usr/bin/python3 - "${args[@]}" <<'EOF'
import sys
a = sys.argv[1:]
configs = [(a[i], int(a[i + 1]), a[i + 2]) for i in range(0, len(a), 3)]
per = {}
for name, sessions, path in configs:
    for line in open(path):
        call, calls, errors = line.split()
        per.setdefault(call, {})[name] = (int(calls) / sessions, int(errors) / sessions)
def cell(v):
    if v is None:
        return "-"
    calls, errors = v
    return f"{calls:.2f}" + (f" ({errors:.2f})" if errors >= 0.005 else "")
names = [c[0] for c in configs]
print("| syscall | " + " | ".join(names) + " |")
print("|---|" + "---:|" * len(names))
order = sorted(per, key=lambda s: -max(v[0] for v in per[s].values()))
for call in order:
    print(f"| {call} | " + " | ".join(cell(per[call].get(n)) for n in names) + " |")
totals = []
for name, sessions, path in configs:
    calls = sum(v[name][0] for v in per.values() if name in v)
    errors = sum(v[name][1] for v in per.values() if name in v)
    totals.append(cell((calls, errors)))
print("| **total** | " + " | ".join(totals) + " |")
print("| sessions counted | " + " | ".join(str(c[1]) for c in configs) + " |")
EOF
}

syscalls_main() {
    local load configs config measured=()
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    ulimit -n "$(ulimit -Hn)"
    command -v strace >/dev/null || { log "strace is not installed"; exit 1; }
    ensure_packages
    build
    start_servers
    read -r -a configs <<<"$CONFIGS"
    for config in "${configs[@]}"; do
        if [[ "$config" == direct ]] || ! start_config "$config"; then
            log "SKIP $config: no server to trace"
            [[ -n "$SERVER_PID" ]] && stop_pid "$SERVER_PID"
            continue
        fi
        log "$config: proxy $PROXY_ADDR, target $CONN_TARGET"
        count_syscalls "$config" && measured+=("$config")
        stop_pid "$SERVER_PID"
    done
    echo
    echo "## syscalls per session: strace -c -f over conn, $SYSCALL_CONCURRENCY clients ×" \
        "${SYSCALL_SECS}s; load average at start: $load; pinning: ${ON_PROXY_CPUS[*]:-none}" \
        "for servers, ${ON_LOAD_CPUS[*]:-none} for the load tool"
    echo
    ((${#measured[@]})) && print_table "${measured[@]}"
}

syscalls_main "$@"
