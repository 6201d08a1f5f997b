#!/usr/bin/env bash
# Measure nephele's injection rate: a 1-recipient, 2 KB message POSTed to
# /api/inject/v1 by wrk with 16 connections (CONNECTIONS), for DURATION
# seconds, against a release build. Every acknowledged message is committed
# to the redb spool first (data and meta in two files), then delivered to a
# Maildir. Everything lives in a temporary directory on loopback and is
# removed at the end.
#
#   bench/inject.sh                 # 16 connections, 10 s
#   CONNECTIONS=32 DURATION=20 bench/inject.sh
#   SPOOL_FILES=1 bench/inject.sh   # data and meta in one redb file
#   NEPHELE_BIN=/path/to/nephele bench/inject.sh   # that binary, no build
#   IDEMPOTENCY_KEYS=compare bench/inject.sh   # runs against the same
#                                   # daemon: a warm-up (not compared), then
#                                   # ROUNDS (3) pairs of runs without keys
#                                   # and with a new Idempotency-Key per
#                                   # request, in alternating order; prints
#                                   # the medians and with / without
#                                   # (IDEMPOTENCY_KEYS=1: only with keys)
#   DELIVERY=none bench/inject.sh   # no delivery during the run (the queue
#                                   # is SMTP through an undefined egress
#                                   # pool, failing before any DNS lookup,
#                                   # retried in an hour): injection alone
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
CONNECTIONS=${CONNECTIONS:-16}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
SPOOL_FILES=${SPOOL_FILES:-2}
DELIVERY=${DELIVERY:-maildir}
IDEMPOTENCY_KEYS=${IDEMPOTENCY_KEYS:-0}
case $IDEMPOTENCY_KEYS in 0|1|compare) ;; *) echo "bench/inject.sh: IDEMPOTENCY_KEYS is 0, 1 or compare" >&2; exit 1 ;; esac

command -v wrk >/dev/null || { echo "bench/inject.sh: wrk is required (apt-get install wrk)" >&2; exit 1; }
if [[ -z ${NEPHELE_BIN:-} ]]; then
    cargo build --release -q -p nephele
    NEPHELE_BIN=./target/release/nephele
fi

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

meta_spool=
if [[ $SPOOL_FILES == 2 ]]; then
    meta_spool="kumo.define_spool { name = 'meta', path = '$work/spool/meta' }"
fi
protocol="protocol = { maildir_path = '$work/maildir' }"
if [[ $DELIVERY == none ]]; then
    # An egress pool no handler defines: every attempt fails before any
    # DNS or connection, and is retried in an hour.
    protocol="protocol = { smtp = {} }, egress_pool = 'undefined', retry_interval = '1 hour'"
fi
cat >"$work/policy.lua" <<LUA
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '$work/spool/data' }
  $meta_spool
  kumo.configure_local_logs { log_dir = '$work/logs' }
  kumo.start_http_listener { listen = '127.0.0.1:0' }
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { $protocol }
end)
LUA

NEPHELE_LOG=info "$NEPHELE_BIN" --policy "$work/policy.lua" 2>"$work/nephele.log" &
pid=$!
addr=
for _ in $(seq 600); do
    addr=$(sed -n 's/.*http listener on \([0-9.:]*\).*/\1/p' "$work/nephele.log" | head -n1)
    [[ -n $addr ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/nephele.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $addr ]] || { echo "nephele did not start" >&2; cat "$work/nephele.log" >&2; exit 1; }

echo "nephele on $addr; spool files: $SPOOL_FILES; delivery: $DELIVERY; wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
# One wrk run; KEYS=1 sends an Idempotency-Key per request. Prints the
# acknowledged messages/s as the last line of $work/rate.
run_wrk() {
    local keys="$1" label="$2" ticks_before acknowledged ticks
    echo "--- $label"
    ticks_before=$(cpu_ticks)
    IDEMPOTENCY_KEYS=$keys wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/inject.lua "http://$addr/api/inject/v1" | tee "$work/wrk.out"
    # CPU per message depends less on other load on the machine than the rate.
    acknowledged=$(sed -n 's/^acknowledged: \([0-9]*\).*/\1/p' "$work/wrk.out")
    ticks=$(( $(cpu_ticks) - ticks_before ))
    local cpu_us=0
    if [[ ${acknowledged:-0} -gt 0 ]]; then
        cpu_us=$(( ticks * 1000000 / $(getconf CLK_TCK) / acknowledged ))
        echo "nephele CPU: $cpu_us µs per acknowledged message (delivery included)"
    fi
    echo "$keys $(sed -n 's/^acknowledged: .*messages\/s: \([0-9]*\).*/\1/p' "$work/wrk.out") $cpu_us" >>"$work/rate"
}
case $IDEMPOTENCY_KEYS in
    0) run_wrk 0 "without Idempotency-Key" ;;
    1) run_wrk 1 "with an Idempotency-Key per request" ;;
    compare)
        # A warm-up first (a daemon's first requests pay for growing
        # caches and files), then pairs of runs in alternating order
        # (without, with; with, without; ...) so a spool that grows during
        # the runs favours neither side; medians of each side.
        run_wrk 0 "warm-up without Idempotency-Key (not compared)"
        : >"$work/rate"
        for round in $(seq "${ROUNDS:-3}"); do
            order="0 1"
            (( round % 2 == 0 )) && order="1 0"
            for keys in $order; do
                if [[ $keys == 1 ]]; then
                    run_wrk 1 "round $round: with an Idempotency-Key per request"
                else
                    run_wrk 0 "round $round: without Idempotency-Key"
                fi
            done
        done
        /usr/bin/python3 - "$work/rate" <<'PY'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1]) if line.strip()]
def median(keys, column):
    return statistics.median(int(r[column]) for r in runs if r[0] == keys)
with_rate, without_rate = median("1", 1), median("0", 1)
with_cpu, without_cpu = median("1", 2), median("0", 2)
print(f"with/without Idempotency-Key: median {with_rate:.0f} / {without_rate:.0f} messages/s = {with_rate / without_rate:.2f}x; "
      f"CPU per message {with_cpu:.0f} / {without_cpu:.0f} µs = {with_cpu / without_cpu:.2f}x")
PY
        ;;
esac

kill -TERM "$pid"
wait "$pid" || true
pid=
grep -o 'spool commit stats.*' "$work/nephele.log" || true
echo "delivered to the Maildir: $(find "$work/maildir/new" -type f 2>/dev/null | wc -l)"
