//! Bounds on what one injection request may make the daemon generate, set
//! by `kumo.configure_injection { ... }` in `init`, and the writer that
//! enforces them while templates render (rendering stops at the limit; it
//! never renders first and measures after).

use policy::deserialize_duration;
use serde::{Deserialize, Serialize, Serializer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `kumo.configure_injection { ... }`. Unknown keys are an error naming the
/// key; every size is in bytes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionLimits {
    /// Largest output of one template rendering (the whole `content`, a
    /// subject, a body or a header value) for one recipient.
    #[serde(default = "default_max_rendered_size")]
    pub max_rendered_size: usize,
    /// Largest message for one recipient, as built (MIME parts and
    /// attachments included) and as `http_message_generated` leaves it.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// Most recipients in one request.
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Most bytes generated for all recipients of one request together.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Bound on rendering all messages of one request (the listener's
    /// `request_timeout` bounds the whole request as well).
    #[serde(
        default = "default_render_timeout",
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_seconds"
    )]
    pub render_timeout: Duration,
    /// Requests rendered at once, each outside the async runtime (in its
    /// own render worker process, or on its own thread in process); more
    /// wait for a free one.
    #[serde(default = "default_render_threads")]
    pub render_threads: usize,
    /// How long the answer to a request with an `Idempotency-Key` is
    /// replayed to repeats of that key (at least a second).
    #[serde(
        default = "default_idempotency_retention",
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_seconds"
    )]
    pub idempotency_retention: Duration,
    /// Most `Idempotency-Key` records held at once (each about 300 bytes
    /// of memory and a spool row until it expires); a request with a new
    /// key past it is refused with `503` and `Retry-After` until expired
    /// records are swept.
    #[serde(default = "default_max_idempotency_records")]
    pub max_idempotency_records: usize,
    /// Address space of one render worker process (`RLIMIT_AS`): a request
    /// whose templates grow values past it (string concatenation, list
    /// repetition, ...) kills only its worker and is refused with `413`
    /// naming this key. Not enforced when rendering in process.
    #[serde(default = "default_max_render_memory")]
    pub max_render_memory: usize,
}

/// The smallest `max_render_memory`: a worker needs some address space
/// before it renders anything.
pub const MIN_RENDER_MEMORY: usize = 64 * 1024 * 1024;

fn serialize_seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

impl Default for InjectionLimits {
    fn default() -> Self {
        InjectionLimits {
            max_rendered_size: default_max_rendered_size(),
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            max_request_bytes: default_max_request_bytes(),
            render_timeout: default_render_timeout(),
            render_threads: default_render_threads(),
            idempotency_retention: default_idempotency_retention(),
            max_idempotency_records: default_max_idempotency_records(),
            max_render_memory: default_max_render_memory(),
        }
    }
}

impl InjectionLimits {
    /// Checks serde cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, value) in [
            ("max_rendered_size", self.max_rendered_size),
            ("max_message_size", self.max_message_size),
            ("max_recipients", self.max_recipients),
            ("max_request_bytes", self.max_request_bytes),
            ("render_threads", self.render_threads),
            ("max_idempotency_records", self.max_idempotency_records),
        ] {
            if value == 0 {
                anyhow::bail!("{key} must be at least 1");
            }
        }
        if self.max_render_memory < MIN_RENDER_MEMORY {
            anyhow::bail!("max_render_memory must be at least {MIN_RENDER_MEMORY} bytes");
        }
        if self.render_timeout.is_zero() {
            anyhow::bail!("render_timeout must be greater than zero");
        }
        if self.idempotency_retention < Duration::from_secs(1) {
            anyhow::bail!("idempotency_retention must be at least a second");
        }
        Ok(())
    }
}

fn default_max_rendered_size() -> usize {
    10 * 1024 * 1024
}
/// As KumoMTA's `max_message_size` of its SMTP listener.
fn default_max_message_size() -> usize {
    20 * 1024 * 1024
}
/// As KumoMTA's `max_recipients_per_message` of its SMTP listener.
fn default_max_recipients() -> usize {
    1024
}
fn default_max_request_bytes() -> usize {
    64 * 1024 * 1024
}
/// As the retention of common idempotent HTTP APIs: a day covers any
/// client's retries.
fn default_idempotency_retention() -> Duration {
    Duration::from_secs(24 * 3600)
}
/// About 300 MB of records at most: a day of 11 keyed requests a second.
fn default_max_idempotency_records() -> usize {
    1_000_000
}
fn default_render_timeout() -> Duration {
    Duration::from_secs(30)
}
/// Half the cores (at least one), so rendering never takes every core from
/// the async runtime that answers other requests.
fn default_render_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

fn default_max_render_memory() -> usize {
    512 * 1024 * 1024
}

/// Why a request is refused whole with `413` (or, for the deadline, `408`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// More recipients than `max_recipients` (or the identity's
    /// `max_recipients_per_request`: `key` names which).
    #[error("{count} recipients exceed {key} ({limit})")]
    Recipients {
        /// The key: `max_recipients` or `max_recipients_per_request`.
        key: &'static str,
        /// Recipients in the request.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A limit on generated bytes; `limit` names the key.
    #[error("{what} exceeds {limit} ({bytes} bytes)")]
    Size {
        /// The key: `max_rendered_size`, `max_message_size` or
        /// `max_request_bytes`.
        limit: &'static str,
        /// What was being generated, e.g. `recipients[3]: content`.
        what: String,
        /// The limit's value.
        bytes: usize,
    },
    /// `render_timeout` passed, or the request was abandoned (its
    /// `request_timeout` passed or the client went away).
    #[error("rendering did not finish within render_timeout ({0:?})")]
    Deadline(Duration),
    /// The render worker died while rendering the request: its values grew
    /// past `max_render_memory` (or something killed it).
    #[error("rendering exceeded max_render_memory ({0} bytes): the render worker died")]
    Memory(usize),
}

/// What one request may still generate, shared by every writer of the
/// request (they run one after the other on one render thread).
pub struct RequestBudget {
    limits: InjectionLimits,
    remaining: usize,
    deadline: Instant,
    cancelled: Arc<AtomicBool>,
}

impl RequestBudget {
    /// A fresh budget starting now; `cancelled` is set when the request is
    /// abandoned.
    pub fn new(limits: &InjectionLimits, cancelled: Arc<AtomicBool>) -> Self {
        Self::until(limits, Instant::now() + limits.render_timeout, cancelled)
    }

    /// A fresh budget whose time ends at `deadline` (a render worker gets
    /// what is left of the request's `render_timeout`).
    pub fn until(limits: &InjectionLimits, deadline: Instant, cancelled: Arc<AtomicBool>) -> Self {
        RequestBudget {
            limits: limits.clone(),
            remaining: limits.max_request_bytes,
            deadline,
            cancelled,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &InjectionLimits {
        &self.limits
    }

    /// An error if the deadline passed or the request was abandoned.
    pub fn check_time(&self) -> Result<(), LimitExceeded> {
        if self.cancelled.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return Err(LimitExceeded::Deadline(self.limits.render_timeout));
        }
        Ok(())
    }

    /// Count `bytes` more of the request's output (made outside a
    /// [`CappedWriter`], e.g. by line-ending normalization).
    pub fn charge(&mut self, bytes: usize, what: &str) -> Result<(), LimitExceeded> {
        self.remaining = self
            .remaining
            .checked_sub(bytes)
            .ok_or_else(|| LimitExceeded::Size {
                limit: "max_request_bytes",
                what: what.to_owned(),
                bytes: self.limits.max_request_bytes,
            })?;
        Ok(())
    }

    /// Give back bytes charged for output that was discarded.
    pub fn refund(&mut self, bytes: usize) {
        self.remaining = (self.remaining + bytes).min(self.limits.max_request_bytes);
    }

    /// A writer for one output of at most `cap` bytes (`cap_name` is the
    /// key named when it is reached), also bounded by what the request may
    /// still generate and by its deadline.
    pub fn writer<'a>(&'a mut self, cap: usize, cap_name: &'static str) -> CappedWriter<'a> {
        CappedWriter {
            out: Vec::new(),
            cap,
            cap_name,
            budget: self,
            exceeded: None,
        }
    }
}

/// An `io::Write` into memory that fails the write that would pass its cap,
/// the request's remaining bytes or its deadline, so MiniJinja and
/// mail-builder stop generating right there. The reason is kept for
/// [`CappedWriter::finish`].
pub struct CappedWriter<'a> {
    out: Vec<u8>,
    cap: usize,
    cap_name: &'static str,
    budget: &'a mut RequestBudget,
    exceeded: Option<LimitExceeded>,
}

impl CappedWriter<'_> {
    /// The bytes written, or the limit that stopped the writing (`what`
    /// names the output in the error).
    pub fn finish(self, what: &str) -> Result<Vec<u8>, LimitExceeded> {
        match self.exceeded {
            Some(LimitExceeded::Size { limit, bytes, .. }) => Err(LimitExceeded::Size {
                limit,
                bytes,
                what: what.to_owned(),
            }),
            Some(other) => Err(other),
            None => Ok(self.out),
        }
    }

    /// Whether a limit stopped the writing.
    pub fn exceeded(&self) -> bool {
        self.exceeded.is_some()
    }

    fn refuse(&mut self, reason: LimitExceeded) -> std::io::Error {
        let text = reason.to_string();
        self.exceeded = Some(reason);
        std::io::Error::other(text)
    }
}

impl std::io::Write for CappedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Err(late) = self.budget.check_time() {
            return Err(self.refuse(late));
        }
        if self.out.len() + buf.len() > self.cap {
            let (limit, bytes) = (self.cap_name, self.cap);
            return Err(self.refuse(LimitExceeded::Size {
                limit,
                what: String::new(),
                bytes,
            }));
        }
        if let Err(over) = self.budget.charge(buf.len(), "") {
            return Err(self.refuse(over));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn budget(limits: InjectionLimits) -> RequestBudget {
        RequestBudget::new(&limits, Arc::new(AtomicBool::new(false)))
    }

    #[test]
    fn writes_stop_at_the_cap_and_name_it() {
        let mut budget = budget(InjectionLimits::default());
        let mut writer = budget.writer(10, "max_rendered_size");
        writer.write_all(b"12345").unwrap();
        assert!(writer.write_all(b"678901").is_err());
        assert!(writer.exceeded());
        let err = writer.finish("recipients[0]: content").unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipients[0]: content exceeds max_rendered_size (10 bytes)"
        );
    }

    #[test]
    fn the_request_budget_spans_writers() {
        let mut budget = budget(InjectionLimits {
            max_request_bytes: 8,
            ..InjectionLimits::default()
        });
        let mut first = budget.writer(100, "max_rendered_size");
        first.write_all(b"123456").unwrap();
        assert_eq!(first.finish("a").unwrap(), b"123456");
        let mut second = budget.writer(100, "max_rendered_size");
        assert!(second.write_all(b"abc").is_err());
        let err = second.finish("recipients[1]: subject").unwrap_err();
        assert!(err.to_string().contains("max_request_bytes"), "{err}");
    }

    #[test]
    fn cancellation_stops_writing() {
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut budget = RequestBudget::new(&InjectionLimits::default(), cancelled.clone());
        let mut writer = budget.writer(100, "max_rendered_size");
        writer.write_all(b"a").unwrap();
        cancelled.store(true, Ordering::Relaxed);
        assert!(writer.write_all(b"b").is_err());
        assert!(matches!(
            writer.finish("x"),
            Err(LimitExceeded::Deadline(_))
        ));
    }

    #[test]
    fn limits_parse_and_validate() {
        let limits: InjectionLimits =
            serde_json::from_str(r#"{"max_recipients": 5, "render_timeout": "2s"}"#).unwrap();
        assert_eq!(limits.max_recipients, 5);
        assert_eq!(limits.render_timeout, Duration::from_secs(2));
        assert_eq!(limits.max_message_size, 20 * 1024 * 1024);
        let err = serde_json::from_str::<InjectionLimits>(r#"{"max_recipient": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_recipient"), "{err}");
        for (zero, key) in [
            (
                InjectionLimits {
                    render_threads: 0,
                    ..InjectionLimits::default()
                },
                "render_threads",
            ),
            (
                InjectionLimits {
                    max_idempotency_records: 0,
                    ..InjectionLimits::default()
                },
                "max_idempotency_records",
            ),
        ] {
            let err = zero.validate().unwrap_err().to_string();
            assert_eq!(err, format!("{key} must be at least 1"));
        }
        let tiny = InjectionLimits {
            max_render_memory: 1024,
            ..InjectionLimits::default()
        };
        assert!(tiny
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_render_memory"));
        // The limits travel to render workers as JSON.
        let json = serde_json::to_string(&limits).unwrap();
        assert_eq!(
            serde_json::from_str::<InjectionLimits>(&json).unwrap(),
            limits
        );
        assert_eq!(limits.max_render_memory, 512 * 1024 * 1024);
    }
}
