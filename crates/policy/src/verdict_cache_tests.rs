use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
enum TestVerdict {
    Accepted(String),
    Refused,
}

impl Verdict for TestVerdict {
    fn is_accepted(&self) -> bool {
        matches!(self, TestVerdict::Accepted(_))
    }
}

const GEN: LoginGeneration = LoginGeneration {
    policy_epoch: 0,
    credentials: 0,
};

fn cache(accepted: Duration, refused: Duration) -> VerdictCache<TestVerdict> {
    VerdictCache::new(accepted, refused, 100)
}

/// Ask `cache` about `(user, password)`, counting calls of the "policy",
/// which accepts only `hunter2`.
async fn ask(
    cache: &VerdictCache<TestVerdict>,
    generation: LoginGeneration,
    user: &str,
    password: &str,
    calls: &AtomicUsize,
) -> (TestVerdict, bool) {
    let decide = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(if password == "hunter2" {
            TestVerdict::Accepted(user.to_owned())
        } else {
            TestVerdict::Refused
        })
    };
    cache
        .get_or_decide(generation, &[user.as_bytes(), password.as_bytes()], decide)
        .await
        .unwrap()
}

#[tokio::test]
async fn verdicts_are_reused_and_errors_are_not() {
    let cache = cache(Duration::from_secs(60), Duration::from_secs(5));
    let calls = AtomicUsize::new(0);
    let accepted = TestVerdict::Accepted("alice".into());
    assert_eq!(
        ask(&cache, GEN, "alice", "hunter2", &calls).await,
        (accepted.clone(), false)
    );
    assert_eq!(
        ask(&cache, GEN, "alice", "hunter2", &calls).await,
        (accepted, true)
    );
    assert_eq!(
        ask(&cache, GEN, "alice", "wrong", &calls).await,
        (TestVerdict::Refused, false)
    );
    assert_eq!(
        ask(&cache, GEN, "alice", "wrong", &calls).await,
        (TestVerdict::Refused, true)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    for _ in 0..2 {
        let failed = cache
            .get_or_decide(GEN, &[b"bob", b"x"], || async {
                Err::<TestVerdict, _>("handler raised")
            })
            .await;
        assert_eq!(*failed.unwrap_err(), "handler raised");
    }
    let (_, cached) = ask(&cache, GEN, "bob", "x", &calls).await;
    assert!(!cached, "an error must not have been kept");
}

#[tokio::test]
async fn keys_hold_no_clear_password_and_depend_on_salt_and_every_field() {
    let password = "correct-horse-battery-staple";
    let first = cache(Duration::from_secs(60), Duration::from_secs(5));
    let calls = AtomicUsize::new(0);
    ask(&first, GEN, "alice", password, &calls).await;
    ask(&first, GEN, "alice", "hunter2", &calls).await;
    first.cache.as_ref().unwrap().run_pending_tasks().await;
    let keys = first.keys();
    assert_eq!(keys.len(), 2);
    for key in &keys {
        for secret in [password.as_bytes(), b"hunter2", b"alice"] {
            assert!(!key.0.windows(secret.len()).any(|w| w == secret), "{key:?}");
        }
        let shown = format!("{key:?}");
        assert_eq!(shown.len(), 64, "hex digest: {shown}");
        assert!(!shown.contains("hunter2") && !shown.contains(password));
    }
    // The stored verdicts carry no password either.
    for (_, verdict) in first.cache.as_ref().unwrap().iter() {
        assert!(!format!("{verdict:?}").contains(password));
    }
    // A fresh cache has another salt: its key for the same login differs.
    let second = cache(Duration::from_secs(60), Duration::from_secs(5));
    let fields: [&[u8]; 2] = [b"alice", password.as_bytes()];
    assert_ne!(first.key(GEN, &fields), second.key(GEN, &fields));
    // Length prefixes: moving bytes between fields changes the key.
    assert_ne!(
        first.key(GEN, &[b"ab", b"c"]),
        first.key(GEN, &[b"a", b"bc"])
    );
    let bumped = LoginGeneration {
        credentials: 1,
        ..GEN
    };
    assert_ne!(first.key(GEN, &fields), first.key(bumped, &fields));
}

#[tokio::test]
async fn a_new_generation_empties_the_cache() {
    let cache = cache(Duration::from_secs(60), Duration::from_secs(60));
    let calls = AtomicUsize::new(0);
    ask(&cache, GEN, "alice", "hunter2", &calls).await;
    let epoch = LoginGeneration {
        policy_epoch: 1,
        ..GEN
    };
    let (_, cached) = ask(&cache, epoch, "alice", "hunter2", &calls).await;
    assert!(!cached, "a config epoch bump must ask again");
    let reload = LoginGeneration {
        credentials: 7,
        ..epoch
    };
    let (_, cached) = ask(&cache, reload, "alice", "hunter2", &calls).await;
    assert!(!cached, "a credential file reload must ask again");
    cache.cache.as_ref().unwrap().run_pending_tasks().await;
    assert_eq!(cache.len(), 1, "older generations were dropped");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_zero_ttl_disables_caching() {
    let cache = cache(Duration::ZERO, Duration::from_secs(5));
    assert!(!cache.is_enabled());
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        assert!(!ask(&cache, GEN, "alice", "hunter2", &calls).await.1);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(cache.keys().is_empty());
}

/// moka keeps its own clock, so this waits in real time (bounded).
#[tokio::test]
async fn refusals_expire_before_acceptances() {
    let cache = cache(Duration::from_secs(60), Duration::from_millis(100));
    let calls = AtomicUsize::new(0);
    let started = Instant::now();
    ask(&cache, GEN, "alice", "hunter2", &calls).await;
    ask(&cache, GEN, "alice", "wrong", &calls).await;
    loop {
        let (_, cached) = ask(&cache, GEN, "alice", "wrong", &calls).await;
        if !cached {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refusal never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(
        ask(&cache, GEN, "alice", "hunter2", &calls).await.1,
        "acceptance still kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_decide_once() {
    let cache = Arc::new(cache(Duration::from_secs(60), Duration::from_secs(5)));
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                let decide = || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, String>(TestVerdict::Refused)
                };
                cache
                    .get_or_decide(GEN, &[b"alice", b"pw"], decide)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().0, TestVerdict::Refused);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
