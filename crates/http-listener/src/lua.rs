//! The Lua side of `start_http_listener { ... }`, shared by both binaries
//! (`proxy.start_http_listener` in proxy-server, `kumo.start_http_listener`
//! in nephele).

use crate::params::HttpListenerParams;
use mlua::{Function, Lua, Value};
use std::sync::Arc;

/// Receives each validated listener request (e.g. pushes it on a list that
/// is open only while the init event runs).
pub type HttpListenerSink = Arc<dyn Fn(HttpListenerParams) -> mlua::Result<()> + Send + Sync>;

/// Convert a Lua parameter table into validated [`HttpListenerParams`]; an
/// unknown key is an error naming it.
pub fn params_from_lua(lua: &Lua, value: Value) -> mlua::Result<HttpListenerParams> {
    let params: HttpListenerParams = policy::from_lua_params(lua, value)
        .map_err(|err| mlua::Error::RuntimeError(format!("start_http_listener: {err}")))?;
    params
        .validate()
        .map_err(|err| mlua::Error::RuntimeError(format!("start_http_listener: {err:#}")))?;
    Ok(params)
}

/// A Lua function `start_http_listener(PARAMS)` that parses its table and
/// hands the result to `sink`.
pub fn start_http_listener_function(lua: &Lua, sink: HttpListenerSink) -> mlua::Result<Function> {
    lua.create_function(move |lua, value: Value| sink(params_from_lua(lua, value)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    fn run(code: &str) -> (mlua::Result<()>, Vec<HttpListenerParams>) {
        let lua = Lua::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let sink: HttpListenerSink = Arc::new(move |params| {
            sink_seen.lock().push(params);
            Ok(())
        });
        let function = start_http_listener_function(&lua, sink).unwrap();
        lua.globals().set("start_http_listener", function).unwrap();
        let result = lua.load(code).exec();
        let seen = seen.lock().clone();
        (result, seen)
    }

    #[test]
    fn parses_a_lua_table() {
        let (result, seen) = run(
            "start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '10.0.0.0/8', '::1' },
               request_body_limit = 1024, auth_failure_limit = false }",
        );
        result.unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].trusted_hosts.contains("10.1.1.1".parse().unwrap()));
        assert!(seen[0].auth_failure_limit.limit().is_none());
        let (result, seen) = run("start_http_listener {}");
        result.unwrap();
        assert_eq!(seen[0].listen.to_string(), "127.0.0.1:8000");
    }

    #[test]
    fn unknown_keys_are_named() {
        let (result, seen) = run("start_http_listener { listen = '127.0.0.1:0', trusted = {} }");
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("trusted") && err.contains("start_http_listener"),
            "{err}"
        );
        assert!(seen.is_empty());
        let (result, _) = run("start_http_listener { max_connections = 0 }");
        assert!(result.unwrap_err().to_string().contains("max_connections"));
    }
}
