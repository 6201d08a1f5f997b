//! nephele's Lua functions (`kumo.define_spool`, `kumo.configure_local_logs`,
//! `kumo.start_http_listener`, `kumo.make_queue_config`, and the
//! `kumo.make_egress_*` functions of [`crate::smtp::egress`]) and its events.

use crate::inject::limits::InjectionLimits;
use crate::queue_config::{self, LuaQueueConfig};
use aaa::AuthInfo;
use http_listener::{HttpListenerParams, HttpListenerSink};
use message::LuaMessage;
use mlua::{Lua, Value};
use policy::{deserialize_optional_duration, EventDecl, ModuleRegistrar, SerdeArg};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `init()`: called once at start to define spools, logs and listeners.
pub const INIT: EventDecl<(), ()> = EventDecl::new("init");

/// `http_message_generated(msg, auth_info)`: called for each injected
/// message before it is spooled; raising an error fails that recipient.
pub const HTTP_MESSAGE_GENERATED: EventDecl<(LuaMessage, SerdeArg<AuthInfo>), ()> =
    EventDecl::new("http_message_generated");

/// The arguments of `get_queue_config`: domain, tenant, campaign,
/// routing_domain.
pub type QueueConfigArgs = (String, Option<String>, Option<String>, Option<String>);

/// `get_queue_config(domain, tenant, campaign, routing_domain)`; `nil` (or
/// no handler) means the defaults.
pub const GET_QUEUE_CONFIG: EventDecl<QueueConfigArgs, Option<LuaQueueConfig>> =
    EventDecl::new("get_queue_config");

/// `kumo.define_spool { name, path }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolParams {
    /// `data` (message bytes) or `meta` (envelope and meta values).
    pub name: String,
    /// The directory holding the spool's database file.
    pub path: PathBuf,
    /// KumoMTA's storage engine name; accepted for compatibility, the
    /// engine is always redb.
    #[serde(default)]
    pub kind: Option<String>,
}

/// `kumo.configure_local_logs { log_dir, max_segment_duration, max_file_size }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLogParams {
    /// Directory for the log segments (created if missing).
    pub log_dir: PathBuf,
    /// Close a segment and start a new one after this long.
    #[serde(default, deserialize_with = "deserialize_optional_duration")]
    pub max_segment_duration: Option<Duration>,
    /// Close a segment and start a new one once it holds this many bytes.
    #[serde(default = "default_max_file_size")]
    pub max_file_size: u64,
}

fn default_max_file_size() -> u64 {
    1024 * 1024 * 1024
}

/// What `init` asked for.
#[derive(Debug, Default)]
pub struct InitRequested {
    /// `kumo.start_http_listener` calls.
    pub http: Vec<HttpListenerParams>,
    /// `kumo.define_spool` calls.
    pub spools: Vec<SpoolParams>,
    /// The last `kumo.configure_local_logs` call.
    pub logs: Option<LocalLogParams>,
    /// The last `kumo.dns.configure_resolver` call.
    pub dns: Option<crate::smtp::mx::ResolverParams>,
    /// The last `kumo.configure_injection` call.
    pub injection: Option<InjectionLimits>,
}

/// Collects what `init` asks for (taken only while `init` runs).
pub type InitRequests = policy::InitRequests<InitRequested>;

fn lua_error(function: &str, err: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::RuntimeError(format!("{function}: {err}"))
}

/// A registrar adding nephele's `kumo.*` functions, `kumo.reject` and the
/// message userdata support to every new Lua state.
pub fn registrar(requests: Arc<InitRequests>) -> ModuleRegistrar {
    Arc::new(move |lua: &Lua| {
        message::register(lua)?;
        let kumo = policy::kumo_module(lua)?;
        kumo.set("define_spool", define_spool(lua, requests.clone())?)?;
        kumo.set(
            "configure_local_logs",
            configure_local_logs(lua, requests.clone())?,
        )?;
        let http_requests = requests.clone();
        let sink: HttpListenerSink = Arc::new(move |params| {
            http_requests.with_open("kumo.start_http_listener", |requested| {
                requested.http.push(params);
                Ok(())
            })
        });
        kumo.set(
            "start_http_listener",
            http_listener::start_http_listener_function(lua, sink)?,
        )?;
        kumo.set(
            "make_queue_config",
            lua.create_function(|lua, value: Value| {
                queue_config::parse(lua, value).map(LuaQueueConfig)
            })?,
        )?;
        kumo.set(
            "configure_injection",
            configure_injection(lua, requests.clone())?,
        )?;
        crate::smtp::egress::register(lua, &kumo)?;
        kumo.set("dns", dns_module(lua, requests.clone())?)?;
        Ok(())
    })
}

/// `kumo.define_spool { name = 'data' | 'meta', path }`, once per name.
fn define_spool(lua: &Lua, requests: Arc<InitRequests>) -> mlua::Result<mlua::Function> {
    lua.create_function(move |lua, value: Value| {
        let params: SpoolParams =
            policy::from_lua_params(lua, value).map_err(|err| lua_error("define_spool", err))?;
        if params.name != "data" && params.name != "meta" {
            return Err(lua_error(
                "define_spool",
                format!("name must be 'data' or 'meta', got {:?}", params.name),
            ));
        }
        requests.with_open("kumo.define_spool", |requested| {
            if requested.spools.iter().any(|s| s.name == params.name) {
                return Err(lua_error(
                    "define_spool",
                    format!("spool {:?} is already defined", params.name),
                ));
            }
            requested.spools.push(params);
            Ok(())
        })
    })
}

/// `kumo.configure_local_logs { log_dir, max_segment_duration, max_file_size }`.
fn configure_local_logs(lua: &Lua, requests: Arc<InitRequests>) -> mlua::Result<mlua::Function> {
    lua.create_function(move |lua, value: Value| {
        let params: LocalLogParams = policy::from_lua_params(lua, value)
            .map_err(|err| lua_error("configure_local_logs", err))?;
        if params.max_file_size == 0 {
            return Err(lua_error(
                "configure_local_logs",
                "max_file_size must be at least 1",
            ));
        }
        requests.with_open("kumo.configure_local_logs", |requested| {
            requested.logs = Some(params);
            Ok(())
        })
    })
}

/// `kumo.configure_injection { max_rendered_size, max_message_size,
/// max_recipients, max_request_bytes, render_timeout, render_threads,
/// max_render_memory }`;
/// the last call wins.
fn configure_injection(lua: &Lua, requests: Arc<InitRequests>) -> mlua::Result<mlua::Function> {
    lua.create_function(move |lua, value: Value| {
        let params: InjectionLimits = policy::from_lua_params(lua, value)
            .map_err(|err| lua_error("configure_injection", err))?;
        params
            .validate()
            .map_err(|err| lua_error("configure_injection", err))?;
        requests.with_open("kumo.configure_injection", |requested| {
            requested.injection = Some(params);
            Ok(())
        })
    })
}

/// `kumo.dns`, with `configure_resolver { name_servers }`.
fn dns_module(lua: &Lua, requests: Arc<InitRequests>) -> mlua::Result<mlua::Table> {
    let dns = lua.create_table()?;
    dns.set(
        "configure_resolver",
        lua.create_function(move |lua, value: Value| {
            let params: crate::smtp::mx::ResolverParams = policy::from_lua_params(lua, value)
                .map_err(|err| lua_error("dns.configure_resolver", err))?;
            requests.with_open("kumo.dns.configure_resolver", |requested| {
                requested.dns = Some(params);
                Ok(())
            })
        })?,
    )?;
    Ok(dns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::PolicyLoader;

    fn run_init(policy: &str) -> (anyhow::Result<()>, InitRequested) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.lua");
        std::fs::write(&path, policy).unwrap();
        let requests = Arc::new(InitRequests::new("init"));
        let loader = PolicyLoader::new(&path, vec![registrar(requests.clone())]);
        let result = loader.load().and_then(|lua| {
            requests.open();
            let result = policy::call_sync(&lua, &INIT, ())
                .map(|_| ())
                .map_err(|err| anyhow::anyhow!("{err}"));
            result
        });
        (result, requests.close())
    }

    #[test]
    fn init_collects_requests() {
        let (result, requested) = run_init(
            r#"local kumo = require 'kumo'
            kumo.on('init', function()
              kumo.define_spool { name = 'data', path = '/tmp/d', kind = 'RocksDB' }
              kumo.define_spool { name = 'meta', path = '/tmp/m' }
              kumo.configure_local_logs { log_dir = '/tmp/logs', max_segment_duration = '5s' }
              kumo.start_http_listener { listen = '127.0.0.1:0' }
              kumo.configure_injection { max_recipients = 10, render_timeout = '5s', max_render_memory = 268435456 }
              local c = kumo.make_queue_config { protocol = { maildir_path = '/tmp/md' } }
              assert(c ~= nil)
            end)"#,
        );
        result.unwrap();
        assert_eq!(requested.spools.len(), 2);
        assert_eq!(requested.http.len(), 1);
        let logs = requested.logs.unwrap();
        assert_eq!(logs.max_segment_duration, Some(Duration::from_secs(5)));
        assert_eq!(logs.max_file_size, 1024 * 1024 * 1024);
        let injection = requested.injection.unwrap();
        assert_eq!(injection.max_recipients, 10);
        assert_eq!(injection.render_timeout, Duration::from_secs(5));
        assert_eq!(injection.max_render_memory, 256 * 1024 * 1024);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (code, needle) in [
            (
                "kumo.define_spool { name = 'data', path = '/x', paht = 1 }",
                "paht",
            ),
            (
                "kumo.define_spool { name = 'other', path = '/x' }",
                "'data' or 'meta'",
            ),
            ("kumo.configure_local_logs { dir = '/x' }", "dir"),
            (
                "kumo.make_queue_config { protocol = { maildir = '/x' } }",
                "maildir",
            ),
            (
                "kumo.start_http_listener { lisen = '127.0.0.1:0' }",
                "lisen",
            ),
            (
                "kumo.configure_injection { max_recipient = 1 }",
                "max_recipient",
            ),
            (
                "kumo.configure_injection { render_threads = 0 }",
                "configure_injection: render_threads must be at least 1",
            ),
        ] {
            let (result, _) = run_init(&format!(
                "local kumo = require 'kumo'\nkumo.on('init', function() {code} end)"
            ));
            let err = format!("{:#}", result.unwrap_err());
            assert!(err.contains(needle), "{code}: {err}");
        }
    }

    #[test]
    fn outside_init_is_refused() {
        let (result, _) = run_init(
            "local kumo = require 'kumo'\nkumo.define_spool { name = 'data', path = '/x' }",
        );
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("only be called from the init event"), "{err}");
    }
}
