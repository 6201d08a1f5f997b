//! The proxy's admin endpoints on its HTTP listeners (under `/api/admin`,
//! so the default ACL admits only trusted hosts): live sessions, closing an
//! identity's tunnels, and the login failure limiter's blocked clients.

use crate::admission::IdentityControl;
use crate::sessions::SessionView;
use aaa::FailureLimiter;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// What the admin endpoints act on.
#[derive(Clone)]
pub struct AdminState {
    /// Live sessions and fleet state.
    pub control: Arc<IdentityControl>,
    /// The process's SOCKS login failure limiter.
    pub failure_limiter: Arc<FailureLimiter>,
}

/// The admin paths, for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(list_sessions, disconnect, list_blocked, unblock))]
pub struct AdminApi;

/// The admin routes with their state.
pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/api/admin/proxy/sessions/v1", get(list_sessions))
        .route("/api/admin/proxy/disconnect/v1", post(disconnect))
        .route(
            "/api/admin/proxy/blocked/v1",
            get(list_blocked).delete(unblock),
        )
        .with_state(state)
}

/// Filters of the session list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SessionFilter {
    /// Only sessions with this identity.
    pub identity: Option<String>,
    /// Only sessions whose login is in this group.
    pub group: Option<String>,
}

/// The live tunnels of this proxy, oldest first.
#[utoipa::path(get, path = "/api/admin/proxy/sessions/v1", tag = "proxy",
    params(SessionFilter),
    responses((status = 200, description = "Live tunnels", body = [SessionView])))]
async fn list_sessions(
    State(state): State<AdminState>,
    Query(filter): Query<SessionFilter>,
) -> Json<Vec<SessionView>> {
    Json(
        state
            .control
            .sessions
            .list(filter.identity.as_deref(), filter.group.as_deref()),
    )
}

/// The body of `disconnect`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
    /// Whose tunnels to close.
    pub identity: String,
}

/// The answer of `disconnect`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DisconnectResponse {
    /// Tunnels asked to close.
    pub disconnected: usize,
}

/// Close every live tunnel of an identity on this proxy (each is recorded
/// with `end_reason = "disconnected_by_admin"`).
#[utoipa::path(post, path = "/api/admin/proxy/disconnect/v1", tag = "proxy",
    request_body = DisconnectRequest,
    responses((status = 200, description = "How many tunnels were closed", body = DisconnectResponse)))]
async fn disconnect(
    State(state): State<AdminState>,
    Json(request): Json<DisconnectRequest>,
) -> Json<DisconnectResponse> {
    let disconnected = state.control.sessions.disconnect(&request.identity);
    info!(identity = %request.identity.escape_debug(), disconnected, "admin disconnected an identity's tunnels");
    Json(DisconnectResponse { disconnected })
}

/// One blocked client.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockedClient {
    /// An IPv4 address, or an IPv6 /64 (`2001:db8::/64`).
    pub address: String,
    /// Seconds until the block ends.
    pub remaining_seconds: f64,
    /// Blocked in this proxy's own table.
    pub local: bool,
    /// Blocked in the fleet's shared state.
    pub fleet: bool,
}

/// The clients whose SOCKS logins are refused without asking the policy:
/// this proxy's table and, with shared state, the fleet's.
#[utoipa::path(get, path = "/api/admin/proxy/blocked/v1", tag = "proxy",
    responses((status = 200, description = "Blocked clients", body = [BlockedClient])))]
async fn list_blocked(State(state): State<AdminState>) -> Json<Vec<BlockedClient>> {
    let mut clients: BTreeMap<String, BlockedClient> = BTreeMap::new();
    let mut add = |address: String, remaining: Duration, fleet: bool| {
        let entry = clients.entry(address.clone()).or_insert(BlockedClient {
            address,
            remaining_seconds: 0.0,
            local: false,
            fleet: false,
        });
        entry.remaining_seconds = entry.remaining_seconds.max(remaining.as_secs_f64());
        entry.local |= !fleet;
        entry.fleet |= fleet;
    };
    let now = tokio::time::Instant::now().into_std();
    for (client, remaining) in state.failure_limiter.blocked(now) {
        add(client.to_string(), remaining, false);
    }
    if let Some(fleet) = &state.control.fleet {
        for (client, remaining) in fleet.blocked().await.unwrap_or_default() {
            add(client, remaining, true);
        }
    }
    Json(clients.into_values().collect())
}

/// The body of `unblock`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnblockRequest {
    /// An IP address, or an entry of the blocked list (`2001:db8::/64`).
    pub address: String,
}

/// The answer of `unblock`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnblockResponse {
    /// Whether the client was blocked (here or fleet-wide) until now.
    pub unblocked: bool,
}

/// Lift a client's block (and forget its failures in the fleet): its next
/// login goes to the policy.
#[utoipa::path(delete, path = "/api/admin/proxy/blocked/v1", tag = "proxy",
    request_body = UnblockRequest,
    responses(
        (status = 200, description = "Unblocked (or was not blocked)", body = UnblockResponse),
        (status = 400, description = "Not an IP address", body = String)))]
async fn unblock(State(state): State<AdminState>, Json(request): Json<UnblockRequest>) -> Response {
    let text = request.address.trim();
    let Ok(ip) = text.strip_suffix("/64").unwrap_or(text).parse::<IpAddr>() else {
        return (
            StatusCode::BAD_REQUEST,
            "address must be an IP address (or an IPv6 /64 from the blocked list)\n",
        )
            .into_response();
    };
    let local = state.failure_limiter.unblock(ip);
    let fleet = match &state.control.fleet {
        Some(fleet) => fleet.unblock(ip).await.unwrap_or(false),
        None => false,
    };
    info!(client = %ip, was_blocked = local || fleet, "admin unblocked a client");
    Json(UnblockResponse {
        unblocked: local || fleet,
    })
    .into_response()
}
