//! `kumo.cidr.make_map([table])`: a map from IP addresses and CIDR blocks to
//! values. `map[key] = value` stores (nil removes), `map[ip]` finds the value
//! of the most specific block holding `ip`, or nil. Keys may be written as
//! `10.0.0.0/24`, `10.0.0.1`, `::1`, `[10.0.0.1]`, `10.0.0.1:25` or
//! `[::1]:25`. A look-up of something that is not an IP address is nil; a
//! store with such a key is an error. Values are stored as data (see
//! [`crate::convert`]), so tables are copied in and out.

use crate::convert::{data_to_lua, lua_to_data};
use crate::func::{args, fail, function, named_error, sub_module};
use ipnet::IpNet;
use mlua::{Lua, MetaMethod, MultiValue, Table, UserData, UserDataMethods, Value};
use serde_json::Value as Data;
use std::collections::HashMap;
use std::net::IpAddr;

/// The map: blocks (host bits zero) to values.
#[derive(Default)]
pub struct CidrMap {
    blocks: HashMap<IpNet, Data>,
}

impl CidrMap {
    /// Store `value` for `block`, replacing an equal block's value.
    pub fn insert(&mut self, block: IpNet, value: Data) {
        self.blocks.insert(block, value);
    }

    /// Forget `block`.
    pub fn remove(&mut self, block: &IpNet) {
        self.blocks.remove(block);
    }

    /// The value of the most specific block that holds `ip`.
    pub fn get(&self, ip: IpAddr) -> Option<&Data> {
        let max = match ip {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (0..=max).rev().find_map(|prefix| {
            let block = IpNet::new(ip, prefix).ok()?.trunc();
            self.blocks.get(&block)
        })
    }
}

/// Parse a block as a key: a CIDR block or an address, optionally in
/// brackets and/or with a port. A block with host bits set is refused with
/// the block it probably meant.
pub fn parse_block(text: &str) -> Result<IpNet, String> {
    if let Ok(block) = text.parse::<IpNet>() {
        if block.trunc() != block {
            return Err(format!(
                "{text} is not a valid CIDR block: its host bits are not zero (did you mean {}?)",
                block.trunc()
            ));
        }
        return Ok(block);
    }
    parse_address(text)
        .map(IpNet::from)
        .ok_or_else(|| format!("{text} is not an IP address or CIDR block"))
}

/// Parse `ip`, `[ip]`, `ip:port` or `[ip]:port`.
pub fn parse_address(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, _port) = rest.split_once(']')?;
        return ip.parse().ok();
    }
    let (ip, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

impl UserData for CidrMap {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: Value| {
            let Value::String(key) = key else {
                return Ok(Value::Nil);
            };
            let Some(ip) = key.to_str().ok().and_then(|k| parse_address(&k)) else {
                return Ok(Value::Nil);
            };
            match this.get(ip) {
                Some(value) => data_to_lua(lua, value),
                None => Ok(Value::Nil),
            }
        });
        methods.add_meta_method_mut(MetaMethod::NewIndex, |lua, this, values: MultiValue| {
            const NAME: &str = "kumo.cidr map assignment";
            let (key, value): (String, Value) = args(lua, NAME, values)?;
            let block = parse_block(&key).map_err(|err| named_error(NAME, err))?;
            if value.is_nil() {
                this.remove(&block);
                return Ok(());
            }
            let data = lua_to_data(lua, &value).map_err(|err| named_error(NAME, err))?;
            this.insert(block, data);
            Ok(())
        });
    }
}

/// Fill a map from a Lua table of `block = value` pairs.
fn from_table(lua: &Lua, table: &Table) -> mlua::Result<CidrMap> {
    let mut map = CidrMap::default();
    for pair in table.pairs::<String, Value>() {
        let (key, value) = pair?;
        let block = parse_block(&key).map_err(fail)?;
        map.insert(block, lua_to_data(lua, &value).map_err(fail)?);
    }
    Ok(map)
}

/// Install `kumo.cidr.make_map`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let module = sub_module(lua, "cidr")?;
    module.set(
        "make_map",
        function(
            lua,
            "kumo.cidr.make_map",
            |lua, seed: Option<Table>| match seed {
                Some(table) => from_table(lua, &table),
                None => Ok(CidrMap::default()),
            },
        )?,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "cidr_map_tests.rs"]
mod tests;
