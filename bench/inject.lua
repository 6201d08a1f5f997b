-- wrk script: POST a 1-recipient, 2 KB message to /api/inject/v1 and count
-- answers that acknowledged it (200 with success_count 1).
local line = "The quick brown fox jumps over the lazy dog, again and again.\r\n" -- 64 bytes
local header = "From: bench@example.com\r\nTo: rcpt@example.com\r\nSubject: bench\r\n\r\n"
local body = header .. string.rep(line, math.floor((2048 - #header) / #line))
body = body .. string.rep("x", 2048 - #body)
assert(#body == 2048)
local json_body = body:gsub("\r", "\\r"):gsub("\n", "\\n")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"envelope_sender":"bench@example.com","recipients":[{"email":"rcpt@example.com"}],'
  .. '"content":"' .. json_body .. '"}'

local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

-- IDEMPOTENCY_KEYS=1: every request carries its own Idempotency-Key
-- (unique per run, thread and request), so each is a first use.
local with_keys = os.getenv("IDEMPOTENCY_KEYS") == "1"
local run_id = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
local sent = 0

function init(args)
  ok = 0
  failed = 0
end

-- Both ways every request is made by `request()` from the same template
-- with a per-request value: wrk then calls Lua and concatenates a request
-- per request on the cores the server uses, so both sides must pay the
-- same. With keys the value is the Idempotency-Key header; without, the
-- same bytes go in a header nephele ignores.
local head, tail
function request()
  if not head then
    wrk.headers[with_keys and "Idempotency-Key" or "X-Bench-Nonce"] = "@KEY@"
    local template = wrk.format()
    local at = template:find("@KEY@", 1, true)
    head, tail = template:sub(1, at - 1), template:sub(at + 5)
  end
  sent = sent + 1
  return head .. run_id .. "-" .. thread_id .. "-" .. sent .. tail
end

function response(status, headers, reply)
  if status == 200 and reply:find('"success_count":1', 1, true) then
    ok = ok + 1
  else
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local total_ok, total_failed = 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_failed = total_failed + thread:get("failed")
  end
  local seconds = summary.duration / 1e6
  io.write(string.format("acknowledged: %d, failed: %d, messages/s: %.0f\n",
    total_ok, total_failed, total_ok / seconds))
end
