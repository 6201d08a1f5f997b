//! `Idempotency-Key`: the first request with a key (per authorized
//! identity) is processed and its answer recorded; a repeat within the
//! retention window gets that answer again and spools nothing; the same key
//! with another body is refused. Records live in the spool itself, written
//! in the same commit as the request's messages (so a message is never
//! durable without its record, nor the reverse), and are loaded again at
//! start. Keys, identities and bodies are only ever held as SHA-256 hashes.

use data_encoding::HEXLOWER;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spool::{Spool, SpoolEntry};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Spool ids of idempotency records start with this (message ids are 32 hex
/// digits, so they never do). The full id is `PREFIX` + a nanosecond stamp
/// (20 digits) + `.` + scope hash: each record has its own id, so removing
/// an expired record never removes a newer one for the same key committed
/// in the same spool batch (a batch stores before it removes), and records
/// made in order sort in order, so they are appended to the spool's B-tree
/// rather than each rewriting a random leaf. (Records stored before the
/// stamp came first, scope hash + `.` + stamp, load too.)
pub const RECORD_PREFIX: &str = "idempotency:";

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Expired records are swept at most this often (and a full store
/// answers `Retry-After` with it).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// What a request with a key must do.
#[derive(Debug)]
pub enum Lookup {
    /// Answer this again (status, JSON body): nothing is processed.
    Replay(u16, String),
    /// The key was used with another body: `422`.
    Mismatch,
    /// A request with this key is being processed now: `409`.
    InFlight,
    /// Process the request; the guard holds the key until it is dropped.
    New(Claim),
    /// `max_idempotency_records` are held (or being made): `503` until
    /// expired ones are swept.
    Full,
}

/// A recorded answer, as stored in the spool's meta record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// SHA-256 of the request body, hex.
    body: String,
    /// The answer's status and body.
    status: u16,
    response: String,
    /// Seconds since the epoch after which the record is forgotten.
    expires: u64,
    /// Its spool id.
    #[serde(skip)]
    spool_id: String,
}

struct State {
    /// By scope hash.
    records: HashMap<String, Record>,
    /// Spool ids of records replaced by a newer one for their key (found
    /// at load), removed by the first sweep.
    stale: Vec<String>,
    in_flight: HashSet<String>,
    last_sweep: SystemTime,
}

/// The records of one process, and the keys being processed now.
pub struct IdempotencyStore {
    state: Arc<Mutex<State>>,
    retention: Duration,
    /// Most records held and keys being processed at once.
    max_records: usize,
}

/// The key of a request being processed: released when dropped.
pub struct Claim {
    id: String,
    body: String,
    state: Arc<Mutex<State>>,
}

/// Hex digits of a scope hash (SHA-256).
const SCOPE_LEN: usize = 64;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Whether `key` is acceptable: 1 to 255 visible ASCII characters.
pub fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(u8::is_ascii_graphic)
}

impl IdempotencyStore {
    /// [`IdempotencyStore::load`] with the retention and bound of `limits`
    /// (the defaults without `kumo.configure_injection`).
    pub fn for_spool(
        spool: Option<&dyn Spool>,
        limits: Option<&super::limits::InjectionLimits>,
    ) -> anyhow::Result<Self> {
        let limits = limits.cloned().unwrap_or_default();
        Self::load(
            spool,
            limits.idempotency_retention,
            limits.max_idempotency_records,
        )
    }

    /// Load the records of `spool` (blocking; at start); at most
    /// `max_records` are then held and claimed at once. Expired ones are
    /// removed by the first sweep.
    pub fn load(
        spool: Option<&dyn Spool>,
        retention: Duration,
        max_records: usize,
    ) -> anyhow::Result<Self> {
        let mut records: HashMap<String, Record> = HashMap::new();
        let mut stale = Vec::new();
        if let Some(spool) = spool {
            spool.scan_meta(&mut |id, meta| {
                let Some(rest) = id.strip_prefix(RECORD_PREFIX) else {
                    return;
                };
                let scope = rest.split('.').find(|part| part.len() == SCOPE_LEN);
                let (Some(scope), Ok(mut record)) = (scope, serde_json::from_slice::<Record>(meta))
                else {
                    stale.push(id.to_owned());
                    return;
                };
                record.spool_id = id.to_owned();
                let scope = scope.to_owned();
                match records.get(&scope) {
                    Some(held) if held.expires >= record.expires => stale.push(record.spool_id),
                    _ => {
                        if let Some(old) = records.insert(scope, record) {
                            stale.push(old.spool_id);
                        }
                    }
                }
            })?;
        }
        Ok(IdempotencyStore {
            state: Arc::new(Mutex::new(State {
                records,
                stale,
                in_flight: HashSet::new(),
                last_sweep: UNIX_EPOCH,
            })),
            retention,
            max_records,
        })
    }

    /// Records held (unexpired or not yet swept).
    pub fn len(&self) -> usize {
        self.state.lock().records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decide what a request with `key` from `identity` and this `body`
    /// does. `expired` receives the spool ids of swept records (to remove
    /// from the spool).
    pub fn lookup(
        &self,
        identity: &str,
        key: &[u8],
        body: &[u8],
        expired: &mut Vec<String>,
    ) -> Lookup {
        let mut scope = Sha256::new();
        scope.update((identity.len() as u64).to_be_bytes());
        scope.update(identity.as_bytes());
        scope.update(key);
        let id = HEXLOWER.encode(&scope.finalize());
        let body = HEXLOWER.encode(&Sha256::digest(body));
        let mut state = self.state.lock();
        self.sweep(&mut state, expired);
        if let Some(record) = state.records.get(&id) {
            if record.expires > unix_now() {
                return if record.body == body {
                    Lookup::Replay(record.status, record.response.clone())
                } else {
                    Lookup::Mismatch
                };
            }
        }
        if state.in_flight.contains(&id) {
            return Lookup::InFlight;
        }
        // A key whose record expired replaces it; any other adds one.
        let adds = !state.records.contains_key(&id);
        if adds && state.records.len() + state.in_flight.len() >= self.max_records {
            return Lookup::Full;
        }
        state.in_flight.insert(id.clone());
        Lookup::New(Claim {
            id,
            body,
            state: self.state.clone(),
        })
    }

    fn sweep(&self, state: &mut State, expired: &mut Vec<String>) {
        let now = SystemTime::now();
        if now.duration_since(state.last_sweep).unwrap_or_default() < SWEEP_INTERVAL {
            return;
        }
        state.last_sweep = now;
        let now = unix_now();
        expired.append(&mut state.stale);
        state.records.retain(|_, record| {
            let keep = record.expires > now;
            if !keep {
                expired.push(record.spool_id.clone());
            }
            keep
        });
    }

    /// The spool entry recording `claim`'s answer, to commit with the
    /// request's messages.
    pub fn entry(&self, claim: &Claim, status: u16, response: &str) -> SpoolEntry {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let record = Record {
            body: claim.body.clone(),
            status,
            response: response.to_owned(),
            expires: unix_now() + self.retention.as_secs(),
            spool_id: format!("{RECORD_PREFIX}{stamp:020}.{}", claim.id),
        };
        SpoolEntry {
            id: record.spool_id.clone(),
            meta: serde_json::to_vec(&record).unwrap_or_default(),
            data: Vec::new(),
        }
    }

    /// After the entry was committed: repeats answer from it.
    pub fn recorded(&self, claim: Claim, entry: &SpoolEntry) {
        if let Ok(mut record) = serde_json::from_slice::<Record>(&entry.meta) {
            record.spool_id = entry.id.clone();
            let mut state = self.state.lock();
            if let Some(old) = state.records.insert(claim.id.clone(), record) {
                // An expired record this one replaces.
                state.stale.push(old.spool_id);
            }
        }
    }
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The id is a hash: nothing of the key shows.
        f.debug_struct("Claim").field("id", &self.id).finish()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.state.lock().in_flight.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_replay_mismatches_and_concurrent_claims_are_told_apart() {
        let store = IdempotencyStore::load(None, Duration::from_secs(3600), 100).unwrap();
        let mut expired = Vec::new();
        let Lookup::New(claim) = store.lookup("alice", b"k1", b"body", &mut expired) else {
            panic!("first use");
        };
        assert!(!claim.id.contains("k1") && !claim.id.contains("alice"));
        assert!(matches!(
            store.lookup("alice", b"k1", b"body", &mut expired),
            Lookup::InFlight
        ));
        let entry = store.entry(&claim, 200, "{\"success_count\":1}");
        store.recorded(claim, &entry);
        match store.lookup("alice", b"k1", b"body", &mut expired) {
            Lookup::Replay(200, body) => assert_eq!(body, "{\"success_count\":1}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            store.lookup("alice", b"k1", b"other", &mut expired),
            Lookup::Mismatch
        ));
        // Another identity has its own keys.
        assert!(matches!(
            store.lookup("bob", b"k1", b"body", &mut expired),
            Lookup::New(_)
        ));
        assert!(expired.is_empty());
        assert!(valid_key(b"a-key_1") && !valid_key(b"") && !valid_key(b"a key"));
    }

    /// At most `max_records` are held or claimed; past it a new key is
    /// refused, while repeats of held keys still replay and a key whose
    /// record expired may take its place.
    #[test]
    fn the_store_is_bounded() {
        let store = IdempotencyStore::load(None, Duration::from_secs(3600), 2).unwrap();
        let mut expired = Vec::new();
        let Lookup::New(first) = store.lookup("alice", b"k1", b"body", &mut expired) else {
            panic!("first key");
        };
        let entry = store.entry(&first, 200, "one");
        store.recorded(first, &entry);
        let Lookup::New(second) = store.lookup("alice", b"k2", b"body", &mut expired) else {
            panic!("second key");
        };
        assert!(matches!(
            store.lookup("alice", b"k3", b"body", &mut expired),
            Lookup::Full
        ));
        assert!(matches!(
            store.lookup("alice", b"k1", b"body", &mut expired),
            Lookup::Replay(200, _)
        ));
        drop(second);
        assert!(matches!(
            store.lookup("alice", b"k3", b"body", &mut expired),
            Lookup::New(_)
        ));

        let store = IdempotencyStore::load(None, Duration::ZERO, 1).unwrap();
        let Lookup::New(claim) = store.lookup("bob", b"k", b"body", &mut expired) else {
            panic!("first use");
        };
        let entry = store.entry(&claim, 200, "expires at once");
        store.recorded(claim, &entry);
        assert!(matches!(
            store.lookup("bob", b"other", b"body", &mut expired),
            Lookup::Full
        ));
        assert!(
            matches!(
                store.lookup("bob", b"k", b"body", &mut expired),
                Lookup::New(_)
            ),
            "an expired record's key is claimed again"
        );
    }

    #[test]
    fn records_come_back_from_the_spool_and_replaced_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool::RedbSpool::open(dir.path(), None).unwrap();
        let mut entries = Vec::new();
        for (retention, answer) in [(1, "old"), (3600, "new")] {
            let store = IdempotencyStore::load(None, Duration::from_secs(retention), 100).unwrap();
            let Lookup::New(claim) = store.lookup("alice", b"k", b"body", &mut Vec::new()) else {
                panic!("first use");
            };
            entries.push(store.entry(&claim, 200, answer));
        }
        assert_ne!(entries[0].id, entries[1].id, "each record has its own id");
        assert!(
            entries[0].id < entries[1].id,
            "records sort in the order made"
        );
        // A record stored before the stamp came first in the id.
        let store = IdempotencyStore::load(None, Duration::from_secs(3600), 100).unwrap();
        let Lookup::New(claim) = store.lookup("bob", b"k", b"body", &mut Vec::new()) else {
            panic!("first use");
        };
        let mut older_layout = store.entry(&claim, 202, "older layout");
        older_layout.id = format!("{RECORD_PREFIX}{}.1796000000000000000", claim.id);
        let batch = spool::SpoolBatch {
            store: [entries.clone(), vec![older_layout]].concat(),
            remove: Vec::new(),
        };
        spool.apply(&batch).unwrap();
        let store = IdempotencyStore::load(Some(&spool), Duration::from_secs(3600), 100).unwrap();
        let mut expired = Vec::new();
        match store.lookup("alice", b"k", b"body", &mut expired) {
            Lookup::Replay(200, body) => assert_eq!(body, "new"),
            other => panic!("{other:?}"),
        }
        assert_eq!(expired, [entries[0].id.clone()]);
        match store.lookup("bob", b"k", b"body", &mut expired) {
            Lookup::Replay(202, body) => assert_eq!(body, "older layout"),
            other => panic!("{other:?}"),
        }
    }
}
