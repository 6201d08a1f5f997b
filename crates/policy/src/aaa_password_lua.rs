//! The password part of `kumo.aaa`: `verify_password`, `hash_password`
//! and `load_credentials` (an object whose `:check(user, password)`
//! returns an AuthInfo or `false`). The work is the `aaa` crate's and
//! [`crate::CredentialFiles`]'; hashing runs through [`crate::cpu_bound`].

use crate::credential_files::CredentialFile;
use crate::DEFAULT_CREDENTIALS_CHECK_INTERVAL;
use crate::{cpu_bound, deserialize_duration, from_lua_params, AaaContext, KeySource};
use aaa::{AuthInfo, HashParams, Identity, IdentityContext, VerifyOptions};
use mlua::{Lua, LuaSerdeExt, Table, UserData, UserDataMethods, Value};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

fn lua_err(function: &str, message: impl std::fmt::Display) -> mlua::Error {
    let qualified = match function {
        // A method of the object load_credentials returns.
        "check" => "credentials:check".to_owned(),
        function => format!("kumo.aaa.{function}"),
    };
    mlua::Error::RuntimeError(format!("{qualified}: {message}"))
}

/// A Lua string argument as bytes (passwords may hold any byte).
fn bytes_arg(function: &str, what: &str, value: &Value) -> mlua::Result<Vec<u8>> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        other => Err(lua_err(
            function,
            format!("{what} must be a string, got {}", other.type_name()),
        )),
    }
}

/// `verify_password(hash, password, { allow_weak = ... })`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyParams {
    #[serde(default)]
    allow_weak: bool,
}

/// `load_credentials(source, { allow_weak = ..., check_interval = ... })`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadParams {
    #[serde(default)]
    allow_weak: bool,
    #[serde(
        default = "default_check_interval",
        deserialize_with = "deserialize_duration"
    )]
    check_interval: Duration,
}

fn default_check_interval() -> Duration {
    DEFAULT_CREDENTIALS_CHECK_INTERVAL
}

fn optional_params<T: serde::de::DeserializeOwned + Default>(
    lua: &Lua,
    function: &str,
    value: Value,
) -> mlua::Result<T> {
    match value {
        Value::Nil => Ok(T::default()),
        value => from_lua_params(lua, value).map_err(|err| lua_err(function, err)),
    }
}

impl Default for LoadParams {
    fn default() -> Self {
        LoadParams {
            allow_weak: false,
            check_interval: DEFAULT_CREDENTIALS_CHECK_INTERVAL,
        }
    }
}

/// A credential file as Lua sees it.
pub struct CredentialsObject(Arc<CredentialFile>);

impl UserData for CredentialsObject {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method(
            "check",
            |lua, this, (user, password, context): (Value, Value, Option<String>)| {
                let user = bytes_arg("check", "username", &user)?;
                let context = match context {
                    None => IdentityContext::GenericAuth,
                    Some(name) => serde_json::from_value(serde_json::Value::String(name.clone()))
                        .map_err(|_| {
                        lua_err("check", format!("unknown identity context {name:?}"))
                    })?,
                };
                // A missing or empty password never logs in (HTTP Basic
                // without a colon gives nil).
                let password = match password {
                    Value::Nil => return Ok(Value::Boolean(false)),
                    other => bytes_arg("check", "password", &other)?,
                };
                if password.is_empty() {
                    return Ok(Value::Boolean(false));
                }
                let file = this.0.clone();
                let Some(groups) = cpu_bound(|| file.check(&user, &password)) else {
                    return Ok(Value::Boolean(false));
                };
                let info = AuthInfo {
                    peer_address: None,
                    identities: vec![Identity {
                        identity: String::from_utf8_lossy(&user).into_owned(),
                        context,
                    }],
                    groups,
                };
                lua.to_value(&info)
            },
        );
        methods.add_method("users", |_, this, ()| Ok(this.0.current().len()));
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!(
                "Credentials({}, {} users)",
                this.0.describe(),
                this.0.current().len()
            ))
        });
    }
}

/// Add `verify_password`, `hash_password` and `load_credentials` to the
/// `kumo.aaa` table `module`.
pub(crate) fn register(lua: &Lua, module: &Table, ctx: &Arc<AaaContext>) -> mlua::Result<()> {
    module.set(
        "verify_password",
        lua.create_function(|lua, (hash, password, options): (Value, Value, Value)| {
            let hash = bytes_arg("verify_password", "the hash", &hash)?;
            let hash = String::from_utf8(hash)
                .map_err(|_| lua_err("verify_password", "the hash is not UTF-8"))?;
            let password = bytes_arg("verify_password", "the password", &password)?;
            let params: VerifyParams = optional_params(lua, "verify_password", options)?;
            let options = VerifyOptions {
                allow_weak: params.allow_weak,
            };
            cpu_bound(|| aaa::verify_password(&hash, &password, options))
                .map_err(|err| lua_err("verify_password", err))
        })?,
    )?;
    module.set(
        "hash_password",
        lua.create_function(|lua, (password, options): (Value, Value)| {
            let password = bytes_arg("hash_password", "the password", &password)?;
            if password.is_empty() {
                return Err(lua_err("hash_password", "the password is empty"));
            }
            let params: HashParams = optional_params(lua, "hash_password", options)?;
            cpu_bound(|| aaa::hash_password(&password, &params))
                .map_err(|err| lua_err("hash_password", err))
        })?,
    )?;
    let ctx = ctx.clone();
    module.set(
        "load_credentials",
        lua.create_function(move |lua, (source, options): (Value, Value)| {
            let source: KeySource =
                from_lua_params(lua, source).map_err(|err| lua_err("load_credentials", err))?;
            let params: LoadParams = optional_params(lua, "load_credentials", options)?;
            let file = ctx
                .credentials()
                .open(source, params.allow_weak, params.check_interval)
                .map_err(|err| lua_err("load_credentials", format!("{err:#}")))?;
            Ok(CredentialsObject(file))
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "aaa_password_lua_tests.rs"]
mod tests;
