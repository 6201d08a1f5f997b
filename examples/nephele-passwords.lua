-- A production-shaped nephele policy: Basic logins are checked against a
-- credential file of argon2id hashes with groups, and only members of the
-- group `injectors` may inject.
--
--   cargo run --release -p nephele -- --policy examples/nephele-passwords.lua
--   curl -u some.one:secret -H 'Content-Type: application/json' \
--     -d '{"envelope_sender":"noreply@example.com","recipients":[{"email":"a@example.com"}],
--          "content":"Subject: hi\r\n\r\nbody\r\n"}' http://127.0.0.1:8000/api/inject/v1
--
-- The file is users.htpasswd next to this policy, or $NEPHELE_CREDENTIALS;
-- everything else lives under $NEPHELE_DIR (default /tmp/nephele). See
-- docs/passwords.md.
local kumo = require 'kumo'

local BASE = os.getenv 'NEPHELE_DIR' or '/tmp/nephele'
local path = os.getenv 'NEPHELE_CREDENTIALS'
  or assert(package.searchpath('users', (package.path:gsub('%.lua', '.htpasswd'))))
local users = kumo.aaa.load_credentials(path)

kumo.on('init', function()
  kumo.define_spool { name = 'data', path = BASE .. '/spool/data' }
  kumo.define_spool { name = 'meta', path = BASE .. '/spool/meta' }
  kumo.configure_local_logs { log_dir = BASE .. '/logs' }
  kumo.start_http_listener {
    listen = os.getenv 'NEPHELE_LISTEN' or '127.0.0.1:8000',
    trusted_hosts = {},
  }
end)

-- `password` is nil for a header without a colon: check() refuses nil and
-- empty passwords itself.
kumo.on('http_server_validate_auth_basic', function(user, password)
  return users:check(user, password, 'HttpBasicAuth')
end)

kumo.on('http_message_generated', function(msg, auth_info)
  local allowed = false
  for _, group in ipairs(auth_info.groups or {}) do
    if group == 'injectors' then
      allowed = true
    end
  end
  if not allowed then
    error('only members of the group injectors may inject')
  end
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { maildir_path = BASE .. '/maildir' },
    retry_interval = '10 seconds',
    max_retry_interval = '5 minutes',
    max_age = '1 day',
  }
end)
