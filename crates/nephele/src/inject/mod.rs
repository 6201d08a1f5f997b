//! `POST /api/inject/v1`: validate, render per recipient (off the async
//! runtime, within the request's limits), let the policy see each message,
//! commit the accepted ones to the spool, then queue.

pub mod checks;
pub mod idempotency;
pub mod identity_limits;
pub mod limits;
pub mod mime;
pub mod refusal;
pub mod render;
pub mod render_pool;
pub mod render_worker;
pub mod request;
pub mod trace;

use crate::logs::{LocalLogger, LogRecord, RecordType, Response as LogResponse};
use crate::lua_api::HTTP_MESSAGE_GENERATED;
use crate::metrics::{InjectionOutcome, NepheleMetrics, ServiceLabel};
use crate::queues::{QueueKey, QueueManager};
use aaa::AuthInfo;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http_listener::ConnectionInfo;
use idempotency::{Claim, IdempotencyStore, Lookup};
use identity_limits::{IdentityRefusal, InjectionIdentityControl};
use limits::LimitExceeded;
use message::{LuaMessage, Message};
use policy::{PolicyPool, SerdeArg};
use refusal::Refusal;
use render_pool::{PoolError, RenderPool, Rendered};
use request::ValidRequest;
use serde::Serialize;
use serde_json::json;
use spool::{GroupCommitter, SpoolEntry};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info};
use utoipa::ToSchema;

/// Bound on waiting for the spool commit of one request's messages.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The request header naming an idempotent request.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

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
    /// `http_server_get_injection_limits`: cached answers, rate windows.
    pub identity_limits: InjectionIdentityControl,
    /// `Idempotency-Key` records (loaded from the spool).
    pub idempotency: Arc<IdempotencyStore>,
}

/// The answer to an injection.
#[derive(Debug, Default, Serialize, ToSchema)]
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
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters: a repeat with the same key (same identity) within idempotency_retention gets the first answer again and spools nothing")),
    responses(
        (status = 200, description = "Per-recipient outcome (a failed recipient is listed in failed_recipients and errors; the others are spooled)", body = InjectV1Response),
        (status = 400, description = "Not JSON, or an invalid Idempotency-Key", body = String),
        (status = 408, description = "Rendering did not finish within render_timeout", body = String),
        (status = 409, description = "A request with the same Idempotency-Key is being processed (with Retry-After)", body = String),
        (status = 413, description = "Past an injection limit (named, e.g. max_recipients or the identity's max_recipients_per_request); nothing was spooled", body = String),
        (status = 422, description = "Missing or invalid field, unknown template_dialect, control characters in a header, template syntax error, or an Idempotency-Key reused with another body", body = String),
        (status = 429, description = "Past the identity's max_message_rate (with Retry-After)", body = String),
        (status = 500, description = "policy error: http_server_get_injection_limits failed", body = String),
        (status = 503, description = "No spool is defined, the spool is failing, or max_idempotency_records are held (with Retry-After); nothing was acknowledged", body = InjectV1Response)))]
pub async fn inject_v1(
    State(service): State<Arc<InjectService>>,
    Extension(conn): Extension<ConnectionInfo>,
    Extension(auth): Extension<AuthInfo>,
    headers: HeaderMap,
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
    let claim = match claim_key(&service, spool, &headers, &auth, &conn, &body) {
        Ok(KeyState::Replay(status, body)) => {
            service.metrics.request(InjectionOutcome::Replayed);
            return json_answer(status, body);
        }
        Ok(KeyState::New(claim)) => claim,
        Err(refusal) => return refuse(&service, &conn, refusal),
    };
    match inject(&service, spool, queues, body, &auth, &conn, claim).await {
        Ok(body) => {
            service.metrics.request(InjectionOutcome::Accepted);
            debug!(peer = %conn.peer, "injection done");
            json_answer(200, body)
        }
        Err(refusal) => refuse(&service, &conn, refusal),
    }
}

fn refuse(service: &InjectService, conn: &ConnectionInfo, refusal: Refusal) -> Response {
    service.metrics.request(refusal.outcome());
    match &refusal {
        Refusal::SpoolUnavailable(_) => {}
        Refusal::Identity(IdentityRefusal::Policy { .. }) | Refusal::Internal => {
            error!(peer = %conn.peer, "injection refused: {refusal:?}")
        }
        _ => info!(peer = %conn.peer, "injection refused: {refusal:?}"),
    }
    refusal.into_response()
}

/// An answer whose JSON body was serialized once (a replay sends the same
/// bytes).
fn json_answer(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// What the `Idempotency-Key` header says to do.
enum KeyState {
    /// Answer again.
    Replay(u16, String),
    /// Process; with the claimed key, if the request has one.
    New(Option<Claim>),
}

fn claim_key(
    service: &InjectService,
    spool: &GroupCommitter,
    headers: &HeaderMap,
    auth: &AuthInfo,
    conn: &ConnectionInfo,
    body: &[u8],
) -> Result<KeyState, Refusal> {
    let Some(key) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(KeyState::New(None));
    };
    if !idempotency::valid_key(key.as_bytes()) {
        return Err(Refusal::BadKey);
    }
    let identity = http_auth_value(auth, conn);
    let mut expired = Vec::new();
    let lookup = service
        .idempotency
        .lookup(&identity, key.as_bytes(), body, &mut expired);
    for id in expired {
        spool.remove(id);
    }
    match lookup {
        Lookup::Replay(status, body) => Ok(KeyState::Replay(status, body)),
        Lookup::Mismatch => Err(Refusal::KeyReused),
        Lookup::InFlight => Err(Refusal::KeyInFlight),
        Lookup::Full => Err(Refusal::KeysFull),
        Lookup::New(claim) => Ok(KeyState::New(Some(claim))),
    }
}

/// Check the request and its identity's limits, render, generate, and
/// commit the messages (with the key's record) in one spool commit; the
/// answer's JSON body.
async fn inject(
    service: &InjectService,
    spool: &GroupCommitter,
    queues: &Arc<QueueManager>,
    body: Bytes,
    auth: &AuthInfo,
    conn: &ConnectionInfo,
    claim: Option<Claim>,
) -> Result<String, Refusal> {
    // The body is kept for a render worker, which parses it again.
    let valid = request::parse(&body)?;
    checks::refuse_control_characters(&valid.request)?;
    let limits = service
        .identity_limits
        .limits(&service.policy, auth)
        .await?;
    let identity_max = limits
        .as_ref()
        .and_then(|(_, limits)| limits.max_recipients_per_request);
    checks::refuse_too_many_recipients(&valid.request, service.render.limits(), identity_max)?;
    if let Some((identity, limits)) = &limits {
        if let Some(rate) = &limits.max_message_rate {
            let messages = valid.request.recipients.len();
            service
                .identity_limits
                .take_messages(identity, rate, messages)?;
        }
    }
    let (valid, rendered) = render_all(&service.render, body, valid).await?;
    let mut outcome = InjectV1Response::default();
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
    outcome.success_count = generated.to_spool.len() + generated.discarded.len();
    let answer = serde_json::to_string(&outcome).map_err(|_| Refusal::Internal)?;
    let record = claim
        .as_ref()
        .map(|claim| service.idempotency.entry(claim, 200, &answer));
    commit(
        service,
        spool,
        queues,
        generated.to_spool,
        record.clone(),
        conn,
    )
    .await?;
    if let (Some(claim), Some(record)) = (claim, record) {
        service.idempotency.recorded(claim, &record);
    }
    for (message, key) in generated.discarded {
        reception(&service.logs, &message, &key);
        debug!(id = %message.id(), "queue null: discarded");
    }
    service
        .metrics
        .received
        .get_or_create(&ServiceLabel { service: "http" })
        .inc_by(outcome.success_count as u64);
    service
        .metrics
        .recipients_rejected
        .inc_by(outcome.fail_count as u64);
    Ok(answer)
}

/// Outside the async runtime (in a render worker, or on a render thread):
/// compile the request's templates and render every recipient's message
/// (a recipient that cannot be rendered fails alone).
async fn render_all(
    pool: &RenderPool,
    body: Bytes,
    valid: ValidRequest,
) -> Result<(ValidRequest, Rendered), Refusal> {
    match pool.render(body, valid).await {
        Ok(rendered) => Ok(rendered),
        Err(PoolError::Limit(err)) => Err(Refusal::Limit(err)),
        Err(PoolError::Request(err)) => Err(Refusal::Request(err)),
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
    outcome: &mut InjectV1Response,
) -> Result<Generated, Refusal> {
    let http_auth = http_auth_value(auth, conn);
    let mut generated = Generated::default();
    for (index, data) in rendered.into_iter().enumerate() {
        let message = match data {
            Ok(data) => generate(policy, &valid, index, data, auth, &http_auth, conn)
                .await
                .map(|mut message| {
                    // After the event, with the meta it set; a discarded
                    // message gets none (as upstream).
                    if !QueueKey::for_message(&message).is_null() {
                        trace::add_supplemental(&valid.request.trace_headers, &mut message);
                    }
                    message
                }),
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

/// Commit `to_spool` (and the idempotency `record`) in one spool
/// transaction, then log and queue each message; if the commit fails, the
/// request is refused with `503`: nothing is acknowledged that is not
/// durable.
async fn commit(
    service: &InjectService,
    spool: &GroupCommitter,
    queues: &QueueManager,
    to_spool: Vec<(Message, QueueKey)>,
    record: Option<SpoolEntry>,
    conn: &ConnectionInfo,
) -> Result<(), Refusal> {
    let mut entries: Vec<SpoolEntry> = to_spool
        .iter()
        .map(|(message, _)| SpoolEntry {
            id: message.id().to_string(),
            meta: message.encode_meta(),
            data: message.data().to_vec(),
        })
        .collect();
    entries.extend(record);
    let started = Instant::now();
    let result = spool.store(entries, COMMIT_TIMEOUT).await;
    if let Err(err) = result {
        error!(peer = %conn.peer, count = to_spool.len(), "spool commit failed: {err}");
        let mut refused = InjectV1Response::default();
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
    }
    Ok(())
}

impl InjectV1Response {
    fn fail(&mut self, recipient: &str, text: &str) {
        self.failed_recipients.push(recipient.to_owned());
        self.errors.push(format!("{recipient}: {text}"));
        self.fail_count += 1;
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
    let recipient = valid.recipients[index].clone()?;
    let mut message = Message::new(valid.sender.clone(), recipient, data);
    message.set_meta("http_auth", json!(http_auth));
    message.set_meta("reception_protocol", json!("HTTP"));
    message.set_meta("received_from", json!(conn.peer.ip().to_string()));
    let metadata = &valid.request.recipients[index].metadata;
    if !metadata.is_empty() {
        message.set_meta("extra", serde_json::Value::Object(metadata.clone()));
    }
    trace::add_received(&valid.request.trace_headers, &mut message, conn.peer.ip());
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
