//! Why an injection request was refused whole (nothing of it is spooled),
//! and the HTTP answer for each reason.

use super::idempotency::SWEEP_INTERVAL;
use super::identity_limits::IdentityRefusal;
use super::limits::LimitExceeded;
use super::request::RequestError;
use super::{InjectV1Response, SPOOL_RETRY_AFTER_SECS};
use crate::metrics::InjectionOutcome;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `Retry-After` (seconds) of a `409`: the first request with the key is
/// still being processed.
pub const IN_FLIGHT_RETRY_AFTER_SECS: u64 = 1;

/// Why a request was refused whole.
#[derive(Debug)]
pub enum Refusal {
    /// `400` or `422`, naming the field.
    Request(RequestError),
    /// `413` naming the limit, or `408` past `render_timeout`.
    Limit(LimitExceeded),
    /// `503` with `Retry-After`: the spool is failing (its details are
    /// logged, never sent).
    SpoolUnavailable(InjectV1Response),
    /// `429` past the identity's rate, or `500` when its limits could not
    /// be read (fail closed).
    Identity(IdentityRefusal),
    /// `400`: an `Idempotency-Key` that is empty, too long or not visible
    /// ASCII.
    BadKey,
    /// `422`: the `Idempotency-Key` was used with another body.
    KeyReused,
    /// `409`: a request with the same `Idempotency-Key` is being processed.
    KeyInFlight,
    /// `503` with `Retry-After`: `max_idempotency_records` are held.
    KeysFull,
    /// `500`: a render thread failed.
    Internal,
}

impl Refusal {
    /// The request's outcome label.
    pub fn outcome(&self) -> InjectionOutcome {
        match self {
            Refusal::Request(_) | Refusal::BadKey | Refusal::KeyReused => InjectionOutcome::Invalid,
            Refusal::Limit(LimitExceeded::Deadline(_)) => InjectionOutcome::Timeout,
            Refusal::Limit(_) => InjectionOutcome::TooLarge,
            Refusal::SpoolUnavailable(_) | Refusal::KeysFull => InjectionOutcome::Unavailable,
            Refusal::Identity(IdentityRefusal::Rate { .. }) => InjectionOutcome::RateLimited,
            Refusal::KeyInFlight => InjectionOutcome::Conflict,
            Refusal::Identity(IdentityRefusal::Policy { .. }) | Refusal::Internal => {
                InjectionOutcome::Failed
            }
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
                Json(outcome),
            )
                .into_response(),
            Refusal::Identity(IdentityRefusal::Rate {
                count,
                period,
                retry_after,
                ..
            }) => {
                // Whole seconds, rounded up: a client retrying then finds a
                // new window.
                let secs = retry_after.as_millis().div_ceil(1000).max(1);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, secs.to_string())],
                    format!(
                        "request refused: past max_message_rate ({count} messages per {})\n",
                        humantime::format_duration(period)
                    ),
                )
                    .into_response()
            }
            Refusal::Identity(IdentityRefusal::Policy { .. }) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "policy error: http_server_get_injection_limits failed (see the daemon's log)\n",
            )
                .into_response(),
            Refusal::BadKey => (
                StatusCode::BAD_REQUEST,
                "Idempotency-Key: expected 1 to 255 visible ASCII characters\n",
            )
                .into_response(),
            Refusal::KeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key: already used with a different request body\n",
            )
                .into_response(),
            Refusal::KeyInFlight => (
                StatusCode::CONFLICT,
                [(header::RETRY_AFTER, IN_FLIGHT_RETRY_AFTER_SECS.to_string())],
                "Idempotency-Key: a request with this key is being processed; retry later\n",
            )
                .into_response(),
            Refusal::KeysFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, SWEEP_INTERVAL.as_secs().to_string())],
                "Idempotency-Key: max_idempotency_records are held; retry later\n",
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

impl From<IdentityRefusal> for Refusal {
    fn from(err: IdentityRefusal) -> Self {
        Refusal::Identity(err)
    }
}
