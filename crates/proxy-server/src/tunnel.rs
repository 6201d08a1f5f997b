//! A tunnel from its CONNECT reply to its end: registered in the live-session
//! registry (so the admin API can list and close it), counted per listener,
//! per identity and per tunnel, shaped when its identity's bandwidth is
//! limited, and written to the accounting log as a `Session` record once the
//! relay is over (never on the relay path).

use crate::admission::{Admission, Refusal};
use crate::listener::ListenerContext;
use crate::relay::{DirectionCounter, RelayCounters, RelayOutcome};
use crate::sessions::{LiveSession, Registered};
use aaa::{AuthInfo, SessionEnd, SessionRecord};
use prometheus_client::metrics::gauge::Gauge;
use socks5::TargetAddr;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::SystemTime;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

/// What the handshake settled for a tunnel, besides its sockets.
pub struct TunnelRequest {
    /// The login (or the anonymous peer).
    pub auth: AuthInfo,
    /// The destination as the client wrote it.
    pub requested: TargetAddr,
    /// The source address an earlier BIND selected.
    pub source: Option<SocketAddr>,
    /// Its place under the identity's limits.
    pub admission: Admission,
}

/// A relaying tunnel; dropping it closes its books (registry entry, gauge,
/// session slot).
pub struct Tunnel {
    registered: Registered,
    counters: RelayCounters,
    open_gauge: Option<Gauge>,
    _admission: Admission,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Some(gauge) = &self.open_gauge {
            gauge.dec();
        }
    }
}

impl Tunnel {
    /// Register a tunnel connected to `connected`; `early_data` bytes of
    /// the client's were already forwarded.
    pub fn open(
        ctx: &ListenerContext,
        peer: SocketAddr,
        request: TunnelRequest,
        connected: SocketAddr,
        early_data: usize,
    ) -> Tunnel {
        let control = &ctx.control;
        let handles = request
            .admission
            .identity
            .as_deref()
            .map(|identity| control.metrics.handles(identity));
        let (up_bucket, down_bucket) = request.admission.buckets.clone().unzip();
        let counters = RelayCounters {
            client_to_dest: DirectionCounter {
                listener: ctx.metrics.bytes_client_to_dest.clone(),
                identity: handles.as_ref().map(|h| h.bytes_client_to_dest.clone()),
                shaper: up_bucket,
                ..DirectionCounter::default()
            },
            dest_to_client: DirectionCounter {
                listener: ctx.metrics.bytes_dest_to_client.clone(),
                identity: handles.as_ref().map(|h| h.bytes_dest_to_client.clone()),
                shaper: down_bucket,
                ..DirectionCounter::default()
            },
        };
        // The early data was counted per listener by the handshake.
        counters.client_to_dest.session.inc_by(early_data as u64);
        if let Some(handles) = &handles {
            handles.bytes_client_to_dest.inc_by(early_data as u64);
            handles.sessions_open.inc();
        }
        let session = LiveSession {
            id: control.sessions.next_id(),
            listener: ctx.listener.clone(),
            peer,
            auth: request.auth,
            source_address: request.source.map(|s| s.ip()),
            requested: request.requested,
            connected,
            start: SystemTime::now(),
            bytes_client_to_dest: counters.client_to_dest.session.clone(),
            bytes_dest_to_client: counters.dest_to_client.session.clone(),
            shaped: counters.shaped(),
            cancel: Default::default(),
        };
        Tunnel {
            registered: control.sessions.register(session),
            counters,
            open_gauge: handles.map(|h| h.sessions_open),
            _admission: request.admission,
        }
    }

    /// The counters (and buckets) the relay must use.
    pub fn counters(&self) -> &RelayCounters {
        &self.counters
    }

    /// Whether the relay must copy (shaping needs it) rather than splice.
    pub fn shaped(&self) -> bool {
        self.counters.shaped()
    }

    /// Relay until the future `relay` makes ends or an admin disconnects
    /// the tunnel, then account for it. `dest`, when given, gets its
    /// keepalive settings once the tunnel lasts
    /// ([`crate::outbound::keepalive_later`]). The relay is made here, in
    /// place, rather than passed in as a future: a future passed by value
    /// is held once by the caller and once more by this one, and a held
    /// tunnel's task is counted in KiB. For the same reason the tunnel is
    /// borrowed, not moved in: the caller drops it (closing its books)
    /// when this returns.
    pub async fn run<F>(
        &self,
        ctx: &ListenerContext,
        dest: Option<&TcpStream>,
        relay: impl FnOnce() -> F,
    ) where
        F: Future<Output = io::Result<RelayOutcome>>,
    {
        let session = self.registered.session.clone();
        let keepalive = async {
            match dest {
                Some(dest) => {
                    crate::outbound::keepalive_later(dest, &ctx.params.tcp_keepalive).await
                }
                None => std::future::pending().await,
            }
        };
        let end = tokio::select! {
            () = keepalive => unreachable!("keepalive_later never completes"),
            outcome = relay() => report_relay(outcome, session.peer, ctx),
            () = session.cancel.cancelled() => {
                ctx.metrics.connections_completed.inc();
                info!(peer = %session.peer, "tunnel closed by an admin");
                SessionEnd::DisconnectedByAdmin
            }
        };
        if let Some(aaa) = &ctx.aaa {
            aaa.log_session(|| SessionRecord {
                timestamp: aaa::rfc3339(SystemTime::now()),
                listener: session.listener.to_string(),
                peer: session.peer.to_string(),
                auth_info: session.auth.clone(),
                source_address: session.source_address.map(|ip| ip.to_string()),
                requested_destination: session.requested.to_string(),
                connected_destination: Some(session.connected.to_string()),
                bytes_client_to_dest: session.bytes_client_to_dest.get(),
                bytes_dest_to_client: session.bytes_dest_to_client.get(),
                start: aaa::rfc3339(session.start),
                duration_seconds: session.start.elapsed().unwrap_or_default().as_secs_f64(),
                end_reason: end,
            });
        }
    }
}

/// Count a CONNECT refused by `refusal` and write its `Session` record.
pub fn refused(
    ctx: &ListenerContext,
    peer: SocketAddr,
    request: &TunnelRequest,
    refusal: &Refusal,
) {
    let identity = request.auth.first_identity().map(|i| i.identity.as_str());
    if let (Some(identity), Some(limit)) = (identity, refusal.limit()) {
        ctx.control.metrics.refused(identity, limit);
    }
    match refusal.limit() {
        Some(_) => info!(peer = %peer, error = %refusal, "CONNECT refused by a per-identity limit"),
        None => warn!(peer = %peer, error = %refusal, "CONNECT refused: no per-identity limits"),
    }
    if let Some(aaa) = &ctx.aaa {
        aaa.log_session(|| {
            let now = aaa::rfc3339(SystemTime::now());
            SessionRecord {
                timestamp: now.clone(),
                listener: ctx.listener.to_string(),
                peer: peer.to_string(),
                auth_info: request.auth.clone(),
                source_address: request.source.map(|s| s.ip().to_string()),
                requested_destination: request.requested.to_string(),
                connected_destination: None,
                bytes_client_to_dest: 0,
                bytes_dest_to_client: 0,
                start: now,
                duration_seconds: 0.0,
                end_reason: SessionEnd::Limit,
            }
        });
    }
}

fn report_relay(
    outcome: io::Result<RelayOutcome>,
    peer: SocketAddr,
    ctx: &ListenerContext,
) -> SessionEnd {
    match outcome {
        Ok(RelayOutcome::Completed { client_first }) => {
            ctx.metrics.connections_completed.inc();
            debug!(peer = %peer, "session completed");
            if client_first {
                SessionEnd::ClientClose
            } else {
                SessionEnd::DestinationClose
            }
        }
        Ok(RelayOutcome::IdleTimeout) => {
            ctx.metrics.idle_timeouts.inc();
            ctx.metrics.connections_completed.inc();
            info!(peer = %peer, idle_timeout = ?ctx.params.idle_timeout, "relay closed after idle timeout");
            SessionEnd::IdleTimeout
        }
        Err(err) => {
            ctx.metrics.connections_failed.inc();
            debug!(peer = %peer, error = %err, "relay ended with an error");
            SessionEnd::Error
        }
    }
}
