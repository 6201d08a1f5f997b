//! `kumo.digest.*`: SHA-1/2/3 and CRC32 digests over any number of
//! arguments, HMACs keyed by a keysource, and the `BinaryResult` object they
//! return (fields `bytes`, `hex`, `base32`, ..., `base64url_nopad`;
//! `tostring` gives the hex form).

use crate::convert::lua_to_data;
use crate::encode::ENCODINGS;
use crate::func::{fail, function, sub_module};
use crate::secrets::load_key;
use hmac::{Hmac, Mac};
use mlua::{Lua, MetaMethod, UserData, UserDataFields, UserDataMethods, Value, Variadic};
use sha2::Digest;

/// The digest bytes, shown to Lua through the encodings of [`ENCODINGS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryResult(pub Vec<u8>);

impl UserData for BinaryResult {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("bytes", |lua, this| lua.create_string(&this.0));
        for (name, encoding) in ENCODINGS {
            fields.add_field_method_get(name, move |_, this| Ok(encoding.encode(&this.0)));
        }
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(data_encoding::HEXLOWER.encode(&this.0))
        });
        methods.add_meta_method(MetaMethod::Eq, |_, this, other: mlua::UserDataRef<Self>| {
            Ok(this.0 == other.0)
        });
    }
}

/// The bytes an argument contributes: a string's own bytes, anything else
/// its JSON encoding (as upstream).
fn argument_bytes(lua: &Lua, value: &Value) -> mlua::Result<Vec<u8>> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        other => {
            let data = lua_to_data(lua, other).map_err(fail)?;
            Ok(serde_json::to_vec(&data).map_err(|err| fail(err.to_string()))?)
        }
    }
}

fn hash<D: Digest>(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut hasher = D::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

fn crc32(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().to_be_bytes().to_vec()
}

fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any HMAC key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

type HashFn = fn(&[Vec<u8>]) -> Vec<u8>;
type HmacFn = fn(&[u8], &[u8]) -> Vec<u8>;

/// Digests by name. `sha3_224` is not in upstream's list; it is here for
/// completeness of the SHA-3 family.
const DIGESTS: [(&str, HashFn); 11] = [
    ("sha1", hash::<sha1::Sha1>),
    ("sha224", hash::<sha2::Sha224>),
    ("sha256", hash::<sha2::Sha256>),
    ("sha384", hash::<sha2::Sha384>),
    ("sha512", hash::<sha2::Sha512>),
    ("sha512_256", hash::<sha2::Sha512_256>),
    ("sha3_224", hash::<sha3::Sha3_224>),
    ("sha3_256", hash::<sha3::Sha3_256>),
    ("sha3_384", hash::<sha3::Sha3_384>),
    ("sha3_512", hash::<sha3::Sha3_512>),
    ("crc32", crc32),
];

const HMACS: [(&str, HmacFn); 5] = [
    ("hmac_sha1", hmac::<Hmac<sha1::Sha1>>),
    ("hmac_sha224", hmac::<Hmac<sha2::Sha224>>),
    ("hmac_sha256", hmac::<Hmac<sha2::Sha256>>),
    ("hmac_sha384", hmac::<Hmac<sha2::Sha384>>),
    ("hmac_sha512", hmac::<Hmac<sha2::Sha512>>),
];

/// Install `kumo.digest.*`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let module = sub_module(lua, "digest")?;
    for (name, digest) in DIGESTS {
        let func = function(
            lua,
            format!("kumo.digest.{name}"),
            move |lua, args: Variadic<Value>| {
                let parts = args
                    .iter()
                    .map(|value| argument_bytes(lua, value))
                    .collect::<mlua::Result<Vec<_>>>()?;
                Ok(BinaryResult(digest(&parts)))
            },
        )?;
        module.set(name, func)?;
    }
    for (name, mac) in HMACS {
        let func = function(
            lua,
            format!("kumo.digest.{name}"),
            move |lua, (key, message): (Value, mlua::String)| {
                let key = load_key(lua, key)?;
                Ok(BinaryResult(mac(&key, &message.as_bytes())))
            },
        )?;
        module.set(name, func)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
