//! The hashes are third-party ones (see `password_tests.rs`), all for the
//! password `correct horse`.

use super::*;

const ARGON2ID: &str = "$argon2id$v=19$m=64,t=1,p=1$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ";
const BCRYPT: &str = "$2y$05$QuyJpSC4r0u7KEywoFQOM.n35Y1M/JxlNSdSGRW47P6kQKhsN73ti";
const SHA512: &str = "$6$47e8rHNPJg8CautA$Ylw/3P9PkKD67j2UNMAla1wUXKphBQyUQOs.NwJMUh4J1K6buZKQ66qseWU9wu49BPWz2jnr0bFw1o.LLB1NU.";
const LDAP_SHA: &str = "{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=";
const PASSWORD: &[u8] = b"correct horse";

fn parse(text: &str) -> Result<CredentialSet, CredentialParseError> {
    CredentialSet::parse(text.as_bytes(), VerifyOptions::default())
}

#[test]
fn parses_users_groups_comments_and_blank_lines() {
    let text = format!(
        "# users of the proxy\n\n   \nalice:{ARGON2ID}:proxy-users, premium-tier\r\n  # indented comment\nbob:{BCRYPT}\ncarol:{SHA512}:\ndave:{ARGON2ID}:ops,ops\n"
    );
    let set = parse(&text).unwrap();
    assert_eq!(set.len(), 4);
    assert_eq!(
        set.check(b"alice", PASSWORD),
        Some(&["proxy-users".to_owned(), "premium-tier".to_owned()][..])
    );
    assert_eq!(set.check(b"bob", PASSWORD), Some(&[][..]));
    assert_eq!(set.check(b"carol", PASSWORD), Some(&[][..]));
    assert_eq!(set.check(b"dave", PASSWORD), Some(&["ops".to_owned()][..]));
    assert_eq!(set.check(b"alice", b"wrong"), None);
    assert_eq!(set.check(b"nobody", PASSWORD), None);
    assert_eq!(set.check(b"\xff", PASSWORD), None);
    assert!(!format!("{set:?}").contains("argon2"), "{set:?}");
}

#[test]
fn every_malformed_line_is_reported_by_number_without_its_text() {
    let cases: Vec<(String, usize, &str)> = vec![
        (format!("# ok\nalice{ARGON2ID}\n"), 2, "expected user:hash"),
        (format!(":{ARGON2ID}\n"), 1, "empty user name"),
        (format!("al ice:{ARGON2ID}\n"), 1, "whitespace"),
        ("alice:\n".to_owned(), 1, "empty password hash"),
        ("alice:secret\n".to_owned(), 1, "unrecognized"),
        (
            format!("alice:{}\n", &ARGON2ID[..40]),
            1,
            "malformed argon2id",
        ),
        (format!("alice:{LDAP_SHA}\n"), 1, "weak"),
        (
            "alice:$apr1$x3H8Q9Ov$XgiCBLouqWPOPueJIkFI60\n".to_owned(),
            1,
            "weak",
        ),
        (format!("alice:{ARGON2ID}:a,,b\n"), 1, "empty group name"),
        (
            format!("a:{ARGON2ID}\n\nb:{BCRYPT}\na:{SHA512}\n"),
            4,
            "already defined on line 1",
        ),
        (
            format!("alice:{BCRYPT}:ops\nbob:{BCRYPT}\x00:x\n"),
            2,
            "malformed bcrypt",
        ),
        ("alice:{PLAIN}pa:ss\n".to_owned(), 1, "weak"),
    ];
    for (text, line, reason) in cases {
        let err = parse(&text).expect_err(&text);
        assert_eq!(err.line, line, "{text}: {err}");
        let message = err.to_string();
        assert!(message.contains(reason), "{text}: {message}");
        for hash in [ARGON2ID, BCRYPT, SHA512, LDAP_SHA] {
            assert!(!message.contains(&hash[10..]), "a hash leaked: {message}");
        }
    }
    let not_utf8 = CredentialSet::parse(b"alice:\xff\n", VerifyOptions::default()).unwrap_err();
    assert_eq!((not_utf8.line, not_utf8.reason.as_str()), (1, "not UTF-8"));
    let huge = vec![b'#'; MAX_CREDENTIAL_FILE_BYTES + 1];
    assert_eq!(
        CredentialSet::parse(&huge, VerifyOptions::default())
            .unwrap_err()
            .line,
        0
    );
}

#[test]
fn weak_entries_load_only_when_allowed() {
    let allow = VerifyOptions { allow_weak: true };
    let set = CredentialSet::parse(format!("bob:{LDAP_SHA}\n").as_bytes(), allow).unwrap();
    assert_eq!(set.check(b"bob", PASSWORD), Some(&[][..]));
    assert_eq!(set.check(b"bob", b"nope"), None);
    let plain = CredentialSet::parse(b"p:{PLAIN}pa:ss\n", allow).unwrap_err();
    assert!(plain.reason.contains("cannot list groups"), "{plain}");
    // Allowed or not, md5-crypt cannot be verified: refused at load.
    let md5 = CredentialSet::parse(b"c:$1$Fn6vh9Ce$N53jw2omygrBfhuVbeuKs1\n", allow).unwrap_err();
    assert!(md5.reason.contains("not supported"), "{md5}");
}

#[test]
fn empty_files_and_unknown_users_are_refused() {
    let empty = parse("# nobody yet\n").unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.check(b"alice", PASSWORD), None);
}

#[test]
fn the_dummy_hash_is_of_the_most_common_kind() {
    let text = format!("a:{BCRYPT}\nb:{ARGON2ID}\nc:{ARGON2ID}\n");
    let set = parse(&text).unwrap();
    let dummy = set.dummy.as_deref().unwrap();
    assert_eq!(cost_signature(dummy), cost_signature(ARGON2ID));
    assert_ne!(dummy, ARGON2ID, "a fresh hash, not a user's");
}
