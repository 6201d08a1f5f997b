//! The queues that hold messages now: one shared [`QueueKey`] per distinct
//! key (so a queued message costs a pointer, not five strings), message
//! counts per queue name, and the gauges that show them. A queue is
//! forgotten when its last message leaves, so the registry is bounded by
//! what is queued.

use super::QueueKey;
use crate::metrics::{NepheleMetrics, QueueLabel};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

struct KeyEntry {
    key: Arc<QueueKey>,
    messages: usize,
}

struct QueueEntry {
    messages: usize,
    label: QueueLabel,
}

#[derive(Default)]
struct Maps {
    keys: HashMap<QueueKey, KeyEntry>,
    queues: HashMap<String, QueueEntry>,
    messages: usize,
}

/// See the module documentation.
pub struct QueueRegistry {
    maps: Mutex<Maps>,
    metrics: Arc<NepheleMetrics>,
}

impl QueueRegistry {
    /// An empty registry updating `metrics`.
    pub fn new(metrics: Arc<NepheleMetrics>) -> Self {
        QueueRegistry {
            maps: Mutex::new(Maps::default()),
            metrics,
        }
    }

    /// Count one more message under `key`; the shared key to keep with it.
    pub fn enter(&self, key: QueueKey) -> Arc<QueueKey> {
        let mut maps = self.maps.lock();
        maps.messages += 1;
        let queue = match maps.queues.get_mut(&key.name) {
            Some(queue) => queue,
            None => {
                let label = self.metrics.queue_label(&key.name);
                self.metrics.queue_count.inc();
                maps.queues
                    .entry(key.name.clone())
                    .or_insert(QueueEntry { messages: 0, label })
            }
        };
        queue.messages += 1;
        self.metrics.scheduled.get_or_create(&queue.label).inc();
        self.metrics.scheduled_total.inc();
        let entry = maps.keys.entry(key).or_insert_with_key(|key| KeyEntry {
            key: Arc::new(key.clone()),
            messages: 0,
        });
        entry.messages += 1;
        entry.key.clone()
    }

    /// One message of `key` is done with.
    pub fn leave(&self, key: &QueueKey) {
        let mut maps = self.maps.lock();
        maps.messages = maps.messages.saturating_sub(1);
        if let Some(entry) = maps.keys.get_mut(key) {
            entry.messages -= 1;
            if entry.messages == 0 {
                maps.keys.remove(key);
            }
        }
        let Some(queue) = maps.queues.get_mut(&key.name) else {
            return;
        };
        queue.messages -= 1;
        self.metrics.scheduled.get_or_create(&queue.label).dec();
        self.metrics.scheduled_total.dec();
        if queue.messages == 0 {
            let label = queue.label.clone();
            maps.queues.remove(&key.name);
            self.metrics.queue_count.dec();
            // Ignored for the shared "_other" series.
            self.metrics.release_queue_label(&label);
        }
    }

    /// Messages counted now.
    pub fn messages(&self) -> usize {
        self.maps.lock().messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn key(name: &str, domain: &str) -> QueueKey {
        QueueKey {
            name: name.into(),
            domain: domain.into(),
            tenant: None,
            campaign: None,
            routing_domain: None,
        }
    }

    #[test]
    fn keys_are_shared_and_forgotten_when_empty() {
        let metrics = Arc::new(NepheleMetrics::register(&mut Registry::default()));
        let registry = QueueRegistry::new(metrics.clone());
        let a1 = registry.enter(key("grouped", "a.example"));
        let a2 = registry.enter(key("grouped", "a.example"));
        let b = registry.enter(key("grouped", "b.example"));
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_eq!(b.domain, "b.example", "a grouped queue keeps each key");
        assert_eq!(registry.messages(), 3);
        assert_eq!(metrics.queue_count.get(), 1);
        let label = QueueLabel {
            queue: "grouped".into(),
        };
        assert_eq!(metrics.scheduled.get_or_create(&label).get(), 3);
        for key in [&a1, &a2, &b] {
            registry.leave(key);
        }
        assert_eq!(registry.messages(), 0);
        assert_eq!(metrics.queue_count.get(), 0);
        assert_eq!(metrics.scheduled_total.get(), 0);
        assert!(registry.maps.lock().keys.is_empty());
    }
}
