//! Idle SMTP connections kept for the next message from the same egress
//! source to the same site. Keys carry the config epoch, so after a bump
//! no connection made with the old egress configuration is reused.

use super::client::SmtpConnection;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often expired idle connections are closed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Which connections may carry a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The policy's config epoch when the egress was evaluated.
    pub epoch: u64,
    /// The egress source's name.
    pub source: String,
    /// The site (the `mx_list` entries).
    pub site: String,
}

/// A connection ready for `MAIL FROM`.
pub struct IdleConnection {
    /// The connection.
    pub conn: SmtpConnection,
    /// Its destination.
    pub peer: SocketAddr,
    /// Messages sent over it so far.
    pub deliveries: u32,
    /// Close it when idle past this.
    pub expires: Instant,
}

/// The idle connections, shared with the sweeper task.
#[derive(Clone, Default)]
pub struct ConnectionPool {
    idle: Arc<Mutex<HashMap<PoolKey, Vec<IdleConnection>>>>,
}

impl ConnectionPool {
    /// An empty pool whose expired connections a background task closes
    /// (with `QUIT`) until the pool is dropped.
    pub fn start() -> Self {
        let pool = ConnectionPool::default();
        let weak = Arc::downgrade(&pool.idle);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_INTERVAL).await;
                let Some(idle) = weak.upgrade() else { return };
                let now = Instant::now();
                let mut expired = Vec::new();
                idle.lock().retain(|_, conns| {
                    let (old, keep): (Vec<_>, Vec<_>) =
                        conns.drain(..).partition(|c| c.expires <= now);
                    expired.extend(old);
                    *conns = keep;
                    !conns.is_empty()
                });
                drop(idle);
                for conn in expired {
                    conn.conn.quit().await;
                }
            }
        });
        pool
    }

    /// A live idle connection for `key`, if any.
    pub fn take(&self, key: &PoolKey) -> Option<IdleConnection> {
        let now = Instant::now();
        let mut idle = self.idle.lock();
        let conns = idle.get_mut(key)?;
        while let Some(conn) = conns.pop() {
            if conn.expires > now {
                return Some(conn);
            }
        }
        idle.remove(key);
        None
    }

    /// Keep `conn` for the next message.
    pub fn put(&self, key: PoolKey, conn: IdleConnection) {
        self.idle.lock().entry(key).or_default().push(conn);
    }
}
