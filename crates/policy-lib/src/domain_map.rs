//! `kumo.domain_map.new([table])`: a map from domain names to values with
//! wildcard keys. `map['*.example.com'] = v` matches every name below
//! `example.com` (not `example.com` itself); an exact key wins over a
//! wildcard, and a deeper wildcard over a shallower one. Names compare
//! case-insensitively and without a trailing root dot. `nil` removes a key.
//! Values are stored as data (see [`crate::convert`]).

use crate::convert::{data_to_lua, lua_to_data};
use crate::func::{args, fail, function, named_error, sub_module};
use mlua::{Lua, MetaMethod, MultiValue, Table, UserData, UserDataMethods, Value};
use serde_json::Value as Data;
use std::collections::HashMap;

/// The map: exact names and wildcard suffixes, both normalized.
#[derive(Default)]
pub struct DomainMap {
    exact: HashMap<String, Data>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, Data>,
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl DomainMap {
    /// Store `value` under `key` (an exact name or `*.suffix`).
    pub fn insert(&mut self, key: &str, value: Data) {
        match key.strip_prefix("*.") {
            Some(suffix) => self.wildcard.insert(normalize(suffix), value),
            None => self.exact.insert(normalize(key), value),
        };
    }

    /// Forget `key`.
    pub fn remove(&mut self, key: &str) {
        match key.strip_prefix("*.") {
            Some(suffix) => self.wildcard.remove(&normalize(suffix)),
            None => self.exact.remove(&normalize(key)),
        };
    }

    /// The value for `name`: its exact entry, else the wildcard of its
    /// nearest parent that has one.
    pub fn get(&self, name: &str) -> Option<&Data> {
        let name = normalize(name);
        if let Some(value) = self.exact.get(&name) {
            return Some(value);
        }
        name.match_indices('.')
            .find_map(|(dot, _)| self.wildcard.get(&name[dot + 1..]))
    }
}

impl UserData for DomainMap {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: Value| {
            let Value::String(key) = key else {
                return Ok(Value::Nil);
            };
            let Ok(key) = key.to_str() else {
                return Ok(Value::Nil);
            };
            match this.get(&key) {
                Some(value) => data_to_lua(lua, value),
                None => Ok(Value::Nil),
            }
        });
        methods.add_meta_method_mut(MetaMethod::NewIndex, |lua, this, values: MultiValue| {
            const NAME: &str = "kumo.domain_map assignment";
            let (key, value): (String, Value) = args(lua, NAME, values)?;
            if value.is_nil() {
                this.remove(&key);
                return Ok(());
            }
            let data = lua_to_data(lua, &value).map_err(|err| named_error(NAME, err))?;
            this.insert(&key, data);
            Ok(())
        });
    }
}

/// Install `kumo.domain_map.new`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let module = sub_module(lua, "domain_map")?;
    module.set(
        "new",
        function(lua, "kumo.domain_map.new", |lua, seed: Option<Table>| {
            let mut map = DomainMap::default();
            if let Some(seed) = seed {
                for pair in seed.pairs::<String, Value>() {
                    let (key, value) = pair?;
                    map.insert(&key, lua_to_data(lua, &value).map_err(fail)?);
                }
            }
            Ok(map)
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "domain_map_tests.rs"]
mod tests;
