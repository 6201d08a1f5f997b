//! `POST /api/inject/v1`: validate, render per recipient, let the policy
//! see each message, commit the accepted ones to the spool, then queue.

pub mod render;
pub mod request;

use crate::logs::{LocalLogger, LogRecord, RecordType, Response as LogResponse};
use crate::lua_api::HTTP_MESSAGE_GENERATED;
use crate::queues::{QueueKey, QueueManager};
use aaa::AuthInfo;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http_listener::ConnectionInfo;
use message::{LuaMessage, Message};
use policy::{PolicyPool, SerdeArg};
use render::Templates;
use request::{RequestError, ValidRequest};
use serde::Serialize;
use serde_json::json;
use spool::{GroupCommitter, SpoolEntry};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, info};
use utoipa::ToSchema;

/// Bound on waiting for the spool commit of one request's messages.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

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

impl RequestError {
    fn status(&self) -> StatusCode {
        match self {
            RequestError::Syntax(_) => StatusCode::BAD_REQUEST,
            RequestError::Shape(_) | RequestError::Field { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        (self.status(), format!("{self}\n")).into_response()
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
        (status = 422, description = "Missing or invalid field, template syntax error", body = String),
        (status = 500, description = "The spool commit failed; nothing was acknowledged", body = InjectV1Response),
        (status = 503, description = "No spool is defined", body = String)))]
pub async fn inject_v1(
    State(service): State<Arc<InjectService>>,
    Extension(conn): Extension<ConnectionInfo>,
    Extension(auth): Extension<AuthInfo>,
    body: Bytes,
) -> Response {
    let (Some(spool), Some(queues)) = (&service.spool, &service.queues) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "injection refused: no spool is defined (call kumo.define_spool in the init event)\n",
        )
            .into_response();
    };
    let (valid, templates) = match prepare(&body) {
        Ok(prepared) => prepared,
        Err(err) => {
            info!(peer = %conn.peer, "injection refused: {err}");
            return err.into_response();
        }
    };
    let mut outcome = Outcome::default();
    let generated = generate_all(
        &service.policy,
        &templates,
        &valid,
        &auth,
        &conn,
        &mut outcome,
    )
    .await;
    let status = commit(
        spool,
        queues,
        &service.logs,
        generated.to_spool,
        &mut outcome,
        &conn,
    )
    .await;
    for (message, key) in generated.discarded {
        reception(&service.logs, &message, &key);
        debug!(id = %message.id(), "queue null: discarded");
        outcome.success_count += 1;
    }
    debug!(peer = %conn.peer, success = outcome.success_count, failed = outcome.failed_recipients.len(), "injection done");
    (status, Json(outcome.into_response_body())).into_response()
}

/// Parse and check the body, then compile its templates: nothing is
/// generated for a request refused here.
fn prepare(body: &[u8]) -> Result<(ValidRequest, Templates), RequestError> {
    let valid = request::parse(body)?;
    let templates = Templates::compile(&valid.request)?;
    Ok((valid, templates))
}

/// The messages the policy accepted, split by whether their queue is
/// `null` (discarded, never spooled).
#[derive(Default)]
struct Generated {
    to_spool: Vec<(Message, QueueKey)>,
    discarded: Vec<(Message, QueueKey)>,
}

/// [`generate`] each recipient's message; a refused one goes to `outcome`.
async fn generate_all(
    policy: &PolicyPool,
    templates: &Templates,
    valid: &ValidRequest,
    auth: &AuthInfo,
    conn: &ConnectionInfo,
    outcome: &mut Outcome,
) -> Generated {
    let http_auth = http_auth_value(auth, conn);
    let mut generated = Generated::default();
    for index in 0..valid.recipients.len() {
        match generate(policy, templates, valid, index, auth, &http_auth, conn).await {
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
    generated
}

/// Commit `to_spool` in one spool transaction, then log and queue each
/// message; if the commit fails, every one of them fails (`500`): nothing
/// is acknowledged that is not durable.
async fn commit(
    spool: &GroupCommitter,
    queues: &Arc<QueueManager>,
    logs: &LocalLogger,
    to_spool: Vec<(Message, QueueKey)>,
    outcome: &mut Outcome,
    conn: &ConnectionInfo,
) -> StatusCode {
    let entries = to_spool
        .iter()
        .map(|(message, _)| SpoolEntry {
            id: message.id().to_string(),
            meta: message.encode_meta(),
            data: message.data().to_vec(),
        })
        .collect();
    match spool.store(entries, COMMIT_TIMEOUT).await {
        Ok(()) => {
            for (message, key) in to_spool {
                reception(logs, &message, &key);
                queues.insert(message, key);
                outcome.success_count += 1;
            }
            StatusCode::OK
        }
        Err(err) => {
            error!(peer = %conn.peer, count = to_spool.len(), "spool commit failed: {err}");
            for (message, _) in &to_spool {
                outcome.fail(
                    &message.recipient().email(),
                    &format!("spool commit failed: {err}"),
                );
            }
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

#[derive(Default)]
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

/// Render recipient `index`'s message, set its meta and run
/// `http_message_generated`; an error text fails only this recipient.
async fn generate(
    policy: &PolicyPool,
    templates: &Templates,
    valid: &ValidRequest,
    index: usize,
    auth: &AuthInfo,
    http_auth: &str,
    conn: &ConnectionInfo,
) -> Result<Message, String> {
    let data = templates.render_message(valid, index)?;
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
