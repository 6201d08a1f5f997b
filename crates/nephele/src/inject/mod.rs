//! `POST /api/inject/v1`: validate, render per recipient (off the async
//! runtime, within the request's limits), let the policy see each message,
//! commit the accepted ones to the spool, then queue.

pub mod checks;
pub mod limits;
pub mod render;
pub mod render_pool;
pub mod request;

use crate::logs::{LocalLogger, LogRecord, RecordType, Response as LogResponse};
use crate::lua_api::HTTP_MESSAGE_GENERATED;
use crate::metrics::{InjectionOutcome, NepheleMetrics, ServiceLabel};
use crate::queues::{QueueKey, QueueManager};
use aaa::AuthInfo;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http_listener::ConnectionInfo;
use limits::LimitExceeded;
use message::{LuaMessage, Message};
use policy::{PolicyPool, SerdeArg};
use render::{RenderError, Templates};
use render_pool::{PoolError, RenderPool};
use request::{RequestError, ValidRequest};
use serde::Serialize;
use serde_json::json;
use spool::{GroupCommitter, SpoolEntry};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info};
use utoipa::ToSchema;

/// Bound on waiting for the spool commit of one request's messages.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// `Retry-After` (seconds) of a `503` while the spool is failing.
pub const SPOOL_RETRY_AFTER_SECS: u64 = 5;

/// What the injection endpoint needs. `spool` and `queues` are `None` when
/// the policy defined no spool: injection is then refused.
pub struct InjectService {
    /// The policy (`http_message_generated`).
    pub policy: PolicyPool,
    /// Where accepted messages are committed.
    pub spool: Option<Arc<GroupCommitter>>,
    /// Where committed messages go next.
    pub queues: Option<Arc<QueueManager>>,
    /// `Reception` records.
    pub logs: Arc<LocalLogger>,
    /// Where templates are rendered, with the injection limits.
    pub render: RenderPool,
    /// Counts of requests and messages.
    pub metrics: Arc<NepheleMetrics>,
}

/// The answer to an injection.
#[derive(Debug, Serialize, ToSchema)]
pub struct InjectV1Response {
    /// Recipients whose message was spooled (or discarded by queue `null`).
    pub success_count: usize,
    /// Recipients whose message was not.
    pub fail_count: usize,
    /// Those recipients' addresses, in request order.
    pub failed_recipients: Vec<String>,
    /// `address: reason` for each failed recipient.
    pub errors: Vec<String>,
}

/// Why a request was refused whole: nothing of it is spooled.
#[derive(Debug)]
enum Refusal {
    /// `400` or `422`, naming the field.
    Request(RequestError),
    /// `413` naming the limit, or `408` past `render_timeout`.
    Limit(LimitExceeded),
    /// `503` with `Retry-After`: the spool is failing (its details are
    /// logged, never sent).
    SpoolUnavailable(Outcome),
    /// `500`: a render thread failed.
    Internal,
}

impl Refusal {
    fn outcome(&self) -> InjectionOutcome {
        match self {
            Refusal::Request(_) => InjectionOutcome::Invalid,
            Refusal::Limit(LimitExceeded::Deadline(_)) => InjectionOutcome::Timeout,
            Refusal::Limit(_) => InjectionOutcome::TooLarge,
            Refusal::SpoolUnavailable(_) => InjectionOutcome::Unavailable,
            Refusal::Internal => InjectionOutcome::Failed,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Request(err) => {
                let status = match err {
                    RequestError::Syntax(_) => StatusCode::BAD_REQUEST,
                    RequestError::Shape(_) | RequestError::Field { .. } => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                };
                (status, format!("{err}\n")).into_response()
            }
            Refusal::Limit(err) => {
                let status = match err {
                    LimitExceeded::Deadline(_) => StatusCode::REQUEST_TIMEOUT,
                    _ => StatusCode::PAYLOAD_TOO_LARGE,
                };
                (status, format!("request refused: {err}\n")).into_response()
            }
            Refusal::SpoolUnavailable(outcome) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, SPOOL_RETRY_AFTER_SECS.to_string())],
                Json(outcome.into_response_body()),
            )
                .into_response(),
            Refusal::Internal => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
            }
        }
    }
}

impl From<RequestError> for Refusal {
    fn from(err: RequestError) -> Self {
        Refusal::Request(err)
    }
}

impl From<LimitExceeded> for Refusal {
    fn from(err: LimitExceeded) -> Self {
        Refusal::Limit(err)
    }
}

/// The value of meta `http_auth`: the first `HttpBasicAuth` identity, else
/// the first identity, else the peer address (that matched
/// `trusted_hosts`, or the ACL would not have let the request in).
pub fn http_auth_value(auth: &AuthInfo, conn: &ConnectionInfo) -> String {
    http_listener::principal(auth)
        .map(str::to_owned)
        .unwrap_or_else(|| conn.peer.ip().to_string())
}

/// Inject messages: one per recipient.
#[utoipa::path(post, path = "/api/inject/v1", tag = "inject",
    request_body = request::InjectV1Request,
    responses(
        (status = 200, description = "Per-recipient outcome", body = InjectV1Response),
        (status = 400, description = "Not JSON", body = String),
        (status = 408, description = "Rendering did not finish within render_timeout", body = String),
        (status = 413, description = "Past an injection limit (named); nothing was spooled", body = String),
        (status = 422, description = "Missing or invalid field, control characters in a header or address, template syntax error", body = String),
        (status = 503, description = "No spool is defined, or the spool is failing (with Retry-After); nothing was acknowledged", body = InjectV1Response)))]
pub async fn inject_v1(
    State(service): State<Arc<InjectService>>,
    Extension(conn): Extension<ConnectionInfo>,
    Extension(auth): Extension<AuthInfo>,
    body: Bytes,
) -> Response {
    let (Some(spool), Some(queues)) = (&service.spool, &service.queues) else {
        service.metrics.request(InjectionOutcome::Unavailable);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "injection refused: no spool is defined (call kumo.define_spool in the init event)\n",
        )
            .into_response();
    };
    match inject(&service, spool, queues, body, &auth, &conn).await {
        Ok(outcome) => {
            service.metrics.request(InjectionOutcome::Accepted);
            debug!(peer = %conn.peer, success = outcome.success_count, failed = outcome.failed_recipients.len(), "injection done");
            (StatusCode::OK, Json(outcome.into_response_body())).into_response()
        }
        Err(refusal) => {
            service.metrics.request(refusal.outcome());
            if !matches!(refusal, Refusal::SpoolUnavailable(_)) {
                info!(peer = %conn.peer, "injection refused: {refusal:?}");
            }
            refusal.into_response()
        }
    }
}

async fn inject(
    service: &InjectService,
    spool: &GroupCommitter,
    queues: &Arc<QueueManager>,
    body: Bytes,
    auth: &AuthInfo,
    conn: &ConnectionInfo,
) -> Result<Outcome, Refusal> {
    let (valid, rendered) = prepare_and_render(&service.render, body).await?;
    let mut outcome = Outcome::default();
    let max_message_size = service.render.limits().max_message_size;
    let generated = generate_all(
        &service.policy,
        valid,
        rendered,
        auth,
        conn,
        max_message_size,
        &mut outcome,
    )
    .await?;
    commit(
        service,
        spool,
        queues,
        generated.to_spool,
        &mut outcome,
        conn,
    )
    .await?;
    for (message, key) in generated.discarded {
        reception(&service.logs, &message, &key);
        debug!(id = %message.id(), "queue null: discarded");
        outcome.success_count += 1;
    }
    service
        .metrics
        .received
        .get_or_create(&ServiceLabel { service: "http" })
        .inc_by(outcome.success_count as u64);
    service
        .metrics
        .recipients_rejected
        .inc_by(outcome.failed_recipients.len() as u64);
    Ok(outcome)
}

/// Each recipient's message, or why that recipient alone failed.
type Rendered = Vec<Result<Vec<u8>, String>>;

/// Parse and check the body, then (on a render thread) compile its
/// templates and render every recipient's message: a request refused here
/// generates nothing further.
async fn prepare_and_render(
    pool: &RenderPool,
    body: Bytes,
) -> Result<(ValidRequest, Rendered), Refusal> {
    let valid = request::parse(&body)?;
    drop(body);
    checks::refuse_control_characters(&valid.request)?;
    checks::refuse_too_many_recipients(&valid.request, pool.limits())?;
    let job = pool.run(move |budget| -> Result<(ValidRequest, Rendered), Refusal> {
        let templates = Templates::compile(&valid.request)?;
        let mut rendered = Vec::with_capacity(valid.recipients.len());
        for index in 0..valid.recipients.len() {
            match templates.render_message(&valid, index, budget) {
                Ok(data) => rendered.push(Ok(data)),
                Err(RenderError::Recipient(text)) => rendered.push(Err(text)),
                Err(RenderError::Limit(err)) => return Err(Refusal::Limit(err)),
                Err(RenderError::Field(err)) => return Err(Refusal::Request(err)),
            }
        }
        Ok((valid, rendered))
    });
    match job.await {
        Ok(result) => result,
        Err(PoolError::Limit(err)) => Err(Refusal::Limit(err)),
        Err(PoolError::Failed(text)) => {
            error!("rendering failed: {text}");
            Err(Refusal::Internal)
        }
    }
}

/// The messages the policy accepted, split by whether their queue is
/// `null` (discarded, never spooled).
#[derive(Default)]
struct Generated {
    to_spool: Vec<(Message, QueueKey)>,
    discarded: Vec<(Message, QueueKey)>,
}

/// Make each rendered message and run the policy on it; a refused one goes
/// to `outcome`. A message the policy made larger than `max_message_size`
/// refuses the whole request.
async fn generate_all(
    policy: &PolicyPool,
    valid: ValidRequest,
    rendered: Rendered,
    auth: &AuthInfo,
    conn: &ConnectionInfo,
    max_message_size: usize,
    outcome: &mut Outcome,
) -> Result<Generated, Refusal> {
    let http_auth = http_auth_value(auth, conn);
    let mut generated = Generated::default();
    for (index, data) in rendered.into_iter().enumerate() {
        let message = match data {
            Ok(data) => generate(policy, &valid, index, data, auth, &http_auth, conn).await,
            Err(text) => Err(text),
        };
        match message {
            Ok(message) if message.data().len() > max_message_size => {
                return Err(Refusal::Limit(LimitExceeded::Size {
                    limit: "max_message_size",
                    what: format!("recipients[{index}]: the message after http_message_generated"),
                    bytes: max_message_size,
                }));
            }
            Ok(message) => {
                let key = QueueKey::for_message(&message);
                if key.is_null() {
                    generated.discarded.push((message, key));
                } else {
                    generated.to_spool.push((message, key));
                }
            }
            Err(text) => outcome.fail(&valid.request.recipients[index].email, &text),
        }
    }
    Ok(generated)
}

/// Commit `to_spool` in one spool transaction, then log and queue each
/// message; if the commit fails, the request is refused with `503`:
/// nothing is acknowledged that is not durable.
async fn commit(
    service: &InjectService,
    spool: &GroupCommitter,
    queues: &QueueManager,
    to_spool: Vec<(Message, QueueKey)>,
    outcome: &mut Outcome,
    conn: &ConnectionInfo,
) -> Result<(), Refusal> {
    let entries = to_spool
        .iter()
        .map(|(message, _)| SpoolEntry {
            id: message.id().to_string(),
            meta: message.encode_meta(),
            data: message.data().to_vec(),
        })
        .collect();
    let started = Instant::now();
    let result = spool.store(entries, COMMIT_TIMEOUT).await;
    if let Err(err) = result {
        error!(peer = %conn.peer, count = to_spool.len(), "spool commit failed: {err}");
        let mut refused = std::mem::take(outcome);
        for (message, _) in &to_spool {
            refused.fail(
                &message.recipient().email(),
                "the spool is unavailable; nothing was accepted, try again later",
            );
        }
        return Err(Refusal::SpoolUnavailable(refused));
    }
    if !to_spool.is_empty() {
        let metrics = &service.metrics;
        metrics
            .save_latency
            .0
            .observe(started.elapsed().as_secs_f64());
        metrics.spooled.inc_by(to_spool.len() as u64);
    }
    for (message, key) in to_spool {
        reception(&service.logs, &message, &key);
        queues.insert(&message, key);
        outcome.success_count += 1;
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Outcome {
    success_count: usize,
    failed_recipients: Vec<String>,
    errors: Vec<String>,
}

impl Outcome {
    fn fail(&mut self, recipient: &str, text: &str) {
        self.failed_recipients.push(recipient.to_owned());
        self.errors.push(format!("{recipient}: {text}"));
    }

    fn into_response_body(self) -> InjectV1Response {
        InjectV1Response {
            success_count: self.success_count,
            fail_count: self.failed_recipients.len(),
            failed_recipients: self.failed_recipients,
            errors: self.errors,
        }
    }
}

fn reception(logs: &LocalLogger, message: &Message, key: &QueueKey) {
    let response = LogResponse::new(250, (2, 0, 0), "queued");
    logs.log(LogRecord::new(
        RecordType::Reception,
        message,
        &key.name,
        response,
        0,
    ));
}

/// Make recipient `index`'s message from its rendered `data`, set its meta
/// and run `http_message_generated`; an error text fails only this
/// recipient.
async fn generate(
    policy: &PolicyPool,
    valid: &ValidRequest,
    index: usize,
    data: Vec<u8>,
    auth: &AuthInfo,
    http_auth: &str,
    conn: &ConnectionInfo,
) -> Result<Message, String> {
    let mut message = Message::new(valid.sender.clone(), valid.recipients[index].clone(), data);
    message.set_meta("http_auth", json!(http_auth));
    message.set_meta("reception_protocol", json!("HTTP"));
    message.set_meta("received_from", json!(conn.peer.ip().to_string()));
    let shared = LuaMessage::new(message);
    policy
        .call(
            &HTTP_MESSAGE_GENERATED,
            (shared.clone(), SerdeArg(auth.clone())),
        )
        .await
        .map_err(|err| crate::policy_error_text(&err))?;
    Ok(shared.snapshot())
}
