//! Crash safety: inject continuously while the daemon is killed with
//! SIGKILL at random moments and restarted, 20 times; then every message
//! the API acknowledged must be in the Maildir.
//!
//! Delivery is at-least-once: a kill between the Maildir write and the
//! spool removal delivers that message again after the restart. Duplicates
//! are therefore counted and reported, not forbidden; losses are forbidden.
//! Messages whose request was cut off by the kill were never acknowledged:
//! they may or may not have been committed, and either is correct.
//!
//! Run with `--nocapture` to see the figures. `NEPHELE_CRASH_SEED=N`
//! replays one sequence of kill moments.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;

const CYCLES: usize = 20;
const INJECTORS: usize = 3;
/// The latest kill moment, after the cycle's first acknowledgement.
const MAX_KILL_DELAY_MS: u64 = 400;
/// Bound on one injection request (a killed daemon resets the connection;
/// this covers a wedged one).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the injectors share with the test thread.
#[derive(Default)]
struct Injection {
    /// The running daemon's listener; `None` between a kill and a restart.
    target: Mutex<Option<SocketAddr>>,
    next_seq: AtomicU64,
    acknowledged: Mutex<BTreeSet<u64>>,
    attempted: AtomicU64,
    done: AtomicBool,
}

/// A small xorshift generator: the test needs reproducible randomness, not
/// good randomness, and the workspace has no `rand`.
struct KillMoments(u64);

impl KillMoments {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn seed() -> u64 {
    std::env::var("NEPHELE_CRASH_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1
}

fn message_body(seq: u64) -> String {
    serde_json::json!({
        "envelope_sender": "s@example.com",
        "recipients": [{"email": format!("r{seq}@example.com")}],
        "content": format!("Subject: crash loop\r\nX-Seq: {seq}\r\n\r\nmessage {seq}\r\n"),
    })
    .to_string()
}

/// POST one message over a fresh connection. `true` only for an HTTP 200
/// whose body says the one recipient succeeded: that is the acknowledgement
/// the daemon must honour.
fn post_one(addr: SocketAddr, seq: u64) -> bool {
    let body = message_body(seq);
    let attempt = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        write!(
            stream,
            "POST /api/inject/v1 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    };
    match attempt() {
        Ok(reply) => {
            reply.starts_with("HTTP/1.1 200 ")
                && reply.contains("\"success_count\":1")
                && reply.contains("\"fail_count\":0")
        }
        Err(_) => false,
    }
}

fn injector(shared: Arc<Injection>) {
    while !shared.done.load(Ordering::SeqCst) {
        let Some(addr) = *shared.target.lock().unwrap() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let seq = shared.next_seq.fetch_add(1, Ordering::SeqCst);
        shared.attempted.fetch_add(1, Ordering::SeqCst);
        if post_one(addr, seq) {
            shared.acknowledged.lock().unwrap().insert(seq);
        }
    }
}

/// Sequence number → how many copies are in the Maildir.
fn delivered_copies(ws: &Workspace) -> BTreeMap<u64, usize> {
    let mut copies = BTreeMap::new();
    for message in ws.maildir_messages() {
        let seq = message
            .lines()
            .find_map(|line| line.strip_prefix("X-Seq: "))
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("a delivered message without X-Seq: {message}"));
        *copies.entry(seq).or_default() += 1;
    }
    copies
}

/// `N` from the start-up line `spool loaded ... messages=N`.
fn requeued_count(daemon: &Daemon) -> usize {
    let line = daemon.wait_for_line("spool loaded", START_TIMEOUT);
    line.split("messages=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_message() {
    let ws = Workspace::new(&format!("{POLICY_INIT}{POLICY_MAILDIR_QUEUE}"));
    let seed = seed();
    let mut moments = KillMoments(seed);
    let shared = Arc::new(Injection::default());
    let injectors: Vec<_> = (0..INJECTORS)
        .map(|_| {
            let shared = shared.clone();
            std::thread::spawn(move || injector(shared))
        })
        .collect();

    for cycle in 0..CYCLES {
        let daemon = ws.start();
        let acknowledged_before = shared.acknowledged.lock().unwrap().len();
        *shared.target.lock().unwrap() = Some(daemon.addr);
        // Odd cycles die as soon as the listener is up, while the spool is
        // being re-queued and the backlog delivered; even cycles die at a
        // random moment after this run has acknowledged something.
        if cycle % 2 == 0 {
            wait_for("an acknowledgement in this cycle", WAIT_TIMEOUT, || {
                (shared.acknowledged.lock().unwrap().len() > acknowledged_before).then_some(())
            });
            std::thread::sleep(Duration::from_millis(moments.next_below(MAX_KILL_DELAY_MS)));
        }
        // Requests already sent are cut off by the kill; new ones wait.
        *shared.target.lock().unwrap() = None;
        daemon.kill();
    }
    shared.done.store(true, Ordering::SeqCst);
    for handle in injectors {
        handle.join().expect("injector thread");
    }

    let acknowledged = shared.acknowledged.lock().unwrap().clone();
    // The last start re-queues what the kills left in the spool; with no
    // more kills, each of those is delivered exactly once more.
    let files_before = ws.maildir_messages().len();
    let daemon = ws.start();
    let requeued = requeued_count(&daemon);
    wait_for("the re-queued messages delivered", WAIT_TIMEOUT, || {
        (ws.maildir_messages().len() >= files_before + requeued).then_some(())
    });
    daemon.stop();
    // Nothing is left in the spool: a further start re-queues nothing.
    let daemon = ws.start();
    assert_eq!(requeued_count(&daemon), 0, "{}", daemon.output());
    daemon.stop();
    let copies = delivered_copies(&ws);

    let lost: Vec<u64> = acknowledged
        .iter()
        .copied()
        .filter(|seq| !copies.contains_key(seq))
        .collect();
    let duplicated = copies.values().filter(|&&n| n > 1).count();
    let unacknowledged_delivered = copies
        .keys()
        .filter(|seq| !acknowledged.contains(seq))
        .count();
    eprintln!(
        "crash loop (seed {seed}): {CYCLES} SIGKILL cycles, {} requests, {} acknowledged, \
         {} distinct delivered ({} files), {} lost, {duplicated} duplicated, \
         {unacknowledged_delivered} delivered without acknowledgement (cut off by a kill after the commit)",
        shared.attempted.load(Ordering::SeqCst),
        acknowledged.len(),
        copies.len(),
        copies.values().sum::<usize>(),
        lost.len(),
    );
    assert!(
        lost.is_empty(),
        "acknowledged but lost: {lost:?} (seed {seed})"
    );
    assert!(
        acknowledged.len() >= CYCLES / 2,
        "every even cycle acknowledged one"
    );
}
