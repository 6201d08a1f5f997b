//! Sans-IO codec for SOCKS5 (RFC 1928) and its username/password
//! sub-negotiation (RFC 1929), for both the server and the client side.
//!
//! Every parser is a pure function over a byte slice that answers
//! [`Parsed::Incomplete`] (read more and call again), a value with the number
//! of bytes it used, or a [`Socks5Error`] that knows which reply, if any, to
//! send before closing. Encoders append to a caller-owned `Vec<u8>` so a
//! session can reuse one buffer. This crate owns no sockets, no timeouts and
//! knows nothing of Lua; the optional `tokio` feature adds [`client`], an
//! async client handshake that only moves this codec's bytes.

mod address;
#[cfg(feature = "tokio")]
pub mod client;
mod error;
mod greeting;
mod reply;
mod request;
mod userpass;

pub use address::TargetAddr;
pub use error::Socks5Error;
pub use greeting::{
    encode_greeting, encode_method_selection, parse_greeting, parse_method_selection, AuthMethod,
    Greeting,
};
pub use reply::{encode_reply, parse_reply, Reply, ReplyCode};
pub use request::{encode_request, parse_request, Command, Request};
pub use userpass::{
    encode_userpass_request, encode_userpass_status, parse_userpass_request, parse_userpass_status,
    UserPassRequest, USERPASS_FAILURE, USERPASS_SUCCESS,
};

/// The protocol version byte of every SOCKS5 message.
pub const SOCKS_VERSION: u8 = 5;

/// The outcome of a parser given the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The message is not complete yet: read more bytes and parse again.
    Incomplete,
    /// A whole message: its value and how many bytes of the input it used.
    Complete { value: T, consumed: usize },
}

impl<T> Parsed<T> {
    /// Map the parsed value, keeping the consumed count.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Parsed<U> {
        match self {
            Parsed::Incomplete => Parsed::Incomplete,
            Parsed::Complete { value, consumed } => Parsed::Complete {
                value: f(value),
                consumed,
            },
        }
    }
}

/// Shorthand for what every parser returns.
pub type ParseResult<T> = Result<Parsed<T>, Socks5Error>;
