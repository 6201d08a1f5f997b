-- An example nephele policy: Basic logins decided here, injection allowed
-- only for one identity, Maildir delivery.
--
--   cargo run --release -p nephele -- --policy examples/nephele.lua
--
-- Everything lives under $NEPHELE_DIR (default /tmp/nephele). Run by
-- contrib/systemd/nephele.service, the spool and Maildir go to the unit's
-- StateDirectory and the logs to its LogsDirectory, which systemd passes as
-- STATE_DIRECTORY and LOGS_DIRECTORY.
local kumo = require 'kumo'

local BASE = os.getenv 'STATE_DIRECTORY' or os.getenv 'NEPHELE_DIR' or '/tmp/nephele'
local LOGS = os.getenv 'LOGS_DIRECTORY' or BASE .. '/logs'

kumo.on('init', function()
  kumo.define_spool { name = 'data', path = BASE .. '/spool/data' }
  kumo.define_spool { name = 'meta', path = BASE .. '/spool/meta' }
  kumo.configure_local_logs {
    log_dir = LOGS,
    max_segment_duration = '10 seconds',
  }
  kumo.start_http_listener {
    listen = os.getenv 'NEPHELE_LISTEN' or '127.0.0.1:8000',
    trusted_hosts = { '127.0.0.1', '::1' },
  }
end)

-- Basic auth: a tiny inline password database. A header with a user name
-- and no password gives password == nil: refuse it explicitly, or an unknown
-- user would pass (nil == nil).
kumo.on('http_server_validate_auth_basic', function(user, password)
  local password_database = {
    ['scott'] = 'tiger',
    ['some.one'] = 'secret',
  }
  if not password or password == '' then
    return false
  end
  return password_database[user] == password
end)

-- The seed's example: only one identity may inject. http_auth is the Basic
-- user name, or the peer address when a trusted host sent no credentials.
kumo.on('http_message_generated', function(msg, auth_info)
  local auth = msg:get_meta 'http_auth'
  if auth ~= 'some.one' then
    error 'only some.one is allowed to inject'
  end
  msg:set_meta('tenant', 'example')
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { maildir_path = BASE .. '/maildir' },
    retry_interval = '10 seconds',
    max_retry_interval = '5 minutes',
    max_age = '1 day',
  }
end)
