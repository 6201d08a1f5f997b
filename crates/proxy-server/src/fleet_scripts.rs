//! The Lua scripts of the fleet state, each run atomically by Redis with
//! `EVAL`. Time is Redis's (`TIME`, in milliseconds), never a node's.

/// KEYS: failures (sorted set of failure times), block flag, block index.
/// ARGV: max_failures, period ms, block_for ms, client, unique member.
/// Returns 1 when this failure blocks the client. A sliding window, as the
/// local limiter counts.
pub const RECORD_FAILURE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]) - 1)
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('ZCARD', KEYS[1]) <= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[4])
return 1
";

/// KEYS: block flag, block index, failures. ARGV: client.
/// Returns how many block flags were removed (0 or 1).
pub const UNBLOCK: &str = r"
local removed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return removed
";

/// KEYS: block index. Returns up to 10000 `{client, remaining ms}` pairs.
pub const LIST_BLOCKED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local entries = redis.call('ZRANGE', KEYS[1], 0, 9999, 'WITHSCORES')
local out = {}
for i = 1, #entries, 2 do
  out[#out + 1] = { entries[i], math.floor(tonumber(entries[i + 1]) - now) }
end
return out
";

/// KEYS: the identity's leases (sorted set scored by expiry).
/// ARGV: member, max_sessions, lease ms. Returns 1 when granted.
pub const ACQUIRE_SESSION: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// KEYS: the identity's leases. ARGV: lease ms, members... Re-adds members
/// that expired while Redis was unreachable: they are live tunnels.
pub const RENEW_SESSIONS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
";

/// KEYS: the identity's rate window (hash: window number, count).
/// ARGV: count allowed, period ms. Returns 1 when this CONNECT fits. Fixed
/// windows aligned on multiples of the period since the Unix epoch.
pub const CONNECT_RATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = math.floor(now / tonumber(ARGV[2]))
if tonumber(redis.call('HGET', KEYS[1], 'w') or -1) ~= window then
  redis.call('HSET', KEYS[1], 'w', window, 'n', 0)
end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if n > tonumber(ARGV[1]) then return 0 end
return 1
";
