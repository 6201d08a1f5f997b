//! `kumo.http`: `build_client { ... }` (a reqwest client over rustls, with
//! its own connection pool), the Request object its `get`/`post`/`put`
//! return, and `build_url`, as KumoMTA documents them. The Response object
//! is in `http_response.rs`.

use crate::http_response::HttpResponse;
use crate::lua_errors::{error_chain, lua_err, lua_err_from, require_runtime};
use mlua::{AnyUserData, Lua, Table, UserData, UserDataMethods, Value};
use parking_lot::Mutex;
use policy::{deserialize_duration, from_lua_params, kumo_module, parse_duration};
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder};
use rustls::ClientConfig;
use rustls_platform_verifier::BuilderVerifierExt;
use serde::Deserialize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// `build_client { ... }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientParams {
    /// `User-Agent` of every request.
    user_agent: Option<String>,
    /// Log connection details at `reqwest=trace`.
    #[serde(default)]
    connection_verbose: bool,
    /// How long an idle pooled connection is kept.
    #[serde(
        default = "default_pool_idle_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pool_idle_timeout: Duration,
    /// Bound on each request (connect to last body byte); a request may
    /// set its own.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    timeout: Duration,
    /// Accept any server certificate (tests, development only).
    #[serde(default)]
    accept_invalid_certs: bool,
}

fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(90)
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// The process's TLS client configurations, built on first use (loading
/// the system's roots once, not per client).
#[derive(Default)]
pub(crate) struct HttpTls {
    verified: OnceLock<Arc<ClientConfig>>,
    accept_any: OnceLock<Arc<ClientConfig>>,
}

impl HttpTls {
    fn config(&self, accept_invalid_certs: bool) -> Result<ClientConfig, String> {
        let (cell, build): (_, fn() -> Result<ClientConfig, String>) = if accept_invalid_certs {
            (&self.accept_any, || {
                tls::client_config(tls::ClientTrust::AcceptAny)
                    .map(|config| (*config).clone())
                    .map_err(|err| format!("{err:#}"))
            })
        } else {
            (&self.verified, || {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .and_then(|builder| builder.with_platform_verifier())
                    .map(|builder| builder.with_no_client_auth())
                    .map_err(|err| err.to_string())
            })
        };
        if let Some(config) = cell.get() {
            return Ok((**config).clone());
        }
        let mut config = build()?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let _ = cell.set(Arc::new(config.clone()));
        Ok(config)
    }
}

/// A client (`build_client`'s result). `close` drops this handle's
/// connection pool.
#[derive(Clone)]
struct HttpClient(Arc<Mutex<Option<reqwest::Client>>>);

impl HttpClient {
    fn request(&self, function: &str, method: Method, url: Value) -> mlua::Result<HttpRequest> {
        let url = string_arg(function, "URL", &url)?;
        let parsed = url::Url::parse(&url)
            .map_err(|err| lua_err(function, format!("{}: {err}", display_url(&url))))?;
        let client = self
            .0
            .lock()
            .clone()
            .ok_or_else(|| lua_err(function, "the client was closed"))?;
        Ok(HttpRequest {
            builder: Arc::new(Mutex::new(Some(client.request(method.clone(), parsed)))),
            target: format!("{method} {}", display_url(&url)).into(),
        })
    }
}

impl UserData for HttpClient {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |_, this, url: Value| {
            this.request("kumo.http: get", Method::GET, url)
        });
        methods.add_method("post", |_, this, url: Value| {
            this.request("kumo.http: post", Method::POST, url)
        });
        methods.add_method("put", |_, this, url: Value| {
            this.request("kumo.http: put", Method::PUT, url)
        });
        methods.add_method("close", |_, this, ()| {
            this.0.lock().take();
            Ok(())
        });
    }
}

/// A request being configured; `send` consumes it.
#[derive(Clone)]
struct HttpRequest {
    builder: Arc<Mutex<Option<RequestBuilder>>>,
    /// `METHOD URL` (without a password) for messages.
    target: Arc<str>,
}

impl HttpRequest {
    /// Replace the builder by `change(builder)`; the methods return the
    /// request itself, so calls chain (`req:header(...):body(...)`).
    fn apply(
        request: AnyUserData,
        function: &str,
        change: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> mlua::Result<AnyUserData> {
        {
            let this = request.borrow::<HttpRequest>()?;
            let mut slot = this.builder.lock();
            let builder = slot
                .take()
                .ok_or_else(|| lua_err(function, "the request was already sent"))?;
            *slot = Some(change(builder));
        }
        Ok(request)
    }

    async fn send(&self) -> mlua::Result<HttpResponse> {
        require_runtime("kumo.http: send")?;
        let builder = self
            .builder
            .lock()
            .take()
            .ok_or_else(|| lua_err("kumo.http: send", "the request was already sent"))?;
        let response = builder.send().await.map_err(|err| {
            let detail = error_chain(&err.without_url());
            lua_err("kumo.http: send", format!("{}: {detail}", self.target))
        })?;
        Ok(HttpResponse::new(response, self.target.clone()))
    }
}

impl UserData for HttpRequest {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_function(
            "header",
            |_, (request, name, value): (AnyUserData, Value, Value)| {
                let name = header_name("kumo.http: header", &name)?;
                let value = header_value("kumo.http: header", &value)?;
                HttpRequest::apply(request, "kumo.http: header", |b| b.header(name, value))
            },
        );
        methods.add_function("headers", |_, (request, headers): (AnyUserData, Table)| {
            let mut pairs = Vec::new();
            for pair in headers.pairs::<Value, Value>() {
                let (name, value) = pair?;
                pairs.push((
                    header_name("kumo.http: headers", &name)?,
                    header_value("kumo.http: headers", &value)?,
                ));
            }
            HttpRequest::apply(request, "kumo.http: headers", |builder| {
                pairs.into_iter().fold(builder, |builder, (name, value)| {
                    builder.header(name, value)
                })
            })
        });
        methods.add_function(
            "basic_auth",
            |_, (request, user, password): (AnyUserData, Value, Option<Value>)| {
                let function = "kumo.http: basic_auth";
                let user = string_arg(function, "username", &user)?;
                let password = match password {
                    None | Some(Value::Nil) => None,
                    Some(value) => Some(string_arg(function, "password", &value)?),
                };
                HttpRequest::apply(request, function, |b| b.basic_auth(user, password))
            },
        );
        methods.add_function(
            "bearer_auth",
            |_, (request, token): (AnyUserData, Value)| {
                let token = string_arg("kumo.http: bearer_auth", "token", &token)?;
                HttpRequest::apply(request, "kumo.http: bearer_auth", |b| b.bearer_auth(token))
            },
        );
        methods.add_function("body", |_, (request, body): (AnyUserData, Value)| {
            let Value::String(body) = body else {
                return Err(lua_err(
                    "kumo.http: body",
                    format!("expected a string, got {}", body.type_name()),
                ));
            };
            let bytes = body.as_bytes().to_vec();
            HttpRequest::apply(request, "kumo.http: body", |b| b.body(bytes))
        });
        methods.add_function(
            "form_url_encoded",
            |_, (request, params): (AnyUserData, Table)| {
                let function = "kumo.http: form_url_encoded";
                let body = form_body(function, &params)?;
                HttpRequest::apply(request, function, |b| {
                    b.header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body)
                })
            },
        );
        methods.add_function("timeout", |_, (request, timeout): (AnyUserData, Value)| {
            let timeout = duration_arg("kumo.http: timeout", &timeout)?;
            HttpRequest::apply(request, "kumo.http: timeout", |b| b.timeout(timeout))
        });
        methods.add_async_method("send", |_, this, ()| {
            // Not borrowed while the request is in flight.
            let this = this.clone();
            async move { this.send().await }
        });
    }
}

/// A string argument (Lua strings that are not UTF-8 are refused).
fn string_arg(function: &str, what: &str, value: &Value) -> mlua::Result<String> {
    match value {
        Value::String(s) => s
            .to_str()
            .map(|s| s.to_string())
            .map_err(|_| lua_err(function, format!("the {what} is not UTF-8"))),
        Value::Integer(_) | Value::Number(_) => Ok(value.to_string()?),
        other => Err(lua_err(
            function,
            format!("expected a string as {what}, got {}", other.type_name()),
        )),
    }
}

fn header_name(function: &str, value: &Value) -> mlua::Result<HeaderName> {
    let name = string_arg(function, "header name", value)?;
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| lua_err(function, format!("invalid header name {name:?}")))
}

fn header_value(function: &str, value: &Value) -> mlua::Result<HeaderValue> {
    let text = string_arg(function, "header value", value)?;
    // The value may be a credential: the message does not repeat it.
    HeaderValue::from_str(&text).map_err(|_| lua_err(function, "invalid header value"))
}

fn duration_arg(function: &str, value: &Value) -> mlua::Result<Duration> {
    match value {
        Value::Integer(_) | Value::Number(_) => {
            Duration::try_from_secs_f64(value.as_f64().unwrap_or(-1.0))
                .map_err(|_| lua_err(function, "the duration must be >= 0 seconds"))
        }
        Value::String(_) => parse_duration(&string_arg(function, "duration", value)?)
            .map_err(|err| lua_err(function, err)),
        other => Err(lua_err(
            function,
            format!("expected a duration, got {}", other.type_name()),
        )),
    }
}

/// `{ key = 'value', ... }` as `key=value&...`, keys sorted so the body
/// does not depend on table iteration order.
fn form_body(function: &str, params: &Table) -> mlua::Result<String> {
    let mut pairs = Vec::new();
    for pair in params.pairs::<Value, Value>() {
        let (key, value) = pair?;
        pairs.push((
            string_arg(function, "key", &key)?,
            string_arg(function, "value", &value)?,
        ));
    }
    pairs.sort();
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in &pairs {
        form.append_pair(key, value);
    }
    Ok(form.finish())
}

/// A URL for messages: its password, if any, masked.
fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => format!("{:?}", url.chars().take(200).collect::<String>()),
    }
}

fn build_client(tls: &HttpTls, params: ClientParams) -> Result<HttpClient, String> {
    let config = tls.config(params.accept_invalid_certs)?;
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .pool_idle_timeout(params.pool_idle_timeout)
        .timeout(params.timeout)
        .connect_timeout(params.timeout)
        .connection_verbose(params.connection_verbose);
    if let Some(agent) = &params.user_agent {
        builder = builder.user_agent(agent);
    }
    let client = builder.build().map_err(|err| error_chain(&err))?;
    Ok(HttpClient(Arc::new(Mutex::new(Some(client)))))
}

/// `kumo.http.build_url(base, { k = v })`: the query pairs appended in key
/// order.
fn build_url(base: &str, params: Option<Table>) -> mlua::Result<String> {
    let function = "kumo.http: build_url";
    let mut url = url::Url::parse(base)
        .map_err(|err| lua_err(function, format!("{}: {err}", display_url(base))))?;
    if let Some(params) = params {
        let body = form_body(function, &params)?;
        let existing = url.query().map(str::to_owned);
        let query = match existing {
            Some(existing) if !existing.is_empty() && !body.is_empty() => {
                format!("{existing}&{body}")
            }
            Some(existing) if body.is_empty() => existing,
            _ => body,
        };
        url.set_query((!query.is_empty()).then_some(query.as_str()));
    }
    Ok(url.to_string())
}

/// Install `kumo.http` (also `require 'kumo.http'`).
pub(crate) fn register(lua: &Lua, tls: &Arc<HttpTls>) -> mlua::Result<()> {
    let module = lua.create_table()?;
    let tls = tls.clone();
    module.set(
        "build_client",
        lua.create_function(move |lua, params: Value| {
            let params: ClientParams = from_lua_params(lua, params)
                .map_err(|err| lua_err_from("kumo.http: build_client", err))?;
            build_client(&tls, params).map_err(|err| lua_err("kumo.http: build_client", err))
        })?,
    )?;
    module.set(
        "build_url",
        lua.create_function(|_, (base, params): (Value, Option<Table>)| {
            let base = string_arg("kumo.http: build_url", "base URL", &base)?;
            build_url(&base, params)
        })?,
    )?;
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("kumo.http", &module)?;
    kumo_module(lua)?.set("http", module)
}
