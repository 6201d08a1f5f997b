//! Authentication, authorization and accounting: who a peer is
//! ([`AuthInfo`], [`Identity`], [`IdentityContext`]), what it may do
//! ([`AccessControlList`], [`AclMap`], [`Resource`], [`query_resource_access`])
//! and the small helpers around them (masked [`Secret`]s, [`KeySource`]s, the per-IP
//! [`FailureLimiter`], [`IpOrCidr`] blocks) and the accounting log
//! ([`AccountingLog`]: JSON lines in zstd segments, written off the request
//! path by the `segment-log` crate's writer).
//!
//! This crate owns the data model only. It knows nothing of Lua, sockets or
//! HTTP: the policy layer converts Lua values into these types and the
//! servers decide what to do with them.

mod accounting;
mod acl;
mod acl_map;
mod auth_info;
mod failure_limiter;
mod keysource;
mod machine;
mod resource;
mod secret;

pub use accounting::{
    rfc3339, AccountingConfig, AccountingLog, AccountingRecord, SessionEnd, SessionRecord,
    ACCOUNTING_QUEUE_CAPACITY, DEFAULT_COMPRESSION_LEVEL, DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_SEGMENT_DURATION,
};
pub use acl::{Access, AccessControlList, AccessControlRule, AclCriteria, IdentityCriterion};
pub use acl_map::{
    query_resource_access, AccessDecision, AclMap, AclMapError, DEFAULT_ACL_MAP_TOML,
    TRUSTED_IP_GROUP,
};
pub use auth_info::{AuthInfo, Identity, IdentityContext};
pub use failure_limiter::{
    ClientKey, FailureLimiter, FailureThresholds, ListenerFailureLimit, DEFAULT_MAX_TRACKED_IPS,
};
pub use keysource::KeySource;
pub use machine::{InvalidIpOrCidr, IpOrCidr, IpSet};
pub use resource::{Resource, MAX_PATH_BYTES, MAX_PATH_COMPONENTS};
pub use secret::{redact, Secret};
