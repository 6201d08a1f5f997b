//! Policy texts for the tests. `@DIR@` in a policy is replaced by the test's
//! private temporary directory, so a handler can write what it saw to a file
//! the test reads back (handlers may run in different Lua states of a pool,
//! so a file, not a Lua global, is the shared record).

/// The user of the seed's inline password database.
pub const USER: &str = "proxyuser";
/// The password of [`USER`].
pub const PASSWORD: &str = "secretpassword";

/// The handling step bound used when a test does not choose one: short
/// enough that a proxy stuck on a step fails the test quickly.
pub const DEFAULT_STEP_TIMEOUT: &str = "'5 seconds'";

/// Handler body accepting exactly `USER`/`PASSWORD`, refusing empty
/// passwords first as the seed's example does.
pub const SEED_HANDLER: &str = r#"
  local password_database = { ['proxyuser'] = 'secretpassword' }
  if password == '' then
    return false
  end
  return password_database[username] == password
"#;

/// Lua that appends one line per call to `@DIR@/calls.txt`:
/// `#username #password peer_address local_address`.
pub const RECORD_CALL: &str = r#"
  do
    local f = assert(io.open('@DIR@/calls.txt', 'a'))
    f:write(#username, ' ', #password, ' ', tostring(conn_meta.peer_address),
      ' ', tostring(conn_meta.local_address), '\n')
    f:close()
  end
"#;

/// A policy that starts one listener on `127.0.0.1:0` with the extra
/// `listener_keys` (Lua table fields, e.g. `"require_auth = true"`) and, if
/// given, a `proxy_server_auth_rfc1929` handler with body `auth_body`.
pub fn policy(listener_keys: &str, auth_body: Option<&str>) -> String {
    policy_on("127.0.0.1:0", listener_keys, auth_body)
}

/// Like [`policy`] but listening on `listen`.
pub fn policy_on(listen: &str, listener_keys: &str, auth_body: Option<&str>) -> String {
    let mut keys = format!("listen = '{listen}'");
    if !listener_keys.contains("timeout =") {
        keys.push_str(&format!(", timeout = {DEFAULT_STEP_TIMEOUT}"));
    }
    // The tests' destinations listen on loopback, which is prohibited by
    // default; tests of that default name the key themselves.
    if !listener_keys.contains("prohibited_destinations") {
        keys.push_str(", prohibited_destinations = {}");
    }
    if !listener_keys.trim().is_empty() {
        keys.push_str(", ");
        keys.push_str(listener_keys);
    }
    let mut text = format!(
        "local kumo = require 'kumo'\n\
         local proxy = require 'proxy'\n\
         kumo.on('proxy_init', function()\n  \
           proxy.start_proxy_listener {{ {keys} }}\n\
         end)\n"
    );
    if let Some(body) = auth_body {
        text.push_str(&format!(
            "kumo.on('proxy_server_auth_rfc1929', function(username, password, conn_meta)\n\
             {body}\n\
             end)\n"
        ));
    }
    text
}

/// The seed's policy: no-auth allowed unless `listener_keys` says otherwise,
/// `USER`/`PASSWORD` accepted, every call recorded in `@DIR@/calls.txt`.
pub fn seed_policy(listener_keys: &str) -> String {
    policy(
        listener_keys,
        Some(&format!("{RECORD_CALL}\n{SEED_HANDLER}")),
    )
}

/// One recorded call of the auth handler (see [`RECORD_CALL`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    pub username_len: usize,
    pub password_len: usize,
    pub peer_address: String,
    pub local_address: String,
}

/// Read the calls recorded by [`RECORD_CALL`] in `dir` (none if no file).
pub fn recorded_calls(dir: &std::path::Path) -> Vec<RecordedCall> {
    let Ok(text) = std::fs::read_to_string(dir.join("calls.txt")) else {
        return Vec::new();
    };
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields.len(), 4, "malformed record line {line:?}");
            RecordedCall {
                username_len: fields[0].parse().expect("username length"),
                password_len: fields[1].parse().expect("password length"),
                peer_address: fields[2].to_string(),
                local_address: fields[3].to_string(),
            }
        })
        .collect()
}

/// `text` (a policy from [`policy`] or [`seed_policy`]) with an HTTP
/// listener on `127.0.0.1:0` started after the proxy listener. Its default
/// `trusted_hosts` include 127.0.0.1, so `/metrics` is open to the tests.
pub fn with_http_listener(text: &str) -> String {
    const END_OF_INIT: &str = "\nend)\n";
    assert!(
        text.contains(END_OF_INIT),
        "not a policy from policy(): {text}"
    );
    text.replacen(
        END_OF_INIT,
        "\n  proxy.start_http_listener { listen = '127.0.0.1:0' }\nend)\n",
        1,
    )
}
