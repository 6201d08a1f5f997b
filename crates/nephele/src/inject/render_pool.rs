//! Rendering off the async runtime: each request's templates are compiled
//! and rendered outside it, at most `render_threads` requests at once,
//! within the request's budget of bytes and time. Where depends on the
//! pool's mode:
//!
//! - in render worker processes ([`RenderPool::with_workers`], what the
//!   daemon does): a worker's address space is capped at
//!   `max_render_memory`, so a template whose values grow without bound
//!   kills only its worker (see [`super::render_worker`]);
//! - on blocking threads ([`RenderPool::new`], for the library and tests
//!   that cannot spawn the binary): a request that is abandoned (its
//!   `request_timeout` passed, or the client went away) stops its
//!   rendering at the next write.
//!
//! Both run the same [`render_each`].

use super::limits::{InjectionLimits, LimitExceeded, RequestBudget};
use super::render::{RenderError, Templates};
use super::render_worker::WorkerPool;
use super::request::{RequestError, ValidRequest};
use axum::body::Bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Why a request's rendering did not run to its end: the request is
/// refused whole.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A limit was reached (`413`; `408` for the deadline).
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// A template did not compile, or a header rendered with control
    /// characters (`422`, naming the field).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The job panicked, or a render worker could not be started.
    #[error("the render thread failed: {0}")]
    Failed(String),
}

/// Each recipient's message, or why that recipient alone failed.
pub type Rendered = Vec<Result<Vec<u8>, String>>;

/// Compile `valid`'s templates and render every recipient's message in
/// order, handing each (or its recipient's error) to `each`; an error of
/// `each` stops the rendering and is returned as [`PoolError::Failed`].
pub fn render_each(
    valid: &ValidRequest,
    budget: &mut RequestBudget,
    mut each: impl FnMut(Result<Vec<u8>, String>) -> std::io::Result<()>,
) -> Result<(), PoolError> {
    let templates = Templates::compile(&valid.request)?;
    for index in 0..valid.recipients.len() {
        let result = match templates.render_message(valid, index, budget) {
            Ok(data) => Ok(data),
            Err(RenderError::Recipient(text)) => Err(text),
            Err(RenderError::Limit(err)) => return Err(PoolError::Limit(err)),
            Err(RenderError::Field(err)) => return Err(PoolError::Request(err)),
        };
        each(result).map_err(|err| PoolError::Failed(err.to_string()))?;
    }
    Ok(())
}

/// See the module documentation.
#[derive(Clone)]
pub struct RenderPool {
    limits: InjectionLimits,
    slots: Arc<Semaphore>,
    /// `None`: render on blocking threads in this process.
    workers: Option<Arc<WorkerPool>>,
}

/// Sets the flag when the request's future is dropped before the job ends.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl RenderPool {
    /// A pool of `limits.render_threads` blocking threads in this process
    /// (`max_render_memory` is not enforced).
    pub fn new(limits: InjectionLimits) -> Self {
        RenderPool {
            slots: Arc::new(Semaphore::new(limits.render_threads)),
            limits,
            workers: None,
        }
    }

    /// A pool of `limits.render_threads` render worker processes running
    /// `program render-worker` (the `nephele` binary), started now: an
    /// error here means no worker could start.
    pub async fn with_workers(limits: InjectionLimits, program: PathBuf) -> anyhow::Result<Self> {
        let workers = WorkerPool::start(program, &limits).await?;
        Ok(RenderPool {
            workers: Some(Arc::new(workers)),
            ..RenderPool::new(limits)
        })
    }

    /// [`RenderPool::with_workers`] running `worker`, or without one
    /// [`RenderPool::new`].
    pub async fn start(limits: InjectionLimits, worker: Option<PathBuf>) -> anyhow::Result<Self> {
        match worker {
            Some(program) => Self::with_workers(limits, program).await,
            None => Ok(Self::new(limits)),
        }
    }

    /// The limits every job's budget starts from.
    pub fn limits(&self) -> &InjectionLimits {
        &self.limits
    }

    /// Render every recipient's message of `valid` (parsed from `body`,
    /// which a render worker parses again), within the request's budget.
    pub async fn render(
        &self,
        body: Bytes,
        valid: ValidRequest,
    ) -> Result<(ValidRequest, Rendered), PoolError> {
        let Some(workers) = &self.workers else {
            drop(body);
            return self
                .run(move |budget| {
                    let mut rendered = Vec::with_capacity(valid.recipients.len());
                    render_each(&valid, budget, |result| {
                        rendered.push(result);
                        Ok(())
                    })
                    .map(|()| (valid, rendered))
                })
                .await?;
        };
        let started = Instant::now();
        let _slot = self.acquire_slot().await?;
        let deadline = started + self.limits.render_timeout;
        let rendered = workers.render(&body, deadline, &self.limits).await?;
        Ok((valid, rendered))
    }

    /// A free slot; the wait counts against `render_timeout`.
    async fn acquire_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, PoolError> {
        tokio::time::timeout(
            self.limits.render_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| LimitExceeded::Deadline(self.limits.render_timeout))?
        .map_err(|_| PoolError::Failed("the render pool is closed".into()))
    }

    /// Run `job` on a blocking thread with a fresh [`RequestBudget`]; the
    /// wait for a free slot counts against `render_timeout`.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut RequestBudget) -> T + Send + 'static,
    {
        let cancelled = Arc::new(AtomicBool::new(false));
        let guard = CancelOnDrop(cancelled.clone());
        let mut budget = RequestBudget::new(&self.limits, cancelled);
        let slot = self.acquire_slot().await?;
        let result = tokio::task::spawn_blocking(move || {
            let result = job(&mut budget);
            drop(slot);
            result
        })
        .await
        .map_err(|err| PoolError::Failed(err.to_string()));
        // Finished: dropping the guard now sets a flag nobody reads.
        drop(guard);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_process_rendering_gives_each_recipients_message_or_error() {
        let pool = RenderPool::new(InjectionLimits::default());
        let body = Bytes::from_static(
            br#"{"envelope_sender":"s@example.com",
                "recipients":[{"email":"a@example.com"},{"email":"b@example.com","substitutions":{"bad":true}}],
                "content":"Subject: hi\n\n{% if bad %}{{ undefined_fn() }}{% endif %}{{ email }}\n"}"#,
        );
        let valid = super::super::request::parse(&body).unwrap();
        let (_, rendered) = pool.render(body, valid).await.unwrap();
        assert_eq!(rendered.len(), 2);
        assert_eq!(
            rendered[0].as_deref().unwrap(),
            b"Subject: hi\r\n\r\na@example.com\r\n"
        );
        assert!(rendered[1].as_ref().unwrap_err().contains("undefined_fn"));
        let body = Bytes::from_static(
            br#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],
                "content":{"subject":"{% if %}"}}"#,
        );
        let valid = super::super::request::parse(&body).unwrap();
        let err = pool.render(body, valid).await.unwrap_err();
        assert!(
            matches!(&err, PoolError::Request(_)) && err.to_string().starts_with("content.subject"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_run_off_the_runtime_bounded_by_the_slots() {
        let pool = RenderPool::new(InjectionLimits {
            render_threads: 1,
            ..InjectionLimits::default()
        });
        let started = Instant::now();
        let slow = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(|_| std::thread::sleep(Duration::from_millis(300)))
                    .await
            })
        };
        // The runtime stays responsive while the job blocks its thread.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_millis(200));
        // A second job waits for the only slot.
        pool.run(|_| ()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        slow.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_request_stops_its_job() {
        let pool = RenderPool::new(InjectionLimits::default());
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let request = pool.run(move |budget| {
            // Stands for a long render: it checks the budget as writes do.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if budget.check_time().is_err() {
                    let _ = seen_tx.send(true);
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = seen_tx.send(false);
        });
        // As the listener's request_timeout does: drop the request future.
        assert!(tokio::time::timeout(Duration::from_millis(100), request)
            .await
            .is_err());
        let stopped =
            tokio::task::spawn_blocking(move || seen_rx.recv_timeout(Duration::from_secs(5)))
                .await
                .unwrap();
        assert_eq!(stopped, Ok(true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_a_slot_counts_against_the_deadline() {
        let pool = RenderPool::new(InjectionLimits {
            render_threads: 1,
            render_timeout: Duration::from_millis(100),
            ..InjectionLimits::default()
        });
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(|_| std::thread::sleep(Duration::from_millis(400)))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let err = pool.run(|_| ()).await.unwrap_err();
        assert!(
            matches!(err, PoolError::Limit(LimitExceeded::Deadline(_))),
            "{err}"
        );
        busy.await.unwrap().unwrap();
    }
}
