//! The `nephele` mail daemon as a library: [`server`] loads the policy,
//! opens the spool, binds the listeners and serves until shut down; the
//! binary (`main.rs`) only parses flags and signals. Tests and fuzz
//! targets reach the parts directly.

pub mod delivery;
pub mod http_api;
pub mod inject;
pub mod logs;
pub mod lua_api;
pub mod metrics;
pub mod queue_config;
pub mod queues;
pub mod server;
pub mod smtp;

pub use policy::policy_error_text;
