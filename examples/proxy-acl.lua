-- Example proxy-server policy with per-user authorization (kumo.aaa):
--   * users in group `premium-tier` may BIND source address 127.0.0.2,
--     everybody else only 127.0.0.1 (examples/proxy-acl.toml);
--   * nobody may CONNECT to port 25 of 127.0.0.64/26 (decided below);
--   * everything else is allowed, as without an ACL.
-- Every login and every CONNECT/BIND decision is written to the accounting
-- log (zstd-compressed JSON lines) under /tmp/proxy-acl-acct.
--
-- Run:  cargo run --release -p proxy-server -- --proxy-config examples/proxy-acl.lua
-- Use:  curl --socks5 gold:gold-password@127.0.0.1:1080 http://192.0.2.10:8000/
-- (the example's ranges are on 127.x for its tests, which also lift the
-- default prohibited_destinations; see the README)
local kumo = require 'kumo'
local proxy = require 'proxy'

-- The ACL file sits next to this policy, whose directory heads
-- package.path: look for `proxy-acl.toml` where `proxy-acl.lua` would be.
local acl_path =
  assert(package.searchpath('proxy-acl', (package.path:gsub('%.lua', '.toml'))))
local acl_map = kumo.aaa.load_acl_map(acl_path)

kumo.aaa.configure_acct_log {
  log_dir = '/tmp/proxy-acl-acct',
  max_segment_duration = '1 minute',
}

kumo.on('proxy_init', function()
  proxy.start_proxy_listener {
    listen = '127.0.0.1:1080',
    require_auth = true,
  }
end)

-- Not a recommended way to keep passwords: an inline table for the example.
local users = {
  gold = { password = 'gold-password', groups = { 'premium-tier' } },
  basic = { password = 'basic-password', groups = {} },
}

kumo.on('proxy_server_auth_rfc1929', function(username, password, conn_meta)
  if not password or password == '' then
    return false
  end
  local user = users[username]
  if not user or user.password ~= password then
    return false
  end
  return {
    identities = { { identity = username, context = 'ProxyAuthRfc1929' } },
    groups = user.groups,
  }
end)

local no_smtp = kumo.aaa.make_access_control_list {
  { criteria = { Identity = { Any = {} } }, privilege = 'connect', access = 'Deny' },
}

-- Is `a.b.c.d` inside 127.0.0.64/26 (127.0.0.64 .. 127.0.0.127)?
local function in_smtp_block(a, b, c, d)
  return a == 127 and b == 0 and c == 0 and d >= 64 and d <= 127
end

-- Called once per resource name (then cached for a short while): return an
-- ACL for the name, or nil to use the default map's entry.
kumo.on('get_acl_definition', function(resource)
  local a, b, c, d, port =
    resource:match('/destination/(%d+)%.(%d+)%.(%d+)%.(%d+):(%d+)$')
  if port and tonumber(port) == 25
    and in_smtp_block(tonumber(a), tonumber(b), tonumber(c), tonumber(d)) then
    return no_smtp
  end
  return acl_map:get(resource)
end)
