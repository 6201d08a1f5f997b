//! The message a mail daemon carries, and its Lua face.
//!
//! It owns [`Message`] (id, envelope sender and recipient, meta as JSON
//! values, the RFC 5322 bytes), envelope address parsing
//! ([`EnvelopeAddress`]), small header edits on the raw bytes, the encoding
//! a spool stores, and the Lua userdata policies see (`msg:get_meta(...)`,
//! `msg:append_header(...)`, ...) together with `kumo.reject(code, text)`.
//! It knows nothing of HTTP, spools, queues or delivery: those hand it bytes
//! and call its methods.

mod address;
mod headers;
mod lua;
mod message;

pub use address::{AddressError, EnvelopeAddress, HeaderAddress};
pub use headers::{normalize_crlf, HeaderError, Headers};
pub use lua::{register, LuaAddress, LuaMessage, Rejection};
pub use message::{Message, MessageId, SpoolDecodeError};
