//! `kumo.encode.*`: base64/base32/hex encoders and decoders in the upstream
//! variants, and `charset_encode`/`charset_decode`. [`ENCODINGS`] is also
//! the list of fields of the digest result object (`kumo.digest`).

use crate::func::{fail, function, sub_module};
use data_encoding::{
    Encoding, BASE32, BASE32HEX, BASE32HEX_NOPAD, BASE32_NOPAD, BASE64, BASE64URL, BASE64URL_NOPAD,
    BASE64_NOPAD, HEXLOWER_PERMISSIVE,
};
use mlua::{Lua, Value};

/// Each encoding by its upstream name. `hex` encodes lowercase and decodes
/// either case.
pub(crate) const ENCODINGS: [(&str, Encoding); 9] = [
    ("hex", HEXLOWER_PERMISSIVE),
    ("base32", BASE32),
    ("base32_nopad", BASE32_NOPAD),
    ("base32hex", BASE32HEX),
    ("base32hex_nopad", BASE32HEX_NOPAD),
    ("base64", BASE64),
    ("base64_nopad", BASE64_NOPAD),
    ("base64url", BASE64URL),
    ("base64url_nopad", BASE64URL_NOPAD),
];

/// Decode, accepting missing or excess trailing padding for the padded
/// variants (other encoders pad differently; upstream accepts this too).
/// The error names the encoding but never echoes the input.
fn decode(name: &str, encoding: &Encoding, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut spec = encoding.specification();
    let (encoding, data) = match spec.padding.take() {
        Some(pad) => {
            let mut stripped = data;
            while let [rest @ .., last] = stripped {
                if char::from(*last) != pad {
                    break;
                }
                stripped = rest;
            }
            let unpadded = spec.encoding().map_err(|err| err.to_string())?;
            (unpadded, stripped)
        }
        None => (encoding.clone(), data),
    };
    encoding
        .decode(data)
        .map_err(|err| format!("invalid {name} input: {err}"))
}

/// Install `kumo.encode.*`.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let module = sub_module(lua, "encode")?;
    for (name, encoding) in ENCODINGS {
        let encoder = encoding.clone();
        let encode = function(
            lua,
            format!("kumo.encode.{name}_encode"),
            move |_, data: Value| match data {
                Value::String(s) => Ok(encoder.encode(&s.as_bytes())),
                other => Err(fail(format!(
                    "expected a string, got {}",
                    other.type_name()
                ))),
            },
        )?;
        module.set(format!("{name}_encode"), encode)?;
        let decode = function(
            lua,
            format!("kumo.encode.{name}_decode"),
            move |lua, data: mlua::String| {
                let bytes = decode(name, &encoding, &data.as_bytes()).map_err(fail)?;
                lua.create_string(bytes)
            },
        )?;
        module.set(format!("{name}_decode"), decode)?;
    }
    module.set(
        "charset_decode",
        function(
            lua,
            "kumo.encode.charset_decode",
            |_, (charset, input): (String, mlua::String)| {
                let encoding = charset_named(&charset)?;
                let bytes = input.as_bytes();
                encoding
                    .decode_without_bom_handling_and_without_replacement(&bytes)
                    .map(|text| text.into_owned())
                    .ok_or_else(|| fail(format!("input is not valid {}", encoding.name())))
            },
        )?,
    )?;
    module.set(
        "charset_encode",
        function(
            lua,
            "kumo.encode.charset_encode",
            |lua, (charset, input, ignore_errors): (String, String, Option<bool>)| {
                let encoding = charset_named(&charset)?;
                let (bytes, _, had_errors) = encoding.encode(&input);
                if had_errors && !ignore_errors.unwrap_or(true) {
                    return Err(fail(format!(
                        "input has characters that {} cannot represent",
                        encoding.name()
                    )));
                }
                lua.create_string(bytes)
            },
        )?,
    )?;
    Ok(())
}

/// A charset by its WHATWG label (`iso-8859-1`, `shift_jis`, `koi8-r`, ...).
fn charset_named(label: &str) -> mlua::Result<&'static encoding_rs::Encoding> {
    encoding_rs::Encoding::for_label_no_replacement(label.as_bytes())
        .ok_or_else(|| fail(format!("unknown charset {label:?}")))
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
