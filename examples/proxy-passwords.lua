-- A production-shaped proxy-server policy: logins are checked against a
-- credential file of argon2id hashes (never clear passwords), with groups.
--
-- Run:  cargo run --release -p proxy-server -- --proxy-config examples/proxy-passwords.lua
-- Use:  curl --socks5 proxyuser:secretpassword@127.0.0.1:1080 https://example.com/
-- (loopback and link-local destinations stay prohibited, the default)
--
-- The file is users.htpasswd next to this policy, or $NEPHELE_CREDENTIALS.
-- Edit it while the proxy runs: the change is taken within 5 seconds (a
-- broken edit is logged with its line number and the old users stay).
-- See docs/passwords.md.
local kumo = require 'kumo'
local proxy = require 'proxy'

local path = os.getenv 'NEPHELE_CREDENTIALS'
  or assert(package.searchpath('users', (package.path:gsub('%.lua', '.htpasswd'))))
-- One parsed copy for the whole process, however many Lua states load it.
local users = kumo.aaa.load_credentials(path)

kumo.on('proxy_init', function()
  proxy.start_proxy_listener {
    listen = os.getenv 'PROXY_LISTEN' or '127.0.0.1:1080',
    require_auth = true,
    -- A verified login is remembered this long (salted hash keys, never the
    -- password), so the argon2id check runs once per credential per minute.
    auth_cache_ttl = '60 seconds',
  }
end)

kumo.on('proxy_server_auth_rfc1929', function(username, password, conn_meta)
  -- The AuthInfo (identity + the file's groups) or false. A wrong password
  -- and an unknown user cost the same time.
  return users:check(username, password, 'ProxyAuthRfc1929')
end)
