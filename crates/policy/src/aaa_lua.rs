//! The `kumo.aaa` Lua module: ACL maps and lists as userdata, resources,
//! `query_resource_access`, `set_fall_back_to_acl_map` and
//! `configure_acct_log`. The data model is the `aaa` crate's; this file is
//! only the conversion between it and Lua.

use crate::aaa_context::{AaaContext, GET_ACL_DEFINITION};
use crate::{deserialize_duration, from_lua_params, kumo_module, KeySource, ModuleRegistrar};
use aaa::{
    AccessControlList, AccessControlRule, AccountingConfig, AclMap, AuthInfo, Resource,
    DEFAULT_COMPRESSION_LEVEL, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_SEGMENT_DURATION,
};
use mlua::{
    AnyUserData, FromLua, Lua, LuaSerdeExt, SerializeOptions, Table, UserData, UserDataMethods,
    Value,
};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// An ACL as Lua sees it (`make_access_control_list`, `map:get(name)`).
#[derive(Clone)]
pub struct AclObject(pub Arc<AccessControlList>);

impl UserData for AclObject {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("rules", |lua, this, ()| lua.to_value(this.0.rules()));
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("AccessControlList({} rules)", this.0.rules().len()))
        });
    }
}

/// An ACL map loaded by `load_acl_map`.
pub struct AclMapObject(pub Arc<AclMap>);

impl UserData for AclMapObject {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |_, this, name: String| {
            Ok(this
                .0
                .get(&name)
                .map(|acl| AclObject(Arc::new(acl.clone()))))
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("AclMap({} resources)", this.0.len()))
        });
    }
}

/// A resource made by `make_http_url_resource`.
pub struct ResourceObject(pub Resource);

impl UserData for ResourceObject {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("names", |_, this, ()| Ok(this.0.names().to_vec()));
        methods.add_meta_method("__tostring", |_, this, ()| Ok(this.0.target().to_owned()));
    }
}

/// What `get_acl_definition` returned: an ACL (userdata, or a list of rule
/// tables), or nil (`None`: fall back to the map).
pub struct AclDefinition(pub Option<Arc<AccessControlList>>);

impl FromLua for AclDefinition {
    fn from_lua(value: Value, lua: &Lua) -> mlua::Result<Self> {
        match value {
            Value::Nil => Ok(AclDefinition(None)),
            Value::UserData(ud) => Ok(AclDefinition(Some(acl_from_userdata(&ud)?))),
            Value::Table(_) => {
                let rules: Vec<AccessControlRule> = from_lua_params(lua, value)?;
                Ok(AclDefinition(Some(Arc::new(AccessControlList::new(rules)))))
            }
            other => Err(mlua::Error::RuntimeError(format!(
                "get_acl_definition must return an ACL or nil, got {}",
                other.type_name()
            ))),
        }
    }
}

fn acl_from_userdata(ud: &AnyUserData) -> mlua::Result<Arc<AccessControlList>> {
    ud.borrow::<AclObject>()
        .map(|acl| acl.0.clone())
        .map_err(|_| {
            mlua::Error::RuntimeError(
                "expected an ACL from kumo.aaa.make_access_control_list or map:get".into(),
            )
        })
}

/// `configure_acct_log { ... }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcctLogParams {
    /// Directory for the segments.
    log_dir: PathBuf,
    #[serde(default = "yes")]
    log_authn_ok: bool,
    #[serde(default = "yes")]
    log_authn_fail: bool,
    #[serde(default = "yes")]
    log_authz_allow: bool,
    #[serde(default = "yes")]
    log_authz_deny: bool,
    /// One record per proxy tunnel (`"type": "Session"`).
    #[serde(default = "yes")]
    log_sessions: bool,
    /// Uncompressed bytes per segment.
    #[serde(default = "default_max_file_size")]
    max_file_size: u64,
    /// A segment is finished this long after it opened; `0` means only
    /// `max_file_size` and shutdown finish it.
    #[serde(
        default = "default_max_segment_duration",
        deserialize_with = "deserialize_duration"
    )]
    max_segment_duration: Duration,
    /// zstd level, 1..=22.
    #[serde(default = "default_compression_level")]
    compression_level: i32,
}

fn yes() -> bool {
    true
}
fn default_max_file_size() -> u64 {
    DEFAULT_MAX_FILE_SIZE
}
fn default_max_segment_duration() -> Duration {
    DEFAULT_MAX_SEGMENT_DURATION
}
fn default_compression_level() -> i32 {
    DEFAULT_COMPRESSION_LEVEL
}

impl AcctLogParams {
    fn into_config(self) -> Result<AccountingConfig, String> {
        if !(1..=22).contains(&self.compression_level) {
            return Err(format!(
                "compression_level {} is outside 1..=22",
                self.compression_level
            ));
        }
        if self.max_file_size == 0 {
            return Err("max_file_size must be greater than 0".into());
        }
        Ok(AccountingConfig {
            log_dir: self.log_dir,
            log_authn_ok: self.log_authn_ok,
            log_authn_fail: self.log_authn_fail,
            log_authz_allow: self.log_authz_allow,
            log_authz_deny: self.log_authz_deny,
            log_sessions: self.log_sessions,
            max_file_size: self.max_file_size,
            max_segment_duration: Some(self.max_segment_duration).filter(|d| !d.is_zero()),
            compression_level: self.compression_level,
        })
    }
}

/// The path of an HTTP URL (`http://h:p/a/b?q` → `/a/b`); a bare path is
/// taken as it is, without query or fragment.
fn url_path(url: &str) -> &str {
    let path = match url.find("://") {
        Some(scheme_end) => {
            let after = &url[scheme_end + 3..];
            after.find('/').map_or("/", |slash| &after[slash..])
        }
        None => url,
    };
    path.split(['?', '#']).next().unwrap_or("/")
}

fn lua_err(function: &str, message: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::RuntimeError(format!("kumo.aaa.{function}: {message}"))
}

fn resource_from_lua(value: Value) -> mlua::Result<Resource> {
    match value {
        Value::UserData(ud) => ud
            .borrow::<ResourceObject>()
            .map(|r| r.0.clone())
            .map_err(|_| lua_err("query_resource_access", "expected a resource object")),
        Value::String(name) => {
            let name = name.to_str()?.to_owned();
            if name.is_empty() {
                return Err(lua_err("query_resource_access", "empty resource name"));
            }
            Ok(Resource::from_names(vec![name]))
        }
        other => Err(lua_err(
            "query_resource_access",
            format!(
                "expected a resource or a resource name, got {}",
                other.type_name()
            ),
        )),
    }
}

/// A registrar installing `kumo.aaa` backed by `ctx` (also reachable as
/// `require 'kumo.aaa'`) and recording `ctx` in each state so the servers
/// find it with [`AaaContext::of`].
pub fn aaa_registrar(ctx: Arc<AaaContext>) -> ModuleRegistrar {
    Arc::new(move |lua: &Lua| {
        lua.set_app_data(ctx.clone());
        let module = build_module(lua, ctx.clone())?;
        kumo_module(lua)?.set("aaa", &module)?;
        let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
        loaded.set("kumo.aaa", module)
    })
}

/// The `kumo.aaa` table: one entry per function below.
fn build_module(lua: &Lua, ctx: Arc<AaaContext>) -> mlua::Result<Table> {
    let module = lua.create_table()?;
    crate::aaa_password_lua::register(lua, &module, &ctx)?;
    module.set("load_acl_map", lua.create_function(load_acl_map)?)?;
    module.set(
        "make_access_control_list",
        lua.create_function(make_access_control_list)?,
    )?;
    register_cache_ttls(lua, &module, &ctx)?;
    let fall_back_ctx = ctx.clone();
    module.set(
        "set_fall_back_to_acl_map",
        lua.create_function(move |_, enabled: bool| {
            fall_back_ctx.set_fall_back_to_acl_map(enabled);
            Ok(())
        })?,
    )?;
    module.set(
        "make_http_url_resource",
        lua.create_function(make_http_url_resource)?,
    )?;
    let query_ctx = ctx.clone();
    module.set(
        "query_resource_access",
        lua.create_function(move |lua, args| query_resource_access(lua, &query_ctx, args))?,
    )?;
    module.set(
        "configure_acct_log",
        lua.create_function(move |lua, params| configure_acct_log(lua, &ctx, params))?,
    )?;
    Ok(module)
}

/// `kumo.aaa.load_acl_map(KEYSOURCE)`: a TOML ACL map from a file or
/// `{ key_data = ... }`.
fn load_acl_map(lua: &Lua, source: Value) -> mlua::Result<AclMapObject> {
    let source: KeySource =
        from_lua_params(lua, source).map_err(|err| lua_err("load_acl_map", err))?;
    let bytes = source
        .load()
        .map_err(|err| lua_err("load_acl_map", format!("{err:#}")))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        lua_err(
            "load_acl_map",
            format!("{} is not UTF-8", source.describe()),
        )
    })?;
    let map = AclMap::from_toml(&text)
        .map_err(|err| lua_err("load_acl_map", format!("{}: {err}", source.describe())))?;
    Ok(AclMapObject(Arc::new(map)))
}

/// `kumo.aaa.make_access_control_list { rule, ... }`.
fn make_access_control_list(lua: &Lua, rules: Value) -> mlua::Result<AclObject> {
    let rules: Vec<AccessControlRule> =
        from_lua_params(lua, rules).map_err(|err| lua_err("make_access_control_list", err))?;
    Ok(AclObject(Arc::new(AccessControlList::new(rules))))
}

/// `kumo.aaa.make_http_url_resource(LOCAL_ADDR, URL)`.
fn make_http_url_resource(_: &Lua, (local, url): (String, String)) -> mlua::Result<ResourceObject> {
    let local: SocketAddr = local.parse().map_err(|_| {
        lua_err(
            "make_http_url_resource",
            format!("{local:?} is not an ip:port address"),
        )
    })?;
    Ok(ResourceObject(Resource::http_listener(
        local,
        url_path(&url),
    )))
}

/// `kumo.aaa.query_resource_access(RESOURCE, AUTH_INFO, PRIVILEGE)`: the
/// decision the servers would make, with this state's
/// `get_acl_definition` asked for each name.
fn query_resource_access(
    lua: &Lua,
    ctx: &AaaContext,
    (resource, auth, privilege): (Value, Value, String),
) -> mlua::Result<Value> {
    let resource = resource_from_lua(resource)?;
    let auth: AuthInfo =
        from_lua_params(lua, auth).map_err(|err| lua_err("query_resource_access", err))?;
    let handler = crate::kumo_module::handler(lua, GET_ACL_DEFINITION.name)?;
    let mut definitions = Vec::with_capacity(resource.names().len());
    for name in resource.names() {
        definitions.push(match &handler {
            Some(handler) => handler.call::<AclDefinition>(name.clone())?.0,
            None => None,
        });
    }
    let decision = ctx.decide(
        AclMap::default_map(),
        &definitions,
        &resource,
        &auth,
        &privilege,
    );
    lua.to_value_with(
        &decision,
        SerializeOptions::new()
            .serialize_none_to_null(false)
            .serialize_unit_to_null(false),
    )
}

/// `kumo.aaa.configure_acct_log { ... }`: start (or keep) the accounting
/// log; an error names the directory.
fn configure_acct_log(lua: &Lua, ctx: &AaaContext, params: Value) -> mlua::Result<()> {
    let params: AcctLogParams =
        from_lua_params(lua, params).map_err(|err| lua_err("configure_acct_log", err))?;
    let config = params
        .into_config()
        .map_err(|err| lua_err("configure_acct_log", err))?;
    // The error names the directory.
    ctx.configure_accounting(config)
        .map_err(|err| lua_err("configure_acct_log", err))
}

#[cfg(test)]
#[path = "aaa_lua_tests.rs"]
mod tests;

/// `kumo.aaa.set_acl_cache_ttl(duration)` and
/// `kumo.aaa.set_check_cache_ttl(duration)`.
fn register_cache_ttls(lua: &Lua, module: &Table, ctx: &Arc<AaaContext>) -> mlua::Result<()> {
    let definitions = ctx.clone();
    module.set(
        "set_acl_cache_ttl",
        lua.create_function(move |_, ttl: Value| {
            definitions.set_definition_ttl(ttl_param("set_acl_cache_ttl", ttl)?);
            Ok(())
        })?,
    )?;
    let decisions = ctx.clone();
    module.set(
        "set_check_cache_ttl",
        lua.create_function(move |_, ttl: Value| {
            decisions.set_decision_ttl(ttl_param("set_check_cache_ttl", ttl)?);
            Ok(())
        })?,
    )
}

/// A duration argument: text (`'5 minutes'`) or seconds.
fn ttl_param(function: &str, value: Value) -> mlua::Result<Duration> {
    let parsed = match value {
        Value::String(text) => crate::parse_duration(&text.to_str()?),
        Value::Integer(seconds) => u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| format!("{seconds} is not a duration")),
        Value::Number(seconds) => crate::parse_duration(&seconds.to_string()),
        other => Err(format!("expected a duration, got {}", other.type_name())),
    };
    parsed.map_err(|err| lua_err(function, err))
}
