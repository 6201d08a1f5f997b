//! The access middleware: who the peer is (address, trusted hosts,
//! credentials decided by the policy), then whether the ACL lets it use the
//! requested resource with the request's method.

use crate::authenticator::{ask_policy, BEARER_IDENTITY};
use crate::credentials::{Credential, CredentialError};
use crate::server::{ConnectionInfo, ListenerState};
use aaa::{AuthInfo, Identity, IdentityContext, Resource, TRUSTED_IP_GROUP};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use policy::{LocalOnly, LoginAttempt, LoginOutcome, LoginThrottle, Unobserved};
use std::sync::Arc;
use tracing::{debug, error, info};

/// The `WWW-Authenticate` challenge sent with every `401`.
pub const WWW_AUTHENTICATE_CHALLENGE: &str = "Basic realm=\"nephele\"";

/// Why a request was stopped before its handler. Each variant is one HTTP
/// status; messages never contain a credential.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The `Authorization` header could not be parsed: `400`.
    #[error("bad Authorization header: {0}")]
    BadCredentials(#[from] CredentialError),
    /// The policy refused the credentials: `401`.
    #[error("invalid credentials")]
    Refused,
    /// Too many failed logins from this IP: `429`.
    #[error("too many failed logins from this address; retry in {retry_after} seconds")]
    Blocked {
        /// Seconds until the block ends.
        retry_after: u64,
    },
    /// The policy could not decide: `500`.
    #[error("authentication failed: the policy could not decide")]
    Policy,
    /// The ACL denied a peer without valid credentials: `401`.
    #[error("unauthenticated peer {peer} may not {method} {resource}")]
    Unauthenticated {
        /// The peer's address.
        peer: String,
        /// The HTTP method.
        method: String,
        /// The most specific resource name.
        resource: String,
    },
    /// The ACL denied an authenticated peer: `403`.
    #[error("{identity} may not {method} {resource}")]
    Forbidden {
        /// The peer's identity.
        identity: String,
        /// The HTTP method.
        method: String,
        /// The most specific resource name.
        resource: String,
    },
}

impl AccessError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AccessError::BadCredentials(_) => StatusCode::BAD_REQUEST,
            AccessError::Refused | AccessError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            AccessError::Blocked { .. } => StatusCode::TOO_MANY_REQUESTS,
            AccessError::Policy => StatusCode::INTERNAL_SERVER_ERROR,
            AccessError::Forbidden { .. } => StatusCode::FORBIDDEN,
        }
    }
}

impl IntoResponse for AccessError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, format!("{self}\n")).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE_CHALLENGE),
            );
        }
        if let AccessError::Blocked { retry_after } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

/// The name a denial or `http_auth` gives a peer: the first `HttpBasicAuth`
/// identity, else the first identity.
pub fn principal(auth: &AuthInfo) -> Option<&str> {
    auth.identities
        .iter()
        .find(|id| id.context == IdentityContext::HttpBasicAuth)
        .or_else(|| auth.first_identity())
        .map(|id| id.identity.as_str())
}

/// axum middleware: authenticate, authorize, then run the handler with the
/// final [`AuthInfo`] in the request's extensions.
pub async fn check_access(
    State(state): State<Arc<ListenerState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(conn) = request.extensions().get::<ConnectionInfo>().copied() else {
        error!("request without connection info; refusing");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    // A clone, so no borrow of the (non-Sync) request lives across awaits.
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    let auth = match authenticate(&state, &conn, authorization).await {
        Ok(auth) => auth,
        Err(err) => return err.into_response(),
    };
    let resource = Resource::http_listener(state.local_addr, request.uri().path());
    // HEAD is GET without a body: whoever may GET a resource may HEAD it,
    // so ACLs need not list both.
    let method = match request.method().as_str() {
        "HEAD" => "GET",
        other => other,
    };
    let decision = match &state.aaa {
        Some(aaa) => {
            let policy = &state.services.policy;
            aaa.authorize(policy, &state.services.acl, &resource, &auth, method)
                .await
        }
        None => state.services.acl.query(&resource, &auth, method),
    };
    if !decision.allow {
        let err = match principal(&auth) {
            Some(identity) => AccessError::Forbidden {
                identity: identity.to_owned(),
                method: method.to_owned(),
                resource: decision.target_resource,
            },
            None => AccessError::Unauthenticated {
                peer: conn.peer.ip().to_string(),
                method: method.to_owned(),
                resource: decision.target_resource,
            },
        };
        info!(peer = %conn.peer, "access denied: {err}");
        return err.into_response();
    }
    debug!(peer = %conn.peer, method, resource = %decision.target_resource, "access allowed");
    request.extensions_mut().insert(auth);
    next.run(request).await
}

async fn authenticate(
    state: &ListenerState,
    conn: &ConnectionInfo,
    authorization: Option<HeaderValue>,
) -> Result<AuthInfo, AccessError> {
    let ip = conn.peer.ip();
    let mut auth = AuthInfo {
        peer_address: Some(ip),
        ..AuthInfo::default()
    };
    let trusted = state.params.trusted_hosts.contains(ip);
    if trusted {
        auth.add_group(TRUSTED_IP_GROUP);
    }
    let Some(header) = authorization else {
        return Ok(auth);
    };
    let credential = Credential::parse(header.as_bytes())?;
    // The attempted identity is the user name, or a fixed name for a
    // bearer token: the token itself never reaches the log.
    let attempted = match credential.user() {
        Some(user) => Identity {
            identity: user.to_owned(),
            context: IdentityContext::HttpBasicAuth,
        },
        None => Identity {
            identity: BEARER_IDENTITY.to_owned(),
            context: IdentityContext::BearerToken,
        },
    };
    let fields = credential.cache_fields();
    let attempt = LoginAttempt {
        attempted,
        connection: auth,
        cache_fields: &fields,
    };
    // Trusted hosts are never blocked.
    let throttle = LoginThrottle {
        local: state.failure_limiter.as_ref().filter(|_| !trusted),
        shared: &LocalOnly,
    };
    let ask = || ask_policy(state.logins.policy(), &credential);
    match state
        .logins
        .login(attempt, &throttle, &Unobserved, ask)
        .await
    {
        LoginOutcome::Accepted(auth) => Ok(auth),
        LoginOutcome::Refused => Err(AccessError::Refused),
        LoginOutcome::Blocked(left) => Err(AccessError::Blocked {
            retry_after: left.as_secs() + u64::from(left.subsec_nanos() > 0),
        }),
        LoginOutcome::PolicyFailed(_) => Err(AccessError::Policy),
    }
}
