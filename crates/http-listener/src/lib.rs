//! The HTTP listener both binaries share.
//!
//! It owns the listener's parameters ([`HttpListenerParams`], parsed from a
//! Lua table), the accept loop with its connection limit, the access
//! middleware (peer address from TCP only, `trusted_hosts`, `Basic`/`Bearer`
//! credentials decided by the policy events `http_server_validate_auth_basic`
//! and `http_server_validate_auth_bearer` behind a hashed-key cache, a
//! per-IP failed-login limit, then the ACL check of `aaa`) and the endpoints
//! every binary serves (`/metrics`, `/metrics.json`, the OpenAPI document,
//! policy reload, log filter). It knows nothing of SOCKS, mail or the
//! binaries' own endpoints: those come in as an extra [`axum::Router`].

mod access;
mod authenticator;
mod credentials;
mod endpoints;
mod lua;
mod metrics_json;
mod params;
mod server;

pub use access::{principal, AccessError, WWW_AUTHENTICATE_CHALLENGE};
pub use authenticator::{
    ask_policy, AUTH_CACHE_TTL, BEARER_IDENTITY, HTTP_SERVER_VALIDATE_AUTH_BASIC,
    HTTP_SERVER_VALIDATE_AUTH_BEARER,
};
pub use credentials::{Credential, CredentialError};
pub use endpoints::{
    BumpConfigEpochResponse, CommonApi, SetDiagnosticLogFilterRequest, OPENMETRICS_CONTENT_TYPE,
};
pub use lua::{params_from_lua, start_http_listener_function, HttpListenerSink};
pub use metrics_json::{parse_exposition, MetricFamily, Sample};
pub use params::{default_hostname, AuthFailureLimit, AuthFailureLimitSetting, HttpListenerParams};
pub use server::{
    build_router, ConnectionInfo, HttpListener, HttpServices, ListenerState, LogFilterSetter,
};
pub use utoipa;
