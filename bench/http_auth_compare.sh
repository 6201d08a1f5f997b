#!/usr/bin/env bash
# Side-by-side: requests/s of a Basic-auth-protected `GET /proxy/status` on
# our proxy-server's HTTP listener (credentials decided by a Lua handler,
# verdicts cached) against nginx `auth_basic` serving a static file from a
# `{PLAIN}` htpasswd, both driven by wrk on loopback, same machine, same
# run, alternating the order each round. Prints each round, the medians and
# the ratio ours/nginx (issue 3's target: >= 0.5).
#
# It starts every server it measures itself, on free loopback ports, and
# stops only those, by PID. Tunables (environment):
#   ROUNDS=3 DURATION=10s THREADS=2 CONNECTIONS=64 WARMUP=2s
#   NGINX_WORKERS=auto   (nginx worker processes; auto = one per core)
#   OUT_DIR=             (keep logs and configs here instead of a temp dir)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
NGINX_WORKERS="${NGINX_WORKERS:-auto}"
USER_NAME=scott
USER_PASS=tiger
AUTH_HEADER="Authorization: Basic $(printf '%s:%s' "$USER_NAME" "$USER_PASS" | base64)"

WORK="$(mktemp -d -t nephele-http-bench.XXXXXX)"
OUT_DIR="${OUT_DIR:-$WORK}"
mkdir -p "$OUT_DIR"
STARTED_PIDS=()

log() { printf '[http-compare] %s\n' "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

cleanup() {
    stop_started_pids
    if [[ "$OUT_DIR" != "$WORK" ]]; then
        cp -r "$WORK"/. "$OUT_DIR"/ 2>/dev/null || true
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_tools() {
    local missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if ((${#missing[@]} > 0)); then
        log "installing ${missing[*]}"
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

start_ours() {
    local port="$1"
    cat >"$WORK/policy.lua" <<LUA
local kumo = require 'kumo'
local proxy = require 'proxy'
kumo.on('proxy_init', function()
  proxy.start_proxy_listener { listen = '127.0.0.1:0', prohibited_destinations = {} }
  -- Nobody is trusted: every request is decided by its credentials.
  proxy.start_http_listener { listen = '127.0.0.1:$port', trusted_hosts = {} }
end)
kumo.on('http_server_validate_auth_basic', function(user, password)
  if not password or password == '' then
    return false
  end
  local password_database = { ['$USER_NAME'] = '$USER_PASS' }
  return password_database[user] == password
end)
LUA
    KUMO_PROXY_LOG=warn "$ROOT/target/release/proxy-server" --proxy-config "$WORK/policy.lua" \
        >"$WORK/ours.out" 2>"$WORK/ours.err" &
    STARTED_PIDS+=("$!")
    wait_port "$port" "$!"
}

start_nginx() {
    local port="$1" nginx user_line=""
    nginx="$(command -v nginx || echo /usr/sbin/nginx)"
    mkdir -p "$WORK/nginx/www/proxy" "$WORK/nginx/tmp"
    # The same body as ours.
    printf 'proxy-server 0.1.0 OK\n' >"$WORK/nginx/www/proxy/status"
    printf '%s:{PLAIN}%s\n' "$USER_NAME" "$USER_PASS" >"$WORK/nginx/htpasswd"
    # Workers of a root master drop to nobody; let them read the temp dir.
    [[ $(id -u) -eq 0 ]] && user_line="user root;"
    cat >"$WORK/nginx/nginx.conf" <<CONF
$user_line
daemon off;
worker_processes $NGINX_WORKERS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location / {
            root $WORK/nginx/www;
            auth_basic "bench";
            auth_basic_user_file $WORK/nginx/htpasswd;
        }
    }
}
CONF
    "$nginx" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.out" 2>"$WORK/nginx.err" &
    STARTED_PIDS+=("$!")
    wait_port "$port" "$!"
}

# Both must answer 200 with the right credentials and 401 with wrong ones,
# or the comparison means nothing.
check_server() {
    local name="$1" port="$2" good bad
    good=$(curl -s -o /dev/null -w '%{http_code}' -u "$USER_NAME:$USER_PASS" "http://127.0.0.1:$port/proxy/status")
    bad=$(curl -s -o /dev/null -w '%{http_code}' -u "$USER_NAME:wrong" "http://127.0.0.1:$port/proxy/status")
    if [[ "$good" != 200 || "$bad" != 401 ]]; then
        log "$name: expected 200/401, got $good/$bad"
        return 1
    fi
}

# Requests/s of one wrk run against port $2 (fails on any non-2xx answer).
measure() {
    local name="$1" port="$2" out
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "$AUTH_HEADER" \
        "http://127.0.0.1:$port/proxy/status" >/dev/null
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -H "$AUTH_HEADER" \
        "http://127.0.0.1:$port/proxy/status")
    printf '%s\n' "$out" >>"$WORK/wrk-$name.txt"
    if grep -q 'Non-2xx' <<<"$out"; then
        log "$name: wrk saw non-2xx answers:"
        printf '%s\n' "$out" >&2
        return 1
    fi
    awk '/^Requests\/sec:/ {print $2}' <<<"$out"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

main() {
    install_tools
    log "building proxy-server (release)"
    (cd "$ROOT" && cargo build --release -q -p proxy-server)
    local ours_port nginx_port
    ours_port=$(free_port)
    start_ours "$ours_port"
    nginx_port=$(free_port)
    start_nginx "$nginx_port"
    check_server ours "$ours_port"
    check_server nginx "$nginx_port"
    log "ours on 127.0.0.1:$ours_port, nginx on 127.0.0.1:$nginx_port;" \
        "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS round(s), $(nproc) core(s)"

    local round ours=() nginx=() rps
    for round in $(seq 1 "$ROUNDS"); do
        local order=(ours nginx)
        ((round % 2 == 0)) && order=(nginx ours)
        for name in "${order[@]}"; do
            if [[ "$name" == ours ]]; then
                rps=$(measure ours "$ours_port")
                ours+=("$rps")
            else
                rps=$(measure nginx "$nginx_port")
                nginx+=("$rps")
            fi
            log "round $round: $name $rps requests/s (load $(cut -d' ' -f1 /proc/loadavg))"
        done
    done
    local ours_median nginx_median ratio
    ours_median=$(printf '%s\n' "${ours[@]}" | median)
    nginx_median=$(printf '%s\n' "${nginx[@]}" | median)
    ratio=$(awk -v a="$ours_median" -v b="$nginx_median" 'BEGIN {printf "%.2f", a / b}')
    printf '\n%-34s %14s  %s\n' "server" "median req/s" "rounds"
    printf '%-34s %14.0f  %s\n' "proxy-server (Lua Basic, cached)" "$ours_median" "${ours[*]}"
    printf '%-34s %14.0f  %s\n' "nginx auth_basic {PLAIN}, static" "$nginx_median" "${nginx[*]}"
    printf '\nratio ours/nginx: %s (target >= 0.5): %s\n' "$ratio" \
        "$(awk -v r="$ratio" 'BEGIN {print (r >= 0.5) ? "met" : "NOT met"}')"
}

main "$@"
