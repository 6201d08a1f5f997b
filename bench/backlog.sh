#!/usr/bin/env bash
# A large backlog whose delivery keeps failing: inject COUNT messages of
# SIZE bytes (BATCH recipients per request), wait until each was attempted
# once, report RSS; restart, report the time until the listener is up (the
# spool's meta records re-queued) and RSS once each message was attempted
# again. Release build, loopback, everything in a temporary directory that
# is removed at the end.
#
#   bench/backlog.sh                               # 200,000 messages of 2 KB
#   COUNT=2000 SIZE=500000 BATCH=10 bench/backlog.sh  # 2,000 of 500 KB
#
# Delivery is SMTP through an egress pool no handler defines: every attempt
# fails before any DNS lookup or connection and is retried in an hour.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
COUNT=${COUNT:-200000}
SIZE=${SIZE:-2048}
BATCH=${BATCH:-100}
PY=/usr/bin/python3

cargo build --release -q -p nephele

work=$(mktemp -d)
pid=
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/policy.lua" <<LUA
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '$work/spool/data' }
  kumo.define_spool { name = 'meta', path = '$work/spool/meta' }
  kumo.start_http_listener { listen = '127.0.0.1:0' }
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {
    protocol = { smtp = {} }, egress_pool = 'undefined', retry_interval = '1 hour',
  }
end)
LUA

# Milliseconds since $1 (a `date +%s%N`).
ms_since() {
    echo $(( ($(date +%s%N) - $1) / 1000000 ))
}

# Start the daemon; sets pid and addr, and started_ns (when it was spawned).
start() {
    started_ns=$(date +%s%N)
    : >"$work/nephele.log"
    NEPHELE_LOG=info ./target/release/nephele --policy "$work/policy.lua" 2>"$work/nephele.log" &
    pid=$!
    addr=
    while [[ -z $addr ]]; do
        addr=$(sed -n 's/.*http listener on \([0-9.:]*\).*/\1/p' "$work/nephele.log" | head -n1)
        kill -0 "$pid" 2>/dev/null || { cat "$work/nephele.log" >&2; exit 1; }
        [[ -n $addr ]] || sleep 0.05
    done
}

rss_mib() {
    echo $(( $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") / 1024 ))
}

# Wait until total_messages_transfail reaches $1 (each message attempted).
wait_attempted() {
    "$PY" - "$addr" "$1" <<'PY'
import json, sys, time, urllib.request
addr, want = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 1800
while time.time() < deadline:
    families = json.load(urllib.request.urlopen(f"http://{addr}/metrics.json"))
    samples = families.get("total_messages_transfail", {}).get("samples", [])
    if sum(s["value"] for s in samples) >= want:
        sys.exit(0)
    time.sleep(0.5)
sys.exit("not every message was attempted in time")
PY
}

start
echo "nephele on $addr: injecting $COUNT messages of $SIZE bytes, $BATCH per request"
injected_at=$(date +%s%N)
"$PY" - "$addr" "$COUNT" "$SIZE" "$BATCH" <<'PY'
import http.client, json, sys
addr, count, size, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
host, port = addr.rsplit(":", 1)
header = "From: bench@example.com\r\nSubject: backlog\r\n\r\n"
content = header + "x" * max(0, size - len(header))
conn = http.client.HTTPConnection(host, int(port), timeout=120)
sent = 0
while sent < count:
    n = min(batch, count - sent)
    body = json.dumps({"envelope_sender": "bench@example.com",
                       "recipients": [{"email": f"r{sent + i}@example.com"} for i in range(n)],
                       "content": content})
    conn.request("POST", "/api/inject/v1", body, {"Content-Type": "application/json"})
    reply = conn.getresponse()
    answer = reply.read()
    if reply.status != 200 or json.loads(answer)["success_count"] != n:
        sys.exit(f"injection failed: {reply.status} {answer[:200]!r}")
    sent += n
PY
echo "injected in $(ms_since "$injected_at") ms"
wait_attempted "$COUNT"
echo "queued, each attempted once: RSS $(rss_mib) MiB; spool on disk: $(du -sh "$work/spool" | cut -f1)"

kill -TERM "$pid"
wait "$pid" || true
start
echo "restart: listening after $(ms_since "$started_ns") ms ($(grep -o 'messages=[0-9]*' "$work/nephele.log" | head -n1) re-queued); RSS $(rss_mib) MiB"
wait_attempted "$COUNT"
echo "after the restart, each attempted again: RSS $(rss_mib) MiB"
