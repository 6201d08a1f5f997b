//! The endpoints both binaries serve, with their OpenAPI description.

use crate::metrics_json::parse_exposition;
use crate::server::ListenerState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::{error, info};
use utoipa::{OpenApi, ToSchema};

/// The content type of `/metrics` (what prometheus-client encodes).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenAPI description of the common endpoints; binaries merge their
/// own into it.
#[derive(OpenApi)]
#[openapi(
    info(title = "Nephele HTTP listener"),
    paths(
        metrics,
        metrics_json,
        openapi_json,
        bump_config_epoch,
        set_diagnostic_log_filter
    )
)]
pub struct CommonApi;

impl CommonApi {
    /// A binary's whole OpenAPI document: the common endpoints plus
    /// `own`, titled `title`, versioned `version`.
    pub fn document_with(
        own: utoipa::openapi::OpenApi,
        title: &str,
        version: &str,
    ) -> utoipa::openapi::OpenApi {
        let mut doc = <CommonApi as utoipa::OpenApi>::openapi();
        doc.merge(own);
        doc.info.title = title.to_owned();
        doc.info.version = version.to_owned();
        doc
    }
}

/// The common routes, with `state` applied.
pub fn common_routes(state: Arc<ListenerState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics.json", get(metrics_json))
        .route("/api-docs/openapi.json", get(openapi_json))
        .route("/api/admin/bump-config-epoch", post(bump_config_epoch))
        .route(
            "/api/admin/set_diagnostic_log_filter/v1",
            post(set_diagnostic_log_filter),
        )
        .with_state(state)
}

/// A metrics encoding error; logged, answered with a short `500`.
#[derive(Debug, thiserror::Error)]
#[error("could not encode metrics")]
struct MetricsEncodingError;

impl IntoResponse for MetricsEncodingError {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("{self}\n")).into_response()
    }
}

fn encode_metrics(state: &ListenerState) -> Result<String, MetricsEncodingError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.services.registry).map_err(
        |err| {
            error!(error = %err, "encoding metrics failed");
            MetricsEncodingError
        },
    )?;
    Ok(text)
}

/// Prometheus metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "OpenMetrics text exposition", body = String,
        content_type = "application/openmetrics-text")))]
async fn metrics(State(state): State<Arc<ListenerState>>) -> Response {
    match encode_metrics(&state) {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Err(err) => err.into_response(),
    }
}

/// The same metrics as JSON: one object per family with type, help and
/// samples.
#[utoipa::path(get, path = "/metrics.json", tag = "metrics",
    responses((status = 200, description = "Metric families", body = Object)))]
async fn metrics_json(State(state): State<Arc<ListenerState>>) -> Response {
    match encode_metrics(&state) {
        Ok(text) => Json(parse_exposition(&text)).into_response(),
        Err(err) => err.into_response(),
    }
}

/// This document.
#[utoipa::path(get, path = "/api-docs/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
async fn openapi_json(State(state): State<Arc<ListenerState>>) -> Response {
    Json(&state.services.openapi).into_response()
}

/// The answer of a successful reload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BumpConfigEpochResponse {
    /// The new config epoch.
    pub epoch: u64,
}

/// Reload the policy: new Lua states load the file as it is now and older
/// states are retired. A policy that no longer loads is reported with `500`
/// and the running one stays in place.
#[utoipa::path(post, path = "/api/admin/bump-config-epoch", tag = "admin",
    responses(
        (status = 200, description = "Reloaded", body = BumpConfigEpochResponse),
        (status = 500, description = "The policy failed to load; the old one stays", body = String)))]
async fn bump_config_epoch(State(state): State<Arc<ListenerState>>) -> Response {
    let policy = state.services.policy.clone();
    let outcome = tokio::task::spawn_blocking(move || policy.bump_epoch()).await;
    match outcome {
        Ok(Ok(epoch)) => {
            info!(epoch, "policy reloaded");
            Json(BumpConfigEpochResponse { epoch }).into_response()
        }
        Ok(Err(err)) => {
            error!("policy reload failed: {err:#}");
            let text = policy::without_traceback(&format!("{err:#}")).to_owned();
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("policy reload failed; the previous policy stays in force: {text}\n"),
            )
                .into_response()
        }
        Err(err) => {
            error!("policy reload task failed: {err}");
            (StatusCode::INTERNAL_SERVER_ERROR, "policy reload failed\n").into_response()
        }
    }
}

/// The body of `set_diagnostic_log_filter`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDiagnosticLogFilterRequest {
    /// An `EnvFilter` directive such as `info,http_listener=debug`.
    pub filter: String,
}

/// Change the diagnostic log filter of the running process.
#[utoipa::path(post, path = "/api/admin/set_diagnostic_log_filter/v1", tag = "admin",
    request_body = SetDiagnosticLogFilterRequest,
    responses(
        (status = 200, description = "The filter is in force", body = String),
        (status = 400, description = "The filter does not parse", body = String)))]
async fn set_diagnostic_log_filter(
    State(state): State<Arc<ListenerState>>,
    Json(request): Json<SetDiagnosticLogFilterRequest>,
) -> Response {
    let Some(setter) = &state.services.log_filter else {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "this process cannot change its log filter\n",
        )
            .into_response();
    };
    match setter(&request.filter) {
        Ok(()) => {
            info!(filter = %request.filter, "diagnostic log filter changed");
            (StatusCode::OK, "diagnostic log filter set\n").into_response()
        }
        Err(err) => (
            StatusCode::BAD_REQUEST,
            format!("invalid filter: {err:#}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_the_common_paths() {
        let doc = CommonApi::openapi();
        for path in [
            "/metrics",
            "/metrics.json",
            "/api-docs/openapi.json",
            "/api/admin/bump-config-epoch",
            "/api/admin/set_diagnostic_log_filter/v1",
        ] {
            assert!(doc.paths.paths.contains_key(path), "{path}");
        }
    }
}
