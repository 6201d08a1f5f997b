//! Hashes made by Python's argon2-cffi (`m=64,t=1,p=1`) and `htpasswd -B`
//! for the password `correct horse`.

use super::*;
use std::path::PathBuf;

const ARGON2ID: &str = "$argon2id$v=19$m=64,t=1,p=1$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ";
const BCRYPT: &str = "$2y$05$QuyJpSC4r0u7KEywoFQOM.n35Y1M/JxlNSdSGRW47P6kQKhsN73ti";
const PASSWORD: &[u8] = b"correct horse";
const INTERVAL: Duration = Duration::from_secs(5);

/// Replace `path` by a new file (a rename, as editors and deploys do).
fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.htpasswd");
    replace(&path, text);
    (dir, path)
}

#[tokio::test(start_paused = true)]
async fn one_shared_copy_reloaded_once_its_interval_passed() {
    let (_dir, path) = setup(&format!("alice:{ARGON2ID}:ops\n"));
    let files = CredentialFiles::default();
    let first = files
        .open(KeySource::File(path.clone()), false, INTERVAL)
        .unwrap();
    let again = files
        .open(KeySource::File(path.clone()), false, INTERVAL)
        .unwrap();
    assert!(Arc::ptr_eq(&first, &again), "one copy per file");
    assert_eq!(
        first.check(b"alice", PASSWORD),
        Some(vec!["ops".to_owned()])
    );
    let generation = files.generation();

    replace(&path, &format!("bob:{BCRYPT}\n"));
    tokio::time::advance(INTERVAL - Duration::from_millis(10)).await;
    assert_eq!(
        files.generation(),
        generation,
        "not checked before the interval"
    );
    assert!(first.check(b"alice", PASSWORD).is_some());

    tokio::time::advance(Duration::from_millis(10)).await;
    assert_eq!(files.generation(), generation + 1, "reloaded once due");
    assert_eq!(first.check(b"alice", PASSWORD), None, "alice was removed");
    assert_eq!(first.check(b"bob", PASSWORD), Some(Vec::new()));
    tokio::time::advance(INTERVAL).await;
    assert_eq!(
        files.generation(),
        generation + 1,
        "unchanged file: no reload"
    );
}

#[tokio::test(start_paused = true)]
async fn a_broken_edit_keeps_the_previous_users() {
    let (_dir, path) = setup(&format!("alice:{ARGON2ID}\n"));
    let files = CredentialFiles::default();
    let file = files
        .open(KeySource::File(path.clone()), false, INTERVAL)
        .unwrap();
    let generation = files.generation();
    replace(
        &path,
        &format!("# edited\nbob:{BCRYPT}\ncarol:{}\n", &BCRYPT[..30]),
    );
    tokio::time::advance(INTERVAL).await;
    assert_eq!(files.generation(), generation);
    assert!(file.check(b"alice", PASSWORD).is_some());
    assert!(file.check(b"bob", PASSWORD).is_none());
    // Deleted: still the old contents. Back and fixed: taken.
    std::fs::remove_file(&path).unwrap();
    tokio::time::advance(INTERVAL).await;
    assert!(file.check(b"alice", PASSWORD).is_some());
    replace(&path, &format!("bob:{BCRYPT}\n"));
    tokio::time::advance(INTERVAL).await;
    assert!(file.check(b"bob", PASSWORD).is_some());
    assert_eq!(files.generation(), generation + 1);
}

#[tokio::test(start_paused = true)]
async fn opening_again_rereads_at_once() {
    let (_dir, path) = setup(&format!("alice:{ARGON2ID}\n"));
    let files = CredentialFiles::default();
    let file = files
        .open(KeySource::File(path.clone()), false, INTERVAL)
        .unwrap();
    replace(&path, &format!("bob:{BCRYPT}\n"));
    // What a config epoch bump does: fresh states call load_credentials.
    files
        .open(KeySource::File(path.clone()), false, INTERVAL)
        .unwrap();
    assert!(file.check(b"bob", PASSWORD).is_some());
    assert!(file.check(b"alice", PASSWORD).is_none());
}

#[test]
fn first_load_errors_name_the_file_and_line() {
    let files = CredentialFiles::default();
    let missing = KeySource::File(PathBuf::from("/nonexistent/users.htpasswd"));
    let err = format!("{:#}", files.open(missing, false, INTERVAL).unwrap_err());
    assert!(err.contains("/nonexistent/users.htpasswd"), "{err}");

    let (_dir, path) = setup(&format!("alice:{ARGON2ID}\nbob:{}x\n", BCRYPT));
    let err = format!(
        "{:#}",
        files
            .open(KeySource::File(path), false, INTERVAL)
            .unwrap_err()
    );
    assert!(
        err.contains("line 2") && err.contains("users.htpasswd"),
        "{err}"
    );
    assert!(!err.contains(&BCRYPT[7..]), "a hash leaked: {err}");
}

#[test]
fn inline_data_and_weak_options_are_separate_entries() {
    let files = CredentialFiles::default();
    let inline = KeySource::Data {
        key_data: format!("alice:{ARGON2ID}\n"),
    };
    let strict = files.open(inline.clone(), false, INTERVAL).unwrap();
    let weak = files.open(inline, true, INTERVAL).unwrap();
    assert!(!Arc::ptr_eq(&strict, &weak));
    assert!(strict.check(b"alice", PASSWORD).is_some());
    assert_eq!(strict.describe(), "inline key_data");
    let sha = KeySource::Data {
        key_data: "bob:{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=\n".into(),
    };
    assert!(files.open(sha.clone(), false, INTERVAL).is_err());
    assert!(files
        .open(sha, true, INTERVAL)
        .unwrap()
        .check(b"bob", PASSWORD)
        .is_some());
}
