//! Rendering off the async runtime: each request's templates are compiled
//! and rendered on a blocking thread, at most `render_threads` requests at
//! once, within the request's budget of bytes and time. A request that is
//! abandoned (its `request_timeout` passed, or the client went away) stops
//! its rendering at the next write.

use super::limits::{InjectionLimits, LimitExceeded, RequestBudget};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Why a job did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No render thread was free before the deadline.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// The job panicked.
    #[error("the render thread failed: {0}")]
    Failed(String),
}

/// See the module documentation.
#[derive(Clone)]
pub struct RenderPool {
    limits: InjectionLimits,
    slots: Arc<Semaphore>,
}

/// Sets the flag when the request's future is dropped before the job ends.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl RenderPool {
    /// A pool of `limits.render_threads` slots.
    pub fn new(limits: InjectionLimits) -> Self {
        RenderPool {
            slots: Arc::new(Semaphore::new(limits.render_threads)),
            limits,
        }
    }

    /// The limits every job's budget starts from.
    pub fn limits(&self) -> &InjectionLimits {
        &self.limits
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
        let slot = tokio::time::timeout(
            self.limits.render_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| LimitExceeded::Deadline(self.limits.render_timeout))?
        .map_err(|_| PoolError::Failed("the render pool is closed".into()))?;
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
