//! Authentication, authorization and accounting: who a peer is
//! ([`AuthInfo`], [`Identity`], [`IdentityContext`]), what it may do
//! ([`AccessControlList`], [`AclMap`], [`Resource`], [`query_resource_access`])
//! and the small helpers around them (masked [`Secret`]s, [`KeySource`]s, the per-IP
//! [`FailureLimiter`], [`IpOrCidr`] blocks), the accounting log
//! ([`AccountingLog`]: JSON lines in zstd segments, written off the request
//! path by the `segment-log` crate's writer), password hashes
//! ([`verify_password`], [`hash_password`]) and credential files
//! ([`CredentialSet`]).
//!
//! This crate owns the data model only. It knows nothing of Lua, sockets or
//! HTTP: the policy layer converts Lua values into these types and the
//! servers decide what to do with them.

mod accounting;
mod acl;
mod acl_map;
mod auth_info;
mod credentials;
mod failure_limiter;
mod hashing;
mod keysource;
mod machine;
mod password;
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
pub use credentials::{CredentialParseError, CredentialSet, MAX_CREDENTIAL_FILE_BYTES};
pub use failure_limiter::{
    ClientKey, FailureLimiter, FailureThresholds, ListenerFailureLimit, DEFAULT_MAX_TRACKED_IPS,
};
pub use hashing::{cost_signature, dummy_hash_like, hash_password, HashAlgorithm, HashParams};
pub use keysource::KeySource;
pub use machine::{InvalidIpOrCidr, IpOrCidr, IpSet};
pub use password::{
    check_hash, verify_password, HashFormat, PasswordError, VerifyOptions, MAX_ARGON2_M_COST,
    MAX_ARGON2_P_COST, MAX_ARGON2_T_COST, MAX_BCRYPT_COST, MAX_SCRYPT_MEMORY, MAX_SCRYPT_P,
    MAX_SHA_CRYPT_ROUNDS,
};
pub use resource::{Resource, MAX_PATH_BYTES, MAX_PATH_COMPONENTS};
pub use secret::{redact, Secret};
