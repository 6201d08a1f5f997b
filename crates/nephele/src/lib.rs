//! The parts of the `nephele` mail daemon, as a library so that fuzz
//! targets and tests can reach them; the binary (`main.rs`) wires them
//! together.

pub mod delivery;
pub mod http_api;
pub mod inject;
pub mod logs;
pub mod lua_api;
pub mod metrics;
mod policy_errors;
pub mod queue_config;
pub mod queues;
pub mod smtp;

pub use policy_errors::policy_error_text;
