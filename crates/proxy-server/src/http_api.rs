//! The proxy's HTTP listeners: the shared listener of `http-listener` plus
//! the proxy's own endpoints, `GET /proxy/status` and the admin API of
//! [`crate::admin_api`].

use crate::admin_api::AdminState;
use axum::routing::get;
use axum::Router;
use http_listener::{CommonApi, HttpListener, HttpListenerParams, HttpServices, LogFilterSetter};
use policy::PolicyPool;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use utoipa::OpenApi;

/// The proxy's own paths.
#[derive(OpenApi)]
#[openapi(paths(proxy_status))]
struct ProxyApi;

/// The whole OpenAPI document of the proxy's HTTP listener
/// (`/api-docs/openapi.json`, `--dump-openapi-spec`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut own = ProxyApi::openapi();
    own.merge(crate::admin_api::AdminApi::openapi());
    CommonApi::document_with(own, "proxy-server HTTP listener", env!("CARGO_PKG_VERSION"))
}

/// The proxy's routes, merged into every listener.
fn routes(admin: AdminState) -> Router {
    Router::new()
        .route("/proxy/status", get(proxy_status))
        .merge(crate::admin_api::routes(admin))
}

/// Whether the proxy is up. Open to everyone by the default ACL.
#[utoipa::path(get, path = "/proxy/status", tag = "proxy",
    responses((status = 200, description = "The proxy is running", body = String,
        content_type = "text/plain")))]
async fn proxy_status() -> &'static str {
    concat!("proxy-server ", env!("CARGO_PKG_VERSION"), " OK\n")
}

/// Bind every HTTP listener `proxy_init` asked for. Each logs
/// `http listener on ADDR`.
pub async fn bind_listeners(
    requested: Vec<HttpListenerParams>,
    policy: Option<PolicyPool>,
    registry: Arc<Registry>,
    set_log_filter: Option<LogFilterSetter>,
    admin: AdminState,
) -> anyhow::Result<Vec<HttpListener>> {
    if requested.is_empty() {
        return Ok(Vec::new());
    }
    let Some(policy) = policy else {
        anyhow::bail!("HTTP listeners need a policy (--proxy-config)");
    };
    let services = HttpServices::with_default_acl(policy, registry, set_log_filter, openapi());
    HttpListener::bind_all(requested, services, || routes(admin.clone())).await
}
