//! `bench`: the load tool for Nephele's SOCKS5 proxy and its peers.
//!
//! It owns the client side of the measurements (connection rate, bulk
//! throughput, memory per held tunnel) and the far-end echo and discard
//! servers. SOCKS5 bytes come from the sans-IO `socks5` crate; this crate
//! knows nothing of the proxy's internals or of Lua. The binary's
//! `main.rs` only parses arguments and dispatches to these modules.

pub mod bulk;
pub mod cli;
pub mod client;
pub mod conn;
pub mod hold;
pub mod net;
pub mod rss;
pub mod servers;
pub mod stats;
pub mod table;
