//! `kumo.uuid.*`: parse and generate UUIDs (v1, v4, v6, v7). The UUID
//! object has the fields `hyphenated`, `simple`, `braced`, `urn` and
//! `bytes`; `tostring` gives the hyphenated form.

use crate::func::{fail, function, sub_module};
use ::uuid::Uuid;
use mlua::{Lua, MetaMethod, UserData, UserDataFields, UserDataMethods};
use std::sync::OnceLock;

/// A UUID, as Lua sees it.
pub struct LuaUuid(pub Uuid);

impl UserData for LuaUuid {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("hyphenated", |_, this| Ok(this.0.hyphenated().to_string()));
        fields.add_field_method_get("simple", |_, this| Ok(this.0.simple().to_string()));
        fields.add_field_method_get("braced", |_, this| Ok(this.0.braced().to_string()));
        fields.add_field_method_get("urn", |_, this| Ok(this.0.urn().to_string()));
        fields.add_field_method_get("bytes", |lua, this| lua.create_string(this.0.as_bytes()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(this.0.hyphenated().to_string())
        });
        methods.add_meta_method(MetaMethod::Eq, |_, this, other: mlua::UserDataRef<Self>| {
            Ok(this.0 == other.0)
        });
    }
}

/// The node ID of v1 and v6 UUIDs: the MAC address of the first
/// non-loopback interface (by name) with one, else random bits with the
/// multicast bit set (RFC 9562 section 6.10). Computed once: it is a fact
/// about the machine, not state.
fn node_id() -> [u8; 6] {
    static NODE: OnceLock<[u8; 6]> = OnceLock::new();
    *NODE.get_or_init(|| mac_address().unwrap_or_else(random_node))
}

fn mac_address() -> Option<[u8; 6]> {
    let mut names: Vec<_> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.file_name()))
        .filter(|name| name != "lo")
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let path = std::path::Path::new("/sys/class/net")
            .join(name)
            .join("address");
        let text = std::fs::read_to_string(path).ok()?;
        let mut mac = [0u8; 6];
        let mut parts = text.trim().split(':');
        for byte in &mut mac {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        (parts.next().is_none() && mac != [0; 6]).then_some(mac)
    })
}

fn random_node() -> [u8; 6] {
    let bytes = Uuid::new_v4().into_bytes();
    let mut node = [0u8; 6];
    node.copy_from_slice(&bytes[10..16]);
    node[0] |= 0x01;
    node
}

/// Install `kumo.uuid.*`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let module = sub_module(lua, "uuid")?;
    module.set(
        "parse",
        function(lua, "kumo.uuid.parse", |_, text: String| {
            Uuid::try_parse(&text)
                .map(LuaUuid)
                .map_err(|err| fail(format!("invalid UUID {text:?}: {err}")))
        })?,
    )?;
    type Generate = fn() -> Uuid;
    let generators: [(&str, Generate); 4] = [
        ("new_v1", || Uuid::now_v1(&node_id())),
        ("new_v4", Uuid::new_v4),
        ("new_v6", || Uuid::now_v6(&node_id())),
        ("new_v7", Uuid::now_v7),
    ];
    for (name, generate) in generators {
        let func = function(lua, format!("kumo.uuid.{name}"), move |_, ()| {
            Ok(LuaUuid(generate()))
        })?;
        module.set(name, func)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "uuid_tests.rs"]
mod tests;
