//! The SOCKS5 client handshake, shared with nephele: it lives in the
//! `socks5` crate (feature `tokio`).

pub use socks5::client::*;
