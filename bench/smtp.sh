#!/usr/bin/env bash
# Measure SMTP delivery through proxy-server: COUNT (1000) messages of about
# 2 KB injected over HTTP (BATCH recipients per request) → nephele → SOCKS5
# with RFC 1929 → aiosmtpd sink (crates/nephele/tests/smtp_sink.py). Prints
# messages/s from the first injection to the sink's receipt of the last.
# Release builds; everything on loopback in a temporary directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
COUNT=${COUNT:-1000}
BATCH=${BATCH:-100}
cargo build --release -q -p nephele -p proxy-server

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

wait_line() { # FILE MARKER → address after the marker
    for _ in $(seq 600); do
        if line=$(grep -m1 -a "$2" "$1" 2>/dev/null); then
            echo "${line#*"$2"}" | awk '{print $1}'
            return
        fi
        sleep 0.05
    done
    echo "bench/smtp.sh: no '$2' in $1" >&2; cat "$1" >&2; exit 1
}

mkdir -p "$work/sink"
/usr/bin/python3 crates/nephele/tests/smtp_sink.py "$work/sink" >"$work/sink.out" 2>&1 &
pids+=($!)
sink=$(wait_line "$work/sink.out" "sink listening on ")

cat >"$work/proxy.lua" <<LUA
local kumo = require 'kumo'
local proxy = require 'proxy'
kumo.on('proxy_init', function()
  proxy.start_proxy_listener { listen = '127.0.0.1:0', require_auth = true, prohibited_destinations = {} }
end)
kumo.on('proxy_server_auth_rfc1929', function(username, password, conn_meta)
  return username == 'mailer' and password == 'pw'
end)
LUA
target/release/proxy-server --proxy-config "$work/proxy.lua" 2>"$work/proxy.err" >/dev/null &
pids+=($!)
proxy=$(wait_line "$work/proxy.err" "proxy listener on ")

cat >"$work/policy.lua" <<LUA
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '$work/spool/data' }
  kumo.define_spool { name = 'meta', path = '$work/spool/meta' }
  kumo.configure_local_logs { log_dir = '$work/logs' }
  kumo.start_http_listener { listen = '127.0.0.1:0' }
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {
    protocol = { smtp = { mx_list = { '$sink' } } }, egress_pool = 'p', retry_interval = '1 second',
  }
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool { name = name, entries = { { name = 's' } } }
end)
kumo.on('get_egress_source', function(name)
  return kumo.make_egress_source { name = name, socks5_proxy_server = '$proxy',
    socks5_proxy_username = 'mailer', socks5_proxy_password = { key_data = 'pw' } }
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { prohibited_hosts = {}, enable_tls = 'Disabled' }
end)
LUA
NEPHELE_LOG=info target/release/nephele --policy "$work/policy.lua" 2>"$work/nephele.err" >/dev/null &
pids+=($!)
api=$(wait_line "$work/nephele.err" "http listener on ")

# One request body per batch: BATCH recipients, a ~2 KB message each.
/usr/bin/python3 - "$work" "$COUNT" "$BATCH" <<'PY'
import json, sys
work, count, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = "x" * 76 + "\n"
content = "From: bench@example.com\nTo: {{ email }}\nSubject: bench\n\n" + line * 26
for i in range(0, count, batch):
    recipients = [{"email": "r%d@example.net" % n} for n in range(i, min(i + batch, count))]
    with open("%s/req%05d.json" % (work, i), "w") as f:
        json.dump({"envelope_sender": "bench@example.com", "recipients": recipients,
                   "content": content}, f)
PY

start=$(date +%s.%N)
curls=()
for req in "$work"/req*.json; do
    curl -s -o /dev/null -H 'Content-Type: application/json' --data-binary "@$req" \
        "http://$api/api/inject/v1" &
    curls+=($!)
done
deadline=$((SECONDS + 600))
while (( $(find "$work/sink" -name '*.json' | wc -l) < COUNT )); do
    (( SECONDS < deadline )) || { echo "bench/smtp.sh: not all delivered" >&2; exit 1; }
    sleep 0.02
done
end=$(date +%s.%N)
wait "${curls[@]}"
python3 -c "import sys; s,e=float(sys.argv[1]),float(sys.argv[2]); n=int(sys.argv[3]); print(f'{n} messages of ~2 KB through proxy-server to the sink: {e-s:.2f} s, {n/(e-s):.0f} messages/s')" "$start" "$end" "$COUNT"
