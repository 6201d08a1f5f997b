#!/usr/bin/env bash
# Side-by-side measurement of Nephele's proxy-server against Dante and
# microsocks on loopback: connection rate (conn), throughput (bulk) and
# memory per held tunnel (hold), several rounds, alternating the order, then
# a table of medians, ratios and the issue's goals. See bench/README.md.
#
# It starts every server it measures itself, on free loopback ports, and
# stops only those, by PID. Tunables (environment):
#   ROUNDS=3 CONN_SECS=5 CONN_WARMUP=1 CONCURRENCY=64 BULK_SECS=5 STREAMS=4
#   PIN=1 PROXY_CPUS=1 LOAD_CPUS=0 (PIN=0: no CPU pinning)
#   HOLD_COUNT=2000 BENCH_THREADS= (tokio workers of the load tool; default: cores)
#   CONFIGS="direct haproxy dante microsocks microsocks-auth ours ours-auth ours-auth-argon2 ours-nosplice ours-auth-nosplice ours-auth-sqlite"
#                  (haproxy: HAProxy in TCP mode, one thread, a plain
#                   forwarder with no SOCKS: the bare-forwarder limit)
#                  (ours-auth-argon2: logins checked against a credential
#                   file of argon2id hashes, kumo.aaa.load_credentials)
#                  (ours-auth-sqlite: logins checked against a SQLite file
#                   behind kumo.memoize, bench/proxy-auth-sqlite.lua)
#                  (ours-auth-limits: ours-auth plus per-identity
#                   max_sessions and max_connect_rate, set far above the
#                   load; ours-auth-fleet: the same counted in a local
#                   redis-server through proxy.configure_shared_state,
#                   not in the defaults)
#   DANTE_AUTH=0   (1: also measure Dante's `username` method; creates and
#                   removes a throwaway system user, since Dante checks
#                   system passwords)
#   PROXY_LOG=warn,proxy_server::listener=info
#                  (KUMO_PROXY_LOG filter for our proxy-server: no per-login
#                   info lines, like the peers, which log nothing per session;
#                   the listener line must stay, it carries the port)
#   OUT_DIR=       (keep results here instead of a temp dir)
#   PROXY_BIN=     (measure this proxy-server binary instead of building one,
#                   e.g. a copy of an earlier build for a before/after)
#   BENCH_BIN=     (the same for the load tool)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${ROUNDS:-3}"
CONN_SECS="${CONN_SECS:-5}"
CONN_WARMUP="${CONN_WARMUP:-1}"
CONCURRENCY="${CONCURRENCY:-64}"
BULK_SECS="${BULK_SECS:-5}"
STREAMS="${STREAMS:-4}"
HOLD_COUNT="${HOLD_COUNT:-2000}"
DANTE_AUTH="${DANTE_AUTH:-0}"
PROXY_LOG="${PROXY_LOG:-warn,proxy_server::listener=info}"
DEFAULT_CONFIGS="direct haproxy dante microsocks microsocks-auth ours ours-auth ours-auth-argon2 ours-auth-limits ours-nosplice ours-auth-nosplice ours-auth-sqlite"
CONFIGS="${CONFIGS:-$DEFAULT_CONFIGS}"
if [[ "$DANTE_AUTH" == 1 && " $CONFIGS " != *" dante-auth "* ]]; then
    CONFIGS="$CONFIGS dante-auth"
fi

AUTH_USER=bench
AUTH_PASS=benchpass
DANTE_USER=nephbench # a system account, only with DANTE_AUTH=1

WORK="$(mktemp -d -t nephele-bench.XXXXXX)"
OUT_DIR="${OUT_DIR:-$WORK}"
mkdir -p "$OUT_DIR"
RESULTS="$OUT_DIR/results.jsonl"
LOGINS="$OUT_DIR/logins.jsonl" # first and cached login latency of our auth configs
: >"$RESULTS"
: >"$LOGINS"

STARTED_PIDS=()     # every process this script started, stopped on exit
CREATED_USER=""     # the throwaway system user, removed on exit
SERVER_PID=""       # the proxy under test right now
PROXY_ADDR=""
CONN_TARGET=""      # where conn and hold connect (a forwarder's own port)
BULK_TARGET=""      # where bulk connects

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

cleanup() {
    stop_started_pids
    if [[ -n "$CREATED_USER" ]]; then
        userdel "$CREATED_USER" 2>/dev/null || true
    fi
    if [[ "$OUT_DIR" != "$WORK" ]]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Start "$@" in the background with output to $1-named logs; sets BG_PID.
# Pinning (PIN=1, the default): the proxy under test runs on PROXY_CPUS and
# the load tool with its echo/discard servers on LOAD_CPUS, so each proxy's
# own cost decides its rate instead of how the scheduler shares two cores
# with the load generator. PIN=0 lets everything float.
ON_PROXY_CPUS=()
ON_LOAD_CPUS=()
if [[ "${PIN:-1}" == 1 ]] && command -v taskset >/dev/null 2>&1 && (($(nproc) >= 2)); then
    ON_PROXY_CPUS=(taskset -c "${PROXY_CPUS:-1}")
    ON_LOAD_CPUS=(taskset -c "${LOAD_CPUS:-0}")
fi

start_bg() {
    local name="$1"
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    BG_PID=$!
    STARTED_PIDS+=("$BG_PID")
}

# Wait (at most ~20 s) for a line matching the regex $2 in file $1 while $3
# lives; prints the first match.
wait_line() {
    local file="$1" regex="$2" pid="$3" i match
    for i in $(seq 1 400); do
        match="$(grep -Eo "$regex" "$file" 2>/dev/null | head -n1 || true)"
        if [[ -n "$match" ]]; then
            echo "$match"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
    return 1
}

ensure_packages() {
    # Only what the chosen configurations use.
    local missing=() wanted=() pkg
    [[ " $CONFIGS " == *" dante"* ]] && wanted+=(dante-server)
    [[ " $CONFIGS " == *" microsocks"* ]] && wanted+=(microsocks)
    [[ " $CONFIGS " == *" haproxy "* ]] && wanted+=(haproxy)
    [[ " $CONFIGS " == *sqlite* ]] && wanted+=(sqlite3)
    [[ " $CONFIGS " == *fleet* ]] && wanted+=(redis-server)
    for pkg in "${wanted[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

OURS_OK=1
build() {
    log "building (release)"
    [[ -n "${BENCH_BIN:-}" ]] || (cd "$ROOT" && cargo build --release -q -p bench)
    BENCH="${BENCH_BIN:-$ROOT/target/release/bench}"
    PROXY="${PROXY_BIN:-$ROOT/target/release/proxy-server}"
    if [[ -z "${PROXY_BIN:-}" ]] && ! (cd "$ROOT" && cargo build --release -q -p proxy-server); then
        log "WARNING: proxy-server does not build; its rows are skipped"
        OURS_OK=0
    fi
    if ((OURS_OK)); then
        # ours-auth-argon2's credential file: one argon2id hash with the
        # default parameters, made by the binary under test.
        printf '%s:%s\n' "$AUTH_USER" "$(printf '%s\n' "$AUTH_PASS" | "$PROXY" hash-password)" \
            >"$WORK/users.htpasswd"
    fi
}

write_dante_conf() {
    local conf="$1" port="$2" method="$3"
    cat >"$conf" <<EOF
logoutput: $WORK/danted-$port.log
internal: 127.0.0.1 port = $port
external: 127.0.0.1
clientmethod: none
socksmethod: $method
user.privileged: root
user.unprivileged: nobody
client pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
  from: 127.0.0.0/8 to: 127.0.0.0/8
  command: connect
}
EOF
}

# HAProxy in TCP mode, one thread: frontend port $2 forwards to the echo
# server, port $3 to the discard server. No logging, like the other peers.
write_haproxy_conf() {
    local conf="$1" echo_port="$2" discard_port="$3"
    cat >"$conf" <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen echo
  bind 127.0.0.1:$echo_port
  server echo $ECHO_ADDR
listen discard
  bind 127.0.0.1:$discard_port
  server discard $DISCARD_ADDR
EOF
}

# A redis-server for ours-auth-fleet (one per run); sets REDIS_URL.
ensure_redis() {
    if [[ -z "${REDIS_URL:-}" ]]; then
        local port
        port="$(free_port)"
        start_bg redis "${ON_LOAD_CPUS[@]}" redis-server --port "$port" --bind 127.0.0.1 \
            --save '' --appendonly no
        wait_port "$port" "$BG_PID" || return 1
        REDIS_URL="redis://127.0.0.1:$port"
    fi
}

# Lua for the limit configs ($1: the config): a limits handler whose
# limits the load never reaches, and for fleet, shared state in Redis.
limits_lua() {
    case "$1" in
    *limits* | *fleet*)
        echo "kumo.on('proxy_server_get_identity_limits', function(auth_info)"
        echo "  return { max_sessions = 1000000, max_connect_rate = '1000000000/s' }"
        echo "end)"
        ;;
    esac
}

fleet_init_lua() {
    [[ "$1" == *fleet* ]] && echo "  proxy.configure_shared_state { redis = { node = '$REDIS_URL' } }"
    return 0
}

write_policy() {
    local file="$1" require_auth="$2" use_splice="$3" config="${4:-}"
    cat >"$file" <<EOF
local kumo = require 'kumo'
local proxy = require 'proxy'
kumo.on('proxy_init', function()
  proxy.start_proxy_listener { listen = '127.0.0.1:0', require_auth = $require_auth, use_splice = $use_splice, prohibited_destinations = {} }
$(fleet_init_lua "$config")
end)
$(limits_lua "$config")
$(auth_lua "$config")
EOF
}

# The login handler for config $1: ours-auth-argon2 checks the argon2id
# credential file $WORK/users.htpasswd, the others a Lua table.
auth_lua() {
    if [[ "$1" == *argon2* ]]; then
        cat <<EOF
local users = kumo.aaa.load_credentials '$WORK/users.htpasswd'
kumo.on('proxy_server_auth_rfc1929', function(user, password, conn_meta)
  return users:check(user, password, 'ProxyAuthRfc1929')
end)
EOF
    else
        cat <<EOF
local db = { $AUTH_USER = '$AUTH_PASS' }
kumo.on('proxy_server_auth_rfc1929', function(user, password, conn_meta)
  if not password or password == '' then return false end
  return db[user] == password
end)
EOF
    fi
}

# The SQLite login database of ours-auth-sqlite (made once per run).
ensure_auth_db() {
    AUTH_DB="$WORK/auth.db"
    if [[ ! -f "$AUTH_DB" ]]; then
        sqlite3 "$AUTH_DB" "CREATE TABLE auth (user TEXT, pass TEXT);
            INSERT INTO auth VALUES ('$AUTH_USER', '$AUTH_PASS');"
    fi
}

ensure_dante_user() {
    if [[ -z "$CREATED_USER" ]] && ! id "$DANTE_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$DANTE_USER"
        CREATED_USER="$DANTE_USER"
        echo "$DANTE_USER:$AUTH_PASS" | chpasswd
    fi
}

# Start the server for config $1 and set SERVER_PID, PROXY_ADDR and CREDS.
# Returns 1 if it is not available.
start_config() {
    local config="$1" port file addr
    SERVER_PID=""
    PROXY_ADDR=""
    CONN_TARGET="$ECHO_ADDR"
    BULK_TARGET="$DISCARD_ADDR"
    CREDS=()
    case "$config" in
    direct)
        PROXY_ADDR=direct
        return 0
        ;;
    haproxy)
        # A plain TCP forwarder: the client connects to it directly, one
        # frontend port per far end.
        local discard_port
        port="$(free_port)"
        discard_port="$(free_port)"
        file="$WORK/haproxy-$port.cfg"
        write_haproxy_conf "$file" "$port" "$discard_port"
        start_bg "$config" "${ON_PROXY_CPUS[@]}" haproxy -db -f "$file"
        SERVER_PID="$BG_PID"
        wait_port "$port" "$SERVER_PID" || return 1
        wait_port "$discard_port" "$SERVER_PID" || return 1
        PROXY_ADDR=direct
        CONN_TARGET="127.0.0.1:$port"
        BULK_TARGET="127.0.0.1:$discard_port"
        ;;
    dante | dante-auth)
        port="$(free_port)"
        file="$WORK/danted-$port.conf"
        if [[ "$config" == dante-auth ]]; then
            ensure_dante_user
            write_dante_conf "$file" "$port" username
            CREDS=(--user "$DANTE_USER" --pass "$AUTH_PASS")
        else
            write_dante_conf "$file" "$port" none
        fi
        start_bg "$config" "${ON_PROXY_CPUS[@]}" danted -f "$file" -p "$WORK/danted-$port.pid"
        SERVER_PID="$BG_PID"
        wait_port "$port" "$SERVER_PID" || return 1
        PROXY_ADDR="127.0.0.1:$port"
        ;;
    microsocks | microsocks-auth)
        port="$(free_port)"
        if [[ "$config" == microsocks-auth ]]; then
            start_bg "$config" "${ON_PROXY_CPUS[@]}" microsocks -i 127.0.0.1 -p "$port" -u "$AUTH_USER" -P "$AUTH_PASS"
            CREDS=(--user "$AUTH_USER" --pass "$AUTH_PASS")
        else
            start_bg "$config" "${ON_PROXY_CPUS[@]}" microsocks -i 127.0.0.1 -p "$port"
        fi
        SERVER_PID="$BG_PID"
        wait_port "$port" "$SERVER_PID" || return 1
        PROXY_ADDR="127.0.0.1:$port"
        ;;
    ours*)
        ((OURS_OK)) || return 1
        local require_auth=false use_splice=true
        [[ "$config" == *auth* ]] && require_auth=true
        [[ "$config" == *nosplice* ]] && use_splice=false
        local env=(env KUMO_PROXY_LOG="$PROXY_LOG")
        if [[ "$config" == *sqlite* ]]; then
            ensure_auth_db
            file="$ROOT/bench/proxy-auth-sqlite.lua"
            env+=(BENCH_AUTH_DB="$AUTH_DB" BENCH_USE_SPLICE="$use_splice")
        else
            [[ "$config" == *fleet* ]] && { ensure_redis || return 1; }
            file="$WORK/$config.lua"
            write_policy "$file" "$require_auth" "$use_splice" "$config"
        fi
        start_bg "$config" "${ON_PROXY_CPUS[@]}" "${env[@]}" "$PROXY" --proxy-config "$file"
        SERVER_PID="$BG_PID"
        addr="$(wait_line "$WORK/$config.err" 'proxy listener on 127\.0\.0\.1:[0-9]+' "$SERVER_PID")" ||
            return 1
        PROXY_ADDR="${addr##* }"
        if [[ "$require_auth" == true ]]; then
            CREDS=(--user "$AUTH_USER" --pass "$AUTH_PASS")
        fi
        ;;
    *)
        log "unknown config $config"
        return 1
        ;;
    esac
}

# On a fresh proxy of config $1: one login alone (the policy decides: for
# ours-auth-argon2 an argon2id check), then one more (the verdict cache
# answers). Each is a `conn` run of one connection, into $LOGINS.
measure_logins() {
    local config="$1" which
    for which in "first login" "cached login"; do
        "${ON_LOAD_CPUS[@]}" "$BENCH" conn --proxy "$PROXY_ADDR" "${CREDS[@]}" --target "$ECHO_ADDR" \
            --concurrency 1 --count 1 --label "$config $which" --json-file "$LOGINS" >/dev/null
    done
}

# Run conn, bulk and hold (not for direct) against config $1.
measure() {
    local config="$1"
    local common=(--proxy "$PROXY_ADDR" --label "$config" --json-file "$RESULTS")
    [[ -n "${BENCH_THREADS:-}" ]] && common+=(--threads "$BENCH_THREADS")
    common+=("${CREDS[@]}")
    if [[ "$config" == ours-auth* ]]; then
        measure_logins "$config"
    fi
    local cpu=()
    [[ -n "$SERVER_PID" ]] && cpu=(--pid "$SERVER_PID")
    "${ON_LOAD_CPUS[@]}" "$BENCH" conn "${common[@]}" --target "$CONN_TARGET" --concurrency "$CONCURRENCY" \
        --duration "$CONN_SECS" --warmup "$CONN_WARMUP" "${cpu[@]}"
    "${ON_LOAD_CPUS[@]}" "$BENCH" bulk "${common[@]}" --target "$BULK_TARGET" --streams "$STREAMS" \
        --duration "$BULK_SECS" "${cpu[@]}"
    if [[ -n "$SERVER_PID" ]]; then
        "${ON_LOAD_CPUS[@]}" "$BENCH" hold "${common[@]}" --target "$CONN_TARGET" --count "$HOLD_COUNT" \
            --pid "$SERVER_PID"
    fi
}

# The echo and discard servers every configuration forwards to, on the
# load tool's CPUs; sets ECHO_ADDR and DISCARD_ADDR.
start_servers() {
    start_bg echo "${ON_LOAD_CPUS[@]}" "$BENCH" echo --listen 127.0.0.1:0
    ECHO_ADDR="$(wait_line "$WORK/echo.out" 'listening on [0-9.:]+' "$BG_PID")"
    ECHO_ADDR="${ECHO_ADDR##* }"
    start_bg discard "${ON_LOAD_CPUS[@]}" "$BENCH" discard --listen 127.0.0.1:0
    DISCARD_ADDR="$(wait_line "$WORK/discard.out" 'listening on [0-9.:]+' "$BG_PID")"
    DISCARD_ADDR="${DISCARD_ADDR##* }"
}

main() {
    LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
    # Children inherit this: hold mode needs thousands of descriptors.
    ulimit -n "$(ulimit -Hn)"
    ensure_packages
    build

    start_servers
    log "echo $ECHO_ADDR, discard $DISCARD_ADDR, work dir $WORK"

    local configs n round i config skipped=()
    read -r -a configs <<<"$CONFIGS"
    n=${#configs[@]}
    for round in $(seq 1 "$ROUNDS"); do
        log "round $round/$ROUNDS"
        for i in $(seq 0 $((n - 1))); do
            # Rotate the order each round so no config always runs first.
            config="${configs[$(((i + round - 1) % n))]}"
            if ! start_config "$config"; then
                log "SKIP $config: not available (see $WORK/$config.err)"
                [[ " ${skipped[*]:-} " == *" $config "* ]] || skipped+=("$config")
                [[ -n "$SERVER_PID" ]] && stop_pid "$SERVER_PID"
                continue
            fi
            log "$config via $PROXY_ADDR"
            measure "$config" || log "WARNING: $config measurement failed"
            [[ -n "$SERVER_PID" ]] && stop_pid "$SERVER_PID"
        done
    done

    echo
    echo "## proxy comparison: $ROUNDS rounds, medians" \
        "(conn: $CONCURRENCY clients × ${CONN_SECS}s; bulk: $STREAMS streams × ${BULK_SECS}s;" \
        "hold: $HOLD_COUNT tunnels; $(nproc) cores; load average at start: $LOAD_AT_START;" \
        "pinning: ${ON_PROXY_CPUS[*]:-none} for proxies, ${ON_LOAD_CPUS[*]:-none} for the load tool)"
    echo
    "$BENCH" table --input "$RESULTS" \
        --ratio ours-auth/microsocks-auth \
        --ratio ours-auth/haproxy \
        --ratio ours/haproxy \
        --ratio ours-auth-argon2/ours-auth \
        --ratio ours-auth-sqlite/ours-auth \
        --ratio ours-auth-limits/ours-auth \
        --ratio ours-auth-fleet/ours-auth \
        --ratio ours-auth-sqlite/microsocks-auth \
        --ratio ours-auth/dante \
        --ratio ours/dante \
        --ratio ours/microsocks \
        --ratio ours/direct \
        --ratio ours-auth-nosplice/microsocks-auth \
        --ratio ours-nosplice/dante \
        --ratio ours-nosplice/direct \
        --goal 'conn_per_sec:ours-auth/microsocks-auth>=1.5' \
        --goal 'proxy_cpu_us_per_conn:ours-auth/haproxy<=1.3' \
        --goal 'conn_per_sec:ours-auth-argon2/ours-auth>=0.9' \
        --goal 'conn_per_sec:ours-auth/dante>=3' \
        --goal 'conn_per_sec:ours-auth-limits/ours-auth>=0.9' \
        --goal 'gbit_per_sec:ours/dante>=2' \
        --goal 'gbit_per_sec:ours/direct>=0.6' \
        --goal 'kib_per_tunnel:ours<=8' \
        --goal 'conn_per_sec:ours-auth-nosplice/microsocks-auth>=1.5' \
        --goal 'conn_per_sec:ours-auth-nosplice/dante>=3' \
        --goal 'gbit_per_sec:ours-nosplice/dante>=2' \
        --goal 'gbit_per_sec:ours-nosplice/direct>=0.6' \
        --goal 'kib_per_tunnel:ours-nosplice<=8'
    echo
    if [[ -s "$LOGINS" ]]; then
        echo "## login latency on a fresh proxy: the first login (the policy decides; argon2id for" \
            "ours-auth-argon2), then a second one (answered by the verdict cache); read p50 ms"
        echo
        "$BENCH" table --input "$LOGINS"
        echo
    fi
    if ((${#skipped[@]})); then
        echo "Skipped (not available): ${skipped[*]}"
    fi
    if [[ " $CONFIGS " != *" dante-auth "* ]]; then
        echo "Dante with \`socksmethod: username\` not measured (DANTE_AUTH=1 to add it;" \
            "it checks system passwords); microsocks -u/-P is the like-for-like auth peer."
    fi
    echo "Raw runs: $RESULTS"
}

# Sourced (bench/syscalls.sh reuses the configurations): define only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
