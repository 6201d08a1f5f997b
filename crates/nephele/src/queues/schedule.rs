//! The time-ordered set of queued messages: what each entry holds (an id
//! and scheduling state, never the body), and the wait for the next due one.

use super::QueueKey;
use parking_lot::Mutex;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One queued message: about 80 bytes here plus its id's 32 on the heap;
/// the queue key is shared by every message of the same key.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The spool id.
    pub id: Box<str>,
    /// Where it is queued (shared).
    pub key: Arc<QueueKey>,
    /// When it was received (what `max_age` counts from).
    pub created: SystemTime,
    /// Attempts made since it was queued (a restart starts again at 0).
    pub attempts: u32,
}

struct Due {
    at: Instant,
    seq: u64,
    item: Queued,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Due>>,
    seq: u64,
}

/// Messages waiting for their next attempt, earliest first (ties in
/// insertion order). One consumer takes them as they fall due.
#[derive(Default)]
pub struct Schedule {
    heap: Mutex<Heap>,
    changed: Notify,
}

impl Schedule {
    /// Queue `item` for an attempt at `at`.
    pub fn push(&self, at: Instant, item: Queued) {
        let mut heap = self.heap.lock();
        let seq = heap.seq;
        heap.seq += 1;
        let earliest = heap.entries.peek().is_none_or(|Reverse(d)| at < d.at);
        heap.entries.push(Reverse(Due { at, seq, item }));
        drop(heap);
        if earliest {
            // The consumer may be sleeping until a later time.
            self.changed.notify_one();
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.heap.lock().entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next entry once it is due; `None` once `shutdown` is cancelled.
    pub async fn next_due(&self, shutdown: &CancellationToken) -> Option<Queued> {
        loop {
            let wake_at = {
                let mut heap = self.heap.lock();
                match heap.entries.peek() {
                    Some(Reverse(due)) if due.at <= Instant::now() => {
                        return heap.entries.pop().map(|Reverse(due)| due.item);
                    }
                    Some(Reverse(due)) => Some(due.at),
                    None => None,
                }
            };
            let sleep = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = self.changed.notified() => {}
                () = sleep => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn item(id: &str) -> Queued {
        Queued {
            id: id.into(),
            key: Arc::new(QueueKey {
                name: "q".into(),
                domain: "example.com".into(),
                tenant: None,
                campaign: None,
                routing_domain: None,
            }),
            created: SystemTime::now(),
            attempts: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_come_out_when_due_in_order() {
        let schedule = Arc::new(Schedule::default());
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        schedule.push(start + Duration::from_secs(30), item("late"));
        schedule.push(start + Duration::from_secs(10), item("early"));
        schedule.push(start + Duration::from_secs(10), item("early-2"));
        let first = schedule.next_due(&shutdown).await.unwrap();
        assert_eq!(
            (&*first.id, start.elapsed()),
            ("early", Duration::from_secs(10))
        );
        assert_eq!(&*schedule.next_due(&shutdown).await.unwrap().id, "early-2");
        // A new earlier entry wakes the waiting consumer.
        let waiter = {
            let (schedule, shutdown) = (schedule.clone(), shutdown.clone());
            tokio::spawn(async move { schedule.next_due(&shutdown).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        schedule.push(Instant::now(), item("now"));
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(
            (&*got.id, start.elapsed()),
            ("now", Duration::from_secs(15))
        );
        assert_eq!(schedule.len(), 1);
        shutdown.cancel();
        assert!(schedule.next_due(&shutdown).await.is_none());
    }
}
