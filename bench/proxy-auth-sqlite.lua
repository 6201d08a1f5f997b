-- Bench policy for compare.sh's `ours-auth-sqlite` config: RFC 1929 logins
-- checked against a SQLite file behind kumo.memoize (the shape of
-- KumoMTA's kumo.memoize example), so repeated logins cost a cache lookup
-- and only the first of each credential reaches SQLite.
--
-- BENCH_AUTH_DB names the database: a table auth(user, pass).
-- BENCH_USE_SPLICE=false relays with user-space copies.
local kumo = require 'kumo'
local proxy = require 'proxy'
local sqlite = require 'sqlite'

local db_path = assert(os.getenv 'BENCH_AUTH_DB', 'set BENCH_AUTH_DB to the SQLite file')

kumo.on('proxy_init', function()
  proxy.start_proxy_listener {
    listen = '127.0.0.1:0',
    require_auth = true,
    -- The bench's echo and discard servers are on loopback.
    prohibited_destinations = {},
    use_splice = os.getenv 'BENCH_USE_SPLICE' ~= 'false',
  }
end)

local function sqlite_auth_check(user, password)
  local db = sqlite.open(db_path)
  local result = db:execute('select user from auth where user=? and pass=?', user, password)
  db:close()
  -- the user name comes back only when the password matched
  return result[1] == user
end

local cached_sqlite_auth_check = kumo.memoize(sqlite_auth_check, {
  name = 'sqlite_auth',
  ttl = '5 minutes',
  capacity = 10000,
})

kumo.on('proxy_server_auth_rfc1929', function(user, password, conn_meta)
  if not password or password == '' then
    return false
  end
  return cached_sqlite_auth_check(user, password)
end)
