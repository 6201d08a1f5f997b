//! The live-session registry: every tunnel of the process while it relays,
//! shared by the SOCKS listeners and the HTTP admin API (list, disconnect).
//! Each entry holds a [`Disconnect`] the relay watches, so an
//! admin's disconnect ends that tunnel's relay, and its own byte counters.

use aaa::AuthInfo;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use socks5::TargetAddr;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::Notify;

/// What is known about one tunnel from its CONNECT reply on. Addresses are
/// kept as values and spelled out only when listed or recorded: every
/// string here would be an allocation per held tunnel.
#[derive(Debug)]
pub struct LiveSession {
    /// Unique within the process.
    pub id: u64,
    /// The listener's bound `ip:port` (shared by its sessions).
    pub listener: Arc<str>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The login's identities and groups (empty without a login).
    pub auth: AuthInfo,
    /// The source address a BIND selected.
    pub source_address: Option<IpAddr>,
    /// The destination as requested.
    pub requested: TargetAddr,
    /// The address connected to.
    pub connected: SocketAddr,
    /// When the CONNECT was answered.
    pub start: SystemTime,
    /// Bytes from the client to the destination so far.
    pub bytes_client_to_dest: Counter,
    /// Bytes from the destination to the client so far.
    pub bytes_dest_to_client: Counter,
    /// Whether the identity's bandwidth is shaped.
    pub shaped: bool,
    /// Cancelled to close the tunnel (admin disconnect).
    pub cancel: Disconnect,
}

/// An admin's request to close one tunnel: a flag and the relay's wake-up,
/// inline in the session entry (a `CancellationToken` would be one more
/// allocation per held tunnel).
#[derive(Debug, Default)]
pub struct Disconnect {
    asked: AtomicBool,
    wake: Notify,
}

impl Disconnect {
    /// Ask the tunnel to close.
    pub fn cancel(&self) {
        self.asked.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Whether closing was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    /// Resolves once closing is asked for (at once if it already was).
    pub async fn cancelled(&self) {
        let woken = self.wake.notified();
        tokio::pin!(woken);
        // Listening before looking: a `cancel` between the two still wakes.
        woken.as_mut().enable();
        if !self.is_cancelled() {
            woken.await;
        }
    }
}

impl LiveSession {
    /// Whether `identity` is one of the session's identities.
    pub fn has_identity(&self, identity: &str) -> bool {
        self.auth.identities.iter().any(|i| i.identity == identity)
    }

    /// The JSON view of the admin API.
    pub fn view(&self) -> SessionView {
        SessionView {
            id: self.id,
            listener: self.listener.to_string(),
            peer: self.peer.to_string(),
            identities: self
                .auth
                .identities
                .iter()
                .map(|i| i.identity.clone())
                .collect(),
            groups: self.auth.groups.clone(),
            source_address: self.source_address.map(|ip| ip.to_string()),
            requested_destination: self.requested.to_string(),
            connected_destination: self.connected.to_string(),
            start: aaa::rfc3339(self.start),
            duration_seconds: self.start.elapsed().unwrap_or_default().as_secs_f64(),
            bytes_client_to_dest: self.bytes_client_to_dest.get(),
            bytes_dest_to_client: self.bytes_dest_to_client.get(),
            shaped: self.shaped,
        }
    }
}

/// One entry of `GET /api/admin/proxy/sessions/v1`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Unique within the process.
    pub id: u64,
    /// The listener's bound `ip:port`.
    pub listener: String,
    /// The client's `ip:port`.
    pub peer: String,
    /// The login's identities.
    pub identities: Vec<String>,
    /// The login's groups.
    pub groups: Vec<String>,
    /// The source address a BIND selected.
    pub source_address: Option<String>,
    /// The destination as requested.
    pub requested_destination: String,
    /// The address connected to.
    pub connected_destination: String,
    /// RFC 3339, UTC.
    pub start: String,
    /// Seconds since `start`.
    pub duration_seconds: f64,
    /// Bytes relayed from the client so far.
    pub bytes_client_to_dest: u64,
    /// Bytes relayed to the client so far.
    pub bytes_dest_to_client: u64,
    /// Whether the identity's bandwidth is shaped.
    pub shaped: bool,
}

/// Every live tunnel of the process.
#[derive(Default)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<u64, Arc<LiveSession>>>,
    next_id: AtomicU64,
}

impl SessionRegistry {
    /// A fresh id for a tunnel about to be registered.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Register `session` until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, session: LiveSession) -> Registered {
        let session = Arc::new(session);
        self.sessions.lock().insert(session.id, session.clone());
        Registered {
            registry: self.clone(),
            session,
        }
    }

    /// The live sessions, optionally only those with `identity` among their
    /// identities and `group` among their groups, oldest first.
    pub fn list(&self, identity: Option<&str>, group: Option<&str>) -> Vec<SessionView> {
        let mut views: Vec<SessionView> = self
            .sessions
            .lock()
            .values()
            .filter(|s| identity.is_none_or(|i| s.has_identity(i)))
            .filter(|s| group.is_none_or(|g| s.auth.has_group(g)))
            .map(|s| s.view())
            .collect();
        views.sort_by_key(|view| view.id);
        views
    }

    /// Close every live tunnel of `identity`; how many were asked to close.
    pub fn disconnect(&self, identity: &str) -> usize {
        let sessions = self.sessions.lock();
        let matching: Vec<_> = sessions
            .values()
            .filter(|s| s.has_identity(identity) && !s.cancel.is_cancelled())
            .collect();
        for session in &matching {
            session.cancel.cancel();
        }
        matching.len()
    }

    /// How many tunnels are live.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Whether no tunnel is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A registered session; dropping it removes the entry.
pub struct Registered {
    registry: Arc<SessionRegistry>,
    /// The entry.
    pub session: Arc<LiveSession>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.sessions.lock().remove(&self.session.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aaa::IdentityContext;

    fn session(registry: &SessionRegistry, identity: &str, group: &str) -> LiveSession {
        let mut auth = AuthInfo::from_identity(identity, IdentityContext::ProxyAuthRfc1929);
        auth.add_group(group);
        LiveSession {
            id: registry.next_id(),
            listener: "127.0.0.1:1080".into(),
            peer: "127.0.0.1:4000".parse().unwrap(),
            auth,
            source_address: None,
            requested: TargetAddr::Domain("example.test".into(), 80),
            connected: "192.0.2.1:80".parse().unwrap(),
            start: SystemTime::now(),
            bytes_client_to_dest: Counter::default(),
            bytes_dest_to_client: Counter::default(),
            shaped: false,
            cancel: Disconnect::default(),
        }
    }

    #[test]
    fn lists_filters_disconnects_and_forgets_dropped_sessions() {
        let registry = Arc::new(SessionRegistry::default());
        let a1 = registry.register(session(&registry, "alice", "staff"));
        let a2 = registry.register(session(&registry, "alice", "staff"));
        let b = registry.register(session(&registry, "bob", "guests"));
        assert_eq!(registry.list(None, None).len(), 3);
        assert_eq!(registry.list(Some("alice"), None).len(), 2);
        assert_eq!(registry.list(None, Some("guests"))[0].identities, ["bob"]);
        assert!(registry.list(Some("bob"), Some("staff")).is_empty());
        assert_eq!(registry.disconnect("alice"), 2);
        assert!(a1.session.cancel.is_cancelled() && a2.session.cancel.is_cancelled());
        assert!(!b.session.cancel.is_cancelled());
        // Already asked: not counted twice.
        assert_eq!(registry.disconnect("alice"), 0);
        drop((a1, a2));
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.disconnect("nobody"), 0);
    }

    #[tokio::test]
    async fn disconnect_wakes_a_waiting_relay_and_a_late_one() {
        let asked = Arc::new(Disconnect::default());
        let waiting = tokio::spawn({
            let asked = asked.clone();
            async move { asked.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished() && !asked.is_cancelled());
        asked.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the waiting relay is woken")
            .unwrap();
        // A relay that starts watching after the request ends at once.
        asked.cancelled().await;
    }
}
