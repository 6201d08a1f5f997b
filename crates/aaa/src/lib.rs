//! Authentication, authorization and accounting: who a peer is
//! ([`AuthInfo`], [`Identity`], [`IdentityContext`]).
//!
//! This crate owns the data model only. It knows nothing of Lua, sockets or
//! HTTP: the policy layer converts Lua values into these types and the
//! servers decide what to do with them.

mod auth_info;

pub use auth_info::{AuthInfo, Identity, IdentityContext};
mod secret;

pub use secret::{redact, Secret};
mod failure_limiter;

pub use failure_limiter::{FailureLimiter, DEFAULT_MAX_TRACKED_IPS};
