//! `kumo.secrets.load(keysource)` and the keysource argument shared with
//! `kumo.digest.hmac_*`. Keysources are [`policy::KeySource`]: a file path or
//! `{ key_data = '...' }`. HashiCorp Vault keysources (`vault_mount`,
//! `vault_path`) are refused with a clear error: this build has no Vault
//! client.

use crate::func::{fail, function, sub_module};
use mlua::{Lua, Table, Value};
use policy::KeySource;

/// Keys that mark an upstream Vault keysource.
const VAULT_KEYS: &[&str] = &[
    "vault_mount",
    "vault_path",
    "vault_key",
    "vault_address",
    "vault_token",
];

/// Parse a keysource argument. Error messages never contain key data.
pub(crate) fn keysource_from_lua(lua: &Lua, value: Value) -> mlua::Result<KeySource> {
    if let Value::Table(table) = &value {
        if is_vault(table)? {
            return Err(fail("vault keysources are not supported"));
        }
    }
    let shape = "a keysource must be a file path or { key_data = '...' }";
    match &value {
        Value::String(_) | Value::Table(_) => {}
        other => return Err(fail(format!("{shape}, got {}", other.type_name()))),
    }
    // serde's message for a failed untagged enum says nothing useful (and
    // nothing secret): replace it with the accepted shapes.
    policy::from_lua_params::<KeySource>(lua, value).map_err(|_| fail(shape))
}

fn is_vault(table: &Table) -> mlua::Result<bool> {
    for key in VAULT_KEYS {
        if table.contains_key(*key)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Load the bytes of a keysource argument (file errors name the file).
pub(crate) fn load_key(lua: &Lua, value: Value) -> mlua::Result<Vec<u8>> {
    let source = keysource_from_lua(lua, value)?;
    source.load().map_err(|err| fail(format!("{err:#}")))
}

/// Install `kumo.secrets.load`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let secrets = sub_module(lua, "secrets")?;
    secrets.set(
        "load",
        function(lua, "kumo.secrets.load", |lua, source: Value| {
            let bytes = load_key(lua, source)?;
            lua.create_string(bytes)
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
