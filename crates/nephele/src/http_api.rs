//! nephele's HTTP listeners: the shared listener of `http-listener` plus
//! the injection API and the liveness check.

use crate::inject::{self, InjectService};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use http_listener::{CommonApi, HttpListener, HttpListenerParams, HttpServices, LogFilterSetter};
use policy::PolicyPool;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use utoipa::OpenApi;

/// nephele's own paths.
#[derive(OpenApi)]
#[openapi(paths(inject::inject_v1, check_liveness_v1))]
struct NepheleApi;

/// The whole OpenAPI document (`/api-docs/openapi.json`,
/// `--dump-openapi-spec`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    CommonApi::document_with(
        NepheleApi::openapi(),
        "nephele HTTP listener",
        env!("CARGO_PKG_VERSION"),
    )
}

fn routes(service: Arc<InjectService>) -> Router {
    Router::new()
        .route("/api/inject/v1", post(inject::inject_v1))
        .route("/api/check-liveness/v1", get(check_liveness_v1))
        .with_state(service)
}

/// `200` while the spool accepts messages, else `503`.
#[utoipa::path(get, path = "/api/check-liveness/v1", tag = "inject",
    responses(
        (status = 200, description = "The spool accepts messages", body = String),
        (status = 503, description = "No spool, or its last commit failed", body = String)))]
async fn check_liveness_v1(
    State(service): State<Arc<InjectService>>,
) -> (StatusCode, &'static str) {
    match &service.spool {
        Some(spool) if spool.is_healthy() => (StatusCode::OK, "OK\n"),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "the spool is failing\n"),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no spool is defined\n"),
    }
}

/// Bind every listener `init` asked for; each logs `http listener on ADDR`.
pub async fn bind_listeners(
    requested: Vec<HttpListenerParams>,
    policy: PolicyPool,
    registry: Arc<Registry>,
    set_log_filter: Option<LogFilterSetter>,
    service: Arc<InjectService>,
) -> anyhow::Result<Vec<HttpListener>> {
    let services = HttpServices::with_default_acl(policy, registry, set_log_filter, openapi());
    HttpListener::bind_all(requested, services, || routes(service.clone())).await
}
