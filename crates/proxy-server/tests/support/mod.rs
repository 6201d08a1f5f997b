//! Shared helpers for the black-box tests: start the real `proxy-server`
//! binary with a real policy file, tiny loopback servers to proxy to, a raw
//! SOCKS5 client built on the `socks5` codec, and a runner for third-party
//! clients (curl, ncat, PySocks) with a bounded run time.
//!
//! Everything binds on loopback only, on port 0, and readiness is detected
//! from the proxy's `proxy listener on ADDR` line, never by sleeping.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod http;
pub mod policy;
pub mod process;
pub mod servers;
pub mod socks;
pub mod tools;

pub use http::*;
pub use policy::*;
pub use process::*;
pub use servers::*;
pub use socks::*;
pub use tools::*;
