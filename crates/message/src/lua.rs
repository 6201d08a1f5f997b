//! The Lua face of a message: `msg:id()`, `msg:get_meta(k)`, ... and
//! `kumo.reject(code, text)`.

use crate::address::{EnvelopeAddress, HeaderAddress};
use crate::message::Message;
use mlua::{
    Lua, LuaSerdeExt, MetaMethod, SerializeOptions, UserData, UserDataFields, UserDataMethods,
    Value,
};
use parking_lot::Mutex;
use std::sync::Arc;

/// A message shared between Rust and a Lua handler: the handler edits it in
/// place and the caller reads the result once the handler returns.
#[derive(Clone)]
pub struct LuaMessage(pub Arc<Mutex<Message>>);

impl LuaMessage {
    /// Wrap a message for a handler.
    pub fn new(message: Message) -> Self {
        LuaMessage(Arc::new(Mutex::new(message)))
    }

    /// The message as the handler left it.
    pub fn snapshot(&self) -> Message {
        self.0.lock().clone()
    }
}

/// An envelope address as Lua sees it: `tostring(addr)` is `user@domain`,
/// fields `user`, `domain`, `email`.
#[derive(Clone)]
pub struct LuaAddress(pub EnvelopeAddress);

impl UserData for LuaAddress {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("user", |_, this| Ok(this.0.user().to_owned()));
        fields.add_field_method_get("domain", |_, this| Ok(this.0.domain().to_owned()));
        fields.add_field_method_get("email", |_, this| Ok(this.0.email()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.0.email()));
        methods.add_meta_method(MetaMethod::Eq, |_, this, other: mlua::AnyUserData| {
            Ok(other
                .borrow::<LuaAddress>()
                .is_ok_and(|other| other.0 == this.0))
        });
    }
}

/// JSON null (and `nil` inside tables) must come back to Lua as `nil`, not
/// as mlua's null sentinel.
fn json_options() -> SerializeOptions {
    SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
}

fn header_address(lua: &Lua, address: Option<HeaderAddress>) -> mlua::Result<Value> {
    match address {
        Some(address) => lua.to_value_with(&address, json_options()),
        None => Ok(Value::Nil),
    }
}

fn runtime(err: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::RuntimeError(err.to_string())
}

impl UserData for LuaMessage {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("id", |_, this, ()| Ok(this.0.lock().id().to_string()));
        methods.add_method("sender", |_, this, ()| {
            Ok(LuaAddress(this.0.lock().sender().clone()))
        });
        methods.add_method("recipient", |_, this, ()| {
            Ok(LuaAddress(this.0.lock().recipient().clone()))
        });
        methods.add_method("get_meta", |lua, this, key: String| {
            match this.0.lock().get_meta(&key) {
                Some(value) => lua.to_value_with(value, json_options()),
                None => Ok(Value::Nil),
            }
        });
        methods.add_method("set_meta", |lua, this, (key, value): (String, Value)| {
            let value: serde_json::Value = lua.from_value(value).map_err(|err| {
                runtime(format!("set_meta({key:?}): value is not JSON-able: {err}"))
            })?;
            this.0.lock().set_meta(key, value);
            Ok(())
        });
        methods.add_method("get_data", |lua, this, ()| {
            lua.create_string(this.0.lock().data())
        });
        methods.add_method("set_data", |_, this, data: mlua::String| {
            this.0.lock().set_data(data.as_bytes().to_vec());
            Ok(())
        });
        methods.add_method(
            "append_header",
            |_, this, (name, value): (String, String)| {
                this.0.lock().append_header(&name, &value).map_err(runtime)
            },
        );
        methods.add_method(
            "prepend_header",
            |_, this, (name, value): (String, String)| {
                this.0.lock().prepend_header(&name, &value).map_err(runtime)
            },
        );
        methods.add_method("get_first_named_header_value", |_, this, name: String| {
            Ok(this.0.lock().first_named_header_value(&name))
        });
        methods.add_method("from_header", |lua, this, ()| {
            let address = this.0.lock().from_header();
            header_address(lua, address)
        });
        methods.add_method("to_header", |lua, this, ()| {
            let address = this.0.lock().to_header();
            header_address(lua, address)
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("Message({})", this.0.lock().id()))
        });
    }
}

/// A policy's refusal of a message: `kumo.reject(code, text)`. Its text is
/// `"{code} {text}"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {text}")]
pub struct Rejection {
    /// An SMTP-style status, 400..=599.
    pub code: u16,
    /// Why.
    pub text: String,
}

/// Add `kumo.reject(code, text)` to a Lua state.
pub fn register(lua: &Lua) -> mlua::Result<()> {
    let reject = lua.create_function(|_, (code, text): (u16, String)| -> mlua::Result<()> {
        if !(400..=599).contains(&code) {
            return Err(runtime(format!(
                "kumo.reject: code must be between 400 and 599, got {code}"
            )));
        }
        Err(mlua::Error::RuntimeError(
            Rejection { code, text }.to_string(),
        ))
    })?;
    policy::kumo_module(lua)?.set("reject", reject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(code: &str) -> (mlua::Result<Value>, Message) {
        let lua = Lua::new();
        register(&lua).unwrap();
        let msg = LuaMessage::new(Message::new(
            EnvelopeAddress::parse("sender@example.com").unwrap(),
            EnvelopeAddress::parse("rcpt@example.net").unwrap(),
            b"From: \"S, Ender\" <sender@example.com>\r\nTo: R <rcpt@example.net>\r\nSubject: s\r\n\r\nbody\r\n"
                .to_vec(),
        ));
        lua.globals().set("msg", msg.clone()).unwrap();
        let result = lua.load(code).eval::<Value>();
        let message = msg.snapshot();
        (result, message)
    }

    #[test]
    fn envelope_and_meta() {
        let (result, msg) = run(r#"
            assert(tostring(msg:sender()) == 'sender@example.com')
            local r = msg:recipient()
            assert(r.user == 'rcpt' and r.domain == 'example.net' and r.email == 'rcpt@example.net')
            assert(msg:get_meta('nothing') == nil)
            msg:set_meta('tenant', 'acme')
            msg:set_meta('list', { 1, 2, 3 })
            msg:set_meta('obj', { a = 'b' })
            assert(msg:get_meta('tenant') == 'acme')
            assert(msg:get_meta('list')[3] == 3)
            assert(#msg:id() == 32)
            return true
        "#);
        assert_eq!(result.unwrap(), Value::Boolean(true));
        assert_eq!(msg.get_meta("tenant"), Some(&json!("acme")));
        assert_eq!(msg.get_meta("list"), Some(&json!([1, 2, 3])));
        assert_eq!(msg.get_meta("obj"), Some(&json!({"a": "b"})));
    }

    #[test]
    fn headers_and_data() {
        let (result, msg) = run(r#"
            assert(msg:get_first_named_header_value('subject') == 's')
            assert(msg:get_first_named_header_value('x-none') == nil)
            local from = msg:from_header()
            assert(from.name == 'S, Ender' and from.email == 'sender@example.com')
            assert(from.user == 'sender' and from.domain == 'example.com')
            assert(msg:to_header().name == 'R')
            msg:append_header('X-Last', 'z')
            msg:prepend_header('X-First', 'a')
            assert(msg:get_data():find('body', 1, true))
            return true
        "#);
        assert_eq!(result.unwrap(), Value::Boolean(true));
        let text = String::from_utf8(msg.data().to_vec()).unwrap();
        assert!(text.starts_with("X-First: a\r\n"), "{text}");
        assert!(
            text.contains("Subject: s\r\nX-Last: z\r\n\r\nbody"),
            "{text}"
        );

        let (result, msg) = run("msg:set_data('Subject: new\\r\\n\\r\\nx') return 1");
        result.unwrap();
        assert_eq!(msg.data(), b"Subject: new\r\n\r\nx");
        let (result, _) = run("msg:append_header('X', 'a\\r\\nBcc: evil@x')");
        assert!(result.unwrap_err().to_string().contains("CR or LF"));
    }

    #[test]
    fn reject_raises_code_and_text() {
        let (result, _) = run("kumo.reject(550, 'not you')");
        let err = result.unwrap_err().to_string();
        assert!(err.contains("550 not you"), "{err}");
        let (result, _) = run("kumo.reject(200, 'ok?')");
        assert!(result
            .unwrap_err()
            .to_string()
            .contains("between 400 and 599"));
    }
}
