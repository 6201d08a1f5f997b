//! The three login back ends of the black-box tests, as Lua modules the
//! proxy's and nephele's test policies load with `require 'login'` and call
//! as `login.check(user, password)` from their login event:
//!
//! - SQLite behind `kumo.memoize`: KumoMTA's `kumo.memoize` page example,
//!   unchanged but for the database path;
//! - Redis: the password of each user in the hash `nephele:users`, looked
//!   up through `kumo.memoize` (keyed on the user only) and compared in Lua;
//! - an HTTP login service: POST the credentials, 200 means yes, the
//!   verdict memoized per (user, password).
//!
//! Both binaries' tests include this file by path.

#![allow(dead_code)]

/// The user every back end knows, and its password.
pub const LOGIN_USER: &str = "scott";
/// The password of [`LOGIN_USER`].
pub const LOGIN_PASSWORD: &str = "tiger-Pw-8812";

/// The SQLite module; the database is `@DIR@/auth.db` (see
/// [`SQLITE_SCHEMA`]).
pub const SQLITE_LOGIN: &str = r#"
local kumo = require 'kumo'
local sqlite = require 'sqlite'

function sqlite_auth_check(user, password)
  local db = sqlite.open '@DIR@/auth.db'
  local result = db:execute(
    'select user from auth where user=? and pass=?',
    user,
    password
  )
  -- if we return the username, it is because the password matched
  return result[1] == user
end

-- This creates a new function called `cached_sqlite_auth_check`
-- that remembers the results for a given set of parameters for up
-- to 5 minutes or up to 100 different sets of parameters
cached_sqlite_auth_check = kumo.memoize(sqlite_auth_check, {
  name = 'sqlite_auth',
  ttl = '5 minutes',
  capacity = 100,
})

return {
  check = function(user, password)
    return cached_sqlite_auth_check(user, password)
  end,
}
"#;

/// SQL creating the `auth` table with [`LOGIN_USER`].
pub fn sqlite_schema() -> String {
    format!(
        "CREATE TABLE auth (user TEXT, pass TEXT); \
         INSERT INTO auth VALUES ('{LOGIN_USER}', '{LOGIN_PASSWORD}');"
    )
}

/// The Redis module for the server at `url`.
pub fn redis_login(url: &str) -> String {
    r#"
local kumo = require 'kumo'
local redis = require 'redis'

local password_of = kumo.memoize(function(user)
  local conn = redis.open { node = '@REDIS@', connect_timeout = '5 seconds', response_timeout = '5 seconds' }
  return conn:query('HGET', 'nephele:users', user)
end, { name = 'redis_users', ttl = '5 minutes', capacity = 1000 })

return {
  check = function(user, password)
    if not password or password == '' then
      return false
    end
    local stored = password_of(user)
    return stored ~= nil and stored == password
  end,
}
"#
    .replace("@REDIS@", url)
}

/// The HTTP module for the login service at `url`.
pub fn http_login(url: &str) -> String {
    r#"
local kumo = require 'kumo'

local client = kumo.http.build_client { timeout = '5 seconds' }

local verify = kumo.memoize(function(user, password)
  local request = client:post '@URL@'
  request:form_url_encoded { user = user, password = password }
  return request:send():status_code() == 200
end, { name = 'http_auth', ttl = '5 minutes', capacity = 1000 })

return {
  check = function(user, password)
    if not password or password == '' then
      return false
    end
    return verify(user, password)
  end,
}
"#
    .replace("@URL@", url)
}
