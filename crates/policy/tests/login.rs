//! The login pipeline both daemons share, under tokio's paused clock: the
//! failure limiter refuses without asking the policy and lets go when the
//! block ends, failures to decide count and are never cached, accepted
//! verdicts are cached and keep the connection's address and groups.
//! The `ask` futures stand in for the policy call (the pool's own tests
//! cover the Lua side) so each test counts exactly how often it is asked.

use aaa::{AuthInfo, FailureLimiter, FailureThresholds, Identity, IdentityContext};
use aaa::{ListenerFailureLimit, TRUSTED_IP_GROUP};
use policy::{
    LocalOnly, LoginAttempt, LoginObserver, LoginOutcome, LoginPipeline, LoginThrottle,
    LoginVerdict, PolicyLoader, PolicyPool,
};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
const BLOCK_FOR: Duration = Duration::from_secs(30);

fn pipeline(dir: &tempfile::TempDir, ttl: Duration) -> LoginPipeline {
    let path = dir.path().join("policy.lua");
    std::fs::write(&path, "-- decisions come from the tests' ask futures\n").unwrap();
    let pool = PolicyPool::new(PolicyLoader::new(path, vec![]), Duration::from_secs(5)).unwrap();
    LoginPipeline::new(pool, ttl)
}

fn limit(max_failures: u32) -> ListenerFailureLimit {
    ListenerFailureLimit {
        limiter: FailureLimiter::new(100),
        thresholds: FailureThresholds {
            max_failures,
            period: Duration::from_secs(60),
            block_for: BLOCK_FOR,
        },
    }
}

fn attempt<'a>(fields: &'a [&'a [u8]]) -> LoginAttempt<'a> {
    let mut connection = AuthInfo {
        peer_address: Some(CLIENT),
        ..AuthInfo::default()
    };
    connection.add_group(TRUSTED_IP_GROUP);
    LoginAttempt {
        attempted: Identity {
            identity: "scott".into(),
            context: IdentityContext::HttpBasicAuth,
        },
        connection,
        cache_fields: fields,
    }
}

/// Counts what the pipeline reports.
#[derive(Default)]
struct Counts {
    blocked: AtomicUsize,
    accepted: AtomicUsize,
    failed: AtomicUsize,
}

impl LoginObserver for Counts {
    fn blocked(&self) {
        self.blocked.fetch_add(1, Ordering::Relaxed);
    }

    fn decided(&self, accepted: bool, _elapsed: Duration) {
        let counter = if accepted {
            &self.accepted
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One login whose policy answer is `verdict`; counts the asks in `asked`.
async fn login(
    logins: &LoginPipeline,
    limit: Option<&ListenerFailureLimit>,
    counts: &Counts,
    password: &str,
    verdict: Result<LoginVerdict, String>,
    asked: &AtomicUsize,
) -> LoginOutcome {
    let fields: [&[u8]; 2] = [b"scott", password.as_bytes()];
    let throttle = LoginThrottle {
        local: limit,
        shared: &LocalOnly,
    };
    let ask = || async {
        asked.fetch_add(1, Ordering::Relaxed);
        verdict
    };
    logins.login(attempt(&fields), &throttle, counts, ask).await
}

fn refused() -> Result<LoginVerdict, String> {
    Ok(LoginVerdict::Refused("wrong password".into()))
}

/// `times` logins with wrong passwords (`bad0`, `bad1`, ...), each refused.
async fn fail_logins(
    logins: &LoginPipeline,
    limit: Option<&ListenerFailureLimit>,
    counts: &Counts,
    times: usize,
    asked: &AtomicUsize,
) {
    for n in 0..times {
        let password = format!("bad{n}");
        let outcome = login(logins, limit, counts, &password, refused(), asked).await;
        assert_eq!(outcome, LoginOutcome::Refused);
    }
}

#[tokio::test(start_paused = true)]
async fn a_blocked_client_is_refused_without_asking_until_the_block_ends() {
    let dir = tempfile::tempdir().unwrap();
    let logins = pipeline(&dir, Duration::ZERO);
    let limit = limit(3);
    let (counts, asked) = (Counts::default(), AtomicUsize::new(0));
    fail_logins(&logins, Some(&limit), &counts, 3, &asked).await;
    let outcome = login(&logins, Some(&limit), &counts, "bad3", refused(), &asked).await;
    assert_eq!(outcome, LoginOutcome::Refused, "the 4th failure blocks");
    assert_eq!(asked.load(Ordering::Relaxed), 4);

    let accepted = Ok(LoginVerdict::Accepted(AuthInfo::from_identity(
        "scott",
        IdentityContext::HttpBasicAuth,
    )));
    let outcome = login(
        &logins,
        Some(&limit),
        &counts,
        "right",
        accepted.clone(),
        &asked,
    )
    .await;
    let LoginOutcome::Blocked(left) = outcome else {
        panic!("blocked, got {outcome:?}");
    };
    assert!(left <= BLOCK_FOR && left > BLOCK_FOR / 2, "{left:?}");
    assert_eq!(asked.load(Ordering::Relaxed), 4, "the policy was not asked");
    assert_eq!(counts.blocked.load(Ordering::Relaxed), 1);

    tokio::time::advance(BLOCK_FOR + Duration::from_secs(1)).await;
    let outcome = login(&logins, Some(&limit), &counts, "right", accepted, &asked).await;
    assert!(matches!(outcome, LoginOutcome::Accepted(_)), "{outcome:?}");
    assert_eq!(asked.load(Ordering::Relaxed), 5);
}

#[tokio::test(start_paused = true)]
async fn failures_to_decide_count_as_failures_and_are_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let logins = pipeline(&dir, Duration::from_secs(60));
    let limit = limit(1);
    let (counts, asked) = (Counts::default(), AtomicUsize::new(0));
    let failed = || Err::<LoginVerdict, _>("handler raised".to_string());
    let outcome = login(&logins, Some(&limit), &counts, "pw", failed(), &asked).await;
    assert_eq!(outcome, LoginOutcome::PolicyFailed("handler raised".into()));
    let outcome = login(&logins, Some(&limit), &counts, "pw", failed(), &asked).await;
    assert!(matches!(outcome, LoginOutcome::PolicyFailed(_)));
    assert_eq!(asked.load(Ordering::Relaxed), 2, "not cached");
    let outcome = login(&logins, Some(&limit), &counts, "pw", failed(), &asked).await;
    assert!(matches!(outcome, LoginOutcome::Blocked(_)), "{outcome:?}");
    assert_eq!(counts.failed.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn an_accepted_login_keeps_the_connections_address_and_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let logins = pipeline(&dir, Duration::from_secs(60));
    let (counts, asked) = (Counts::default(), AtomicUsize::new(0));
    let mut from_policy = AuthInfo::from_identity("scott", IdentityContext::HttpBasicAuth);
    from_policy.add_group("senders");
    // A policy cannot move the peer: only the connection says where it is.
    from_policy.peer_address = Some(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)));
    for _ in 0..3 {
        let verdict = Ok(LoginVerdict::Accepted(from_policy.clone()));
        let outcome = login(&logins, None, &counts, "tiger", verdict, &asked).await;
        let LoginOutcome::Accepted(info) = outcome else {
            panic!("accepted, got {outcome:?}");
        };
        assert_eq!(info.peer_address, Some(CLIENT));
        assert!(info.groups.iter().any(|g| g == "senders"));
        assert!(info.groups.iter().any(|g| g == TRUSTED_IP_GROUP));
        assert_eq!(info.first_identity().unwrap().identity, "scott");
    }
    assert_eq!(
        asked.load(Ordering::Relaxed),
        1,
        "later logins come from the cache"
    );
    assert_eq!(counts.accepted.load(Ordering::Relaxed), 3);

    // Keyed by every field: another password is asked about.
    let verdict = Ok(LoginVerdict::Refused("wrong password".into()));
    let outcome = login(&logins, None, &counts, "lion", verdict, &asked).await;
    assert_eq!(outcome, LoginOutcome::Refused);
    assert_eq!(asked.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn without_a_limiter_failures_never_block() {
    let dir = tempfile::tempdir().unwrap();
    let logins = pipeline(&dir, Duration::ZERO);
    let (counts, asked) = (Counts::default(), AtomicUsize::new(0));
    fail_logins(&logins, None, &counts, 50, &asked).await;
    assert_eq!(counts.blocked.load(Ordering::Relaxed), 0);
}
