-- Example proxy-server policy: a SOCKS5 listener on 127.0.0.1:1080 whose
-- RFC 1929 logins are checked against an inline table, returning an
-- AuthInfo with group membership (the seed's expanded example).
--
-- Run:  cargo run --release -p proxy-server -- --proxy-config examples/proxy.lua
-- Use:  curl --socks5 proxyuser:secretpassword@127.0.0.1:1080 https://example.com/
-- Loopback, link-local (cloud metadata) and the proxy's own listeners are
-- not reachable through it: see `prohibited_destinations` in the README.
local kumo = require 'kumo'
local proxy = require 'proxy'

kumo.on('proxy_init', function()
  proxy.start_proxy_listener {
    listen = '127.0.0.1:1080',
    require_auth = true,
    timeout = '60 seconds',
  }
end)

-- This is just an example of how to populate the return value,
-- not a recommended way to handle passwords in production!
local password_database = {
  ['proxyuser'] = {
    password = 'secretpassword',
    groups = { 'proxy-users', 'premium-tier' },
  },
}

kumo.on('proxy_server_auth_rfc1929', function(username, password, conn_meta)
  -- An empty password never matches: refuse it explicitly.
  if not password or password == '' then
    return false
  end
  local entry = password_database[username]
  if not entry then
    return false
  end
  if entry.password ~= password then
    return false
  end
  -- Return an AuthInfo that lists the identity and group membership
  return {
    identities = {
      { identity = username, context = 'ProxyAuthRfc1929' },
    },
    groups = entry.groups,
  }
end)
