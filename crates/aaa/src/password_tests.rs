//! Hashes below were made by third-party tools, never by this crate, all
//! for the password `correct horse`: `htpasswd -nbB -C 5` / `-nbs` / `-nbm`
//! / `-nbd` (apache2-utils), `mkpasswd -m sha-512` / `-m sha-256 -R 1000`
//! / `-m md5` (whois), Python's `argon2-cffi` (`m=64,t=1,p=1`) and `bcrypt`,
//! and `hashlib.scrypt` (OpenSSL) formatted as a PHC string.

use super::*;
use crate::hashing::*;

const PASSWORD: &[u8] = b"correct horse";

const HTPASSWD_BCRYPT_2Y: &str = "$2y$05$QuyJpSC4r0u7KEywoFQOM.n35Y1M/JxlNSdSGRW47P6kQKhsN73ti";
const PYTHON_BCRYPT_2A: &str = "$2a$05$RQjUvUndVJseewV4nHM4rO.1SPzJCW2dVtUu9ULzJnUQHwG2c59im";
const PYTHON_BCRYPT_2B: &str = "$2b$05$lDUiCvngmOyBr.0hsYrz4eiLMjyRPRsu.XDekdIT7xWJWkFFHT0ey";
const MKPASSWD_SHA512: &str = "$6$47e8rHNPJg8CautA$Ylw/3P9PkKD67j2UNMAla1wUXKphBQyUQOs.NwJMUh4J1K6buZKQ66qseWU9wu49BPWz2jnr0bFw1o.LLB1NU.";
const MKPASSWD_SHA256_ROUNDS: &str =
    "$5$rounds=1000$/vOgXGIpNFicXnFh$EVB6HomIsJehEC038O663nUlsd9jCcuiNWNvhDZ9CZC";
const PYTHON_ARGON2ID: &str =
    "$argon2id$v=19$m=64,t=1,p=1$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ";
const PYTHON_ARGON2I: &str =
    "$argon2i$v=19$m=64,t=1,p=1$+KVOkxxATJae0n+0+01kyA$X73D6nPY67nu/dRE/9h1Sg";
const PYTHON_ARGON2D: &str =
    "$argon2d$v=19$m=64,t=1,p=1$XbIpfW5Fm0epr/ZyG79iRw$AP8/0aqTsAORxC7422MJiQ";
const PYTHON_SCRYPT: &str =
    "$scrypt$ln=4,r=8,p=1$TKOr4e0tlbVCNZrdVfiv1w$yNIFww+1CBWSuViUDdW95bvF6JFJvU99N1hZ0vKPry8";
const HTPASSWD_SHA: &str = "{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=";
const HTPASSWD_APR1: &str = "$apr1$x3H8Q9Ov$XgiCBLouqWPOPueJIkFI60";
const HTPASSWD_DES: &str = "JsKaIXyJCl9tE";
const MKPASSWD_MD5: &str = "$1$Fn6vh9Ce$N53jw2omygrBfhuVbeuKs1";

const STRONG: [(&str, HashFormat); 10] = [
    (HTPASSWD_BCRYPT_2Y, HashFormat::Bcrypt),
    (PYTHON_BCRYPT_2A, HashFormat::Bcrypt),
    (PYTHON_BCRYPT_2B, HashFormat::Bcrypt),
    (MKPASSWD_SHA512, HashFormat::Sha512Crypt),
    (MKPASSWD_SHA256_ROUNDS, HashFormat::Sha256Crypt),
    (PYTHON_ARGON2ID, HashFormat::Argon2id),
    (PYTHON_ARGON2I, HashFormat::Argon2i),
    (PYTHON_ARGON2D, HashFormat::Argon2d),
    (PYTHON_SCRYPT, HashFormat::Scrypt),
    (HTPASSWD_SHA, HashFormat::LdapSha),
];

const STRICT: VerifyOptions = VerifyOptions { allow_weak: false };
const WEAK_OK: VerifyOptions = VerifyOptions { allow_weak: true };

#[test]
fn detects_every_format() {
    for (hash, format) in STRONG {
        assert_eq!(HashFormat::detect(hash), Some(format), "{hash}");
    }
    let weak = [
        ("{PLAIN}x", HashFormat::Plain),
        (HTPASSWD_APR1, HashFormat::Apr1),
        (HTPASSWD_DES, HashFormat::DesCrypt),
        (MKPASSWD_MD5, HashFormat::Md5Crypt),
        (HTPASSWD_SHA, HashFormat::LdapSha),
    ];
    for (hash, format) in weak {
        assert_eq!(HashFormat::detect(hash), Some(format), "{hash}");
        assert!(format.is_weak());
    }
    for unknown in [
        "",
        "secret",
        "$7$CU..../....",
        "$2x$05$abc",
        "$argon2$",
        "{SSHA}abc",
        "JsKaIXyJCl9t!",
    ] {
        assert_eq!(HashFormat::detect(unknown), None, "{unknown}");
        assert_eq!(
            verify_password(unknown, PASSWORD, WEAK_OK),
            Err(PasswordError::Unrecognized)
        );
    }
}

#[test]
fn third_party_hashes_verify_and_wrong_passwords_do_not() {
    for (hash, format) in STRONG {
        let options = if format.is_weak() { WEAK_OK } else { STRICT };
        assert_eq!(verify_password(hash, PASSWORD, options), Ok(true), "{hash}");
        assert_eq!(
            verify_password(hash, b"correct horsE", options),
            Ok(false),
            "{hash}"
        );
        assert_eq!(verify_password(hash, b"", options), Ok(false), "{hash}");
        assert_eq!(check_hash(hash, options), Ok(format));
    }
    assert_eq!(
        verify_password("{PLAIN}correct horse", PASSWORD, WEAK_OK),
        Ok(true)
    );
    assert_eq!(
        verify_password("{PLAIN}correct horse", b"correct", WEAK_OK),
        Ok(false)
    );
}

#[test]
fn weak_formats_are_refused_naming_the_format_unless_allowed() {
    for hash in [
        HTPASSWD_SHA,
        "{PLAIN}correct horse",
        HTPASSWD_APR1,
        HTPASSWD_DES,
        MKPASSWD_MD5,
    ] {
        let err = verify_password(hash, PASSWORD, STRICT).unwrap_err();
        let format = HashFormat::detect(hash).unwrap();
        assert_eq!(err, PasswordError::Weak(format));
        let text = err.to_string();
        assert!(
            text.contains(format.name()) && text.contains("weak"),
            "{text}"
        );
        assert!(!text.contains(hash), "the hash leaked: {text}");
    }
    // Allowed, md5-crypt, apr1 and DES are still not verifiable here.
    for hash in [HTPASSWD_APR1, HTPASSWD_DES, MKPASSWD_MD5] {
        let err = verify_password(hash, PASSWORD, WEAK_OK).unwrap_err();
        assert!(matches!(err, PasswordError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("not supported"), "{err}");
    }
}

/// Every way a hash of a known format can be broken is an error naming the
/// format, never `true`, and never echoes the hash.
#[test]
fn malformed_hashes_are_errors() {
    let cases = [
        "$argon2id$",
        "$argon2id$v=19$m=64,t=1,p=1",
        "$argon2id$v=19$m=64,t=1,p=1$etG5HpE3OzvZI2aq+SfbYg",
        "$argon2id$v=19$m=64,t=1,p=1$etG5HpE3OzvZI2aq+SfbYg$",
        "$argon2id$v=19$m=64,t=1,p=1$!!!!$HrctAJomJVfrJ3fjbnRrIQ",
        "$argon2id$v=18$m=64,t=1,p=1$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ",
        "$argon2id$v=19$m=x,t=1,p=1$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ",
        "$argon2id$v=19$m=64,t=1,p=1,q=2$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ",
        "$argon2id$v=19$m=64,t=0,p=1$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ",
        "$argon2id$v=19$m=64,t=1,p=1$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ$extra",
        "$2b$05$lDUiCvngmOyBr.0hsYrz4eiLMjyRPRsu.XDekdIT7xWJWkFFHT0e",
        "$2b$05$lDUiCvngmOyBr.0hsYrz4eiLMjyRPRsu.XDekdIT7xWJWkFFHT0eyy",
        "$2b$xx$lDUiCvngmOyBr.0hsYrz4eiLMjyRPRsu.XDekdIT7xWJWkFFHT0ey",
        "$2b$05$lDUiCvngmOyBr.0hsYrz4eiLMjyRPRsu.XDekdIT7xWJWkFFHT0e!",
        "$2b$05$lDUiCvngmOyBr.0hsYrz4eiLMjyRPRsu.XDekdIT7xWJWkFFHT0eé",
        "$6$",
        "$6$47e8rHNPJg8CautA",
        "$6$47e8rHNPJg8CautA$short",
        "$6$47e8rHNPJg8CautA$Ylw/3P9PkKD67j2UNMAla1wUXKphBQyUQOs.NwJMUh4J1K6buZKQ66qseWU9wu49BPWz2jnr0bFw1o.LLB1NU.$x",
        "$6$rounds=abc$47e8rHNPJg8CautA$Ylw/3P9PkKD67j2UNMAla1wUXKphBQyUQOs.NwJMUh4J1K6buZKQ66qseWU9wu49BPWz2jnr0bFw1o.LLB1NU.",
        "$5$/vOgXGIpNFicXnFh$EVB6HomIsJehEC038O663nUlsd9jCcuiNWNvhDZ9CZ!",
        "$scrypt$ln=4,r=8,p=1$TKOr4e0tlbVCNZrdVfiv1w",
        "$scrypt$ln=x,r=8,p=1$TKOr4e0tlbVCNZrdVfiv1w$yNIFww+1CBWSuViUDdW95bvF6JFJvU99N1hZ0vKPry8",
        "$scrypt$v=1$ln=4,r=8,p=1$TKOr4e0tlbVCNZrdVfiv1w$yNIFww+1CBWSuViUDdW95bvF6JFJvU99N1hZ0vKPry8",
        "{SHA}not base64!",
        "{SHA}AAAA",
    ];
    for hash in cases {
        let err =
            verify_password(hash, PASSWORD, WEAK_OK).expect_err(&format!("{hash} must be refused"));
        assert!(
            matches!(
                err,
                PasswordError::Malformed { .. } | PasswordError::TooCostly { .. }
            ),
            "{hash}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("malformed") || text.contains("limit"),
            "{hash}: {text}"
        );
        // (Bare prefixes such as `$6$` are part of the format's name.)
        assert!(
            hash.len() < 8 || !text.contains(hash),
            "the hash leaked: {text}"
        );
        assert!(check_hash(hash, WEAK_OK).is_err(), "{hash}");
    }
}

#[test]
fn costs_past_the_limits_are_refused_before_any_work() {
    let cases = [
        "$argon2id$v=19$m=4194304,t=1,p=1$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ",
        "$argon2id$v=19$m=64,t=1000,p=1$etG5HpE3OzvZI2aq+SfbYg$HrctAJomJVfrJ3fjbnRrIQ",
        "$scrypt$ln=30,r=8,p=1$TKOr4e0tlbVCNZrdVfiv1w$yNIFww+1CBWSuViUDdW95bvF6JFJvU99N1hZ0vKPry8",
        "$2b$31$lDUiCvngmOyBr.0hsYrz4eiLMjyRPRsu.XDekdIT7xWJWkFFHT0ey",
        "$6$rounds=999999999$47e8rHNPJg8CautA$Ylw/3P9PkKD67j2UNMAla1wUXKphBQyUQOs.NwJMUh4J1K6buZKQ66qseWU9wu49BPWz2jnr0bFw1o.LLB1NU.",
    ];
    for hash in cases {
        let err = verify_password(hash, PASSWORD, STRICT).unwrap_err();
        assert!(
            matches!(err, PasswordError::TooCostly { .. }),
            "{hash}: {err:?}"
        );
    }
}

#[test]
fn hash_password_round_trips_for_every_algorithm() {
    let cheap = [
        HashParams {
            m_cost: Some(64),
            t_cost: Some(1),
            ..HashParams::new(HashAlgorithm::Argon2id)
        },
        HashParams {
            m_cost: Some(64),
            t_cost: Some(1),
            ..HashParams::new(HashAlgorithm::Argon2i)
        },
        HashParams {
            m_cost: Some(64),
            t_cost: Some(1),
            ..HashParams::new(HashAlgorithm::Argon2d)
        },
        HashParams {
            cost: Some(4),
            ..HashParams::new(HashAlgorithm::Bcrypt)
        },
        HashParams {
            log_n: Some(4),
            ..HashParams::new(HashAlgorithm::Scrypt)
        },
        HashParams {
            rounds: Some(1000),
            ..HashParams::new(HashAlgorithm::Sha256Crypt)
        },
        HashParams {
            rounds: Some(1000),
            ..HashParams::new(HashAlgorithm::Sha512Crypt)
        },
    ];
    for params in cheap {
        let hash = hash_password(PASSWORD, &params).unwrap();
        assert_eq!(verify_password(&hash, PASSWORD, STRICT), Ok(true), "{hash}");
        assert_eq!(verify_password(&hash, b"nope", STRICT), Ok(false), "{hash}");
        // A fresh salt each time.
        assert_ne!(hash, hash_password(PASSWORD, &params).unwrap());
    }
}

#[test]
fn default_argon2id_parameters_are_the_documented_ones() {
    let hash = hash_password(PASSWORD, &HashParams::default()).unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert_eq!(verify_password(&hash, PASSWORD, STRICT), Ok(true));
}

#[test]
fn hash_parameters_are_checked() {
    let foreign = HashParams {
        cost: Some(10),
        ..HashParams::default()
    };
    let err = hash_password(PASSWORD, &foreign).unwrap_err().to_string();
    assert!(err.contains("cost does not apply"), "{err}");
    let too_big = HashParams {
        cost: Some(20),
        ..HashParams::new(HashAlgorithm::Bcrypt)
    };
    assert!(hash_password(PASSWORD, &too_big).is_err());
    let bad_argon = HashParams {
        t_cost: Some(0),
        ..HashParams::default()
    };
    assert!(hash_password(PASSWORD, &bad_argon).is_err());
    // bcrypt would silently cut a long password: refused instead.
    let bcrypt = HashParams {
        cost: Some(4),
        ..HashParams::new(HashAlgorithm::Bcrypt)
    };
    assert!(hash_password(&[b'a'; 80], &bcrypt).is_err());
}

#[test]
fn dummy_hashes_share_format_and_cost() {
    for (hash, _) in STRONG {
        let dummy = dummy_hash_like(hash).unwrap();
        assert_eq!(
            cost_signature(&dummy),
            cost_signature(hash),
            "{hash} vs {dummy}"
        );
        assert_eq!(HashFormat::detect(&dummy), HashFormat::detect(hash));
        assert_eq!(verify_password(&dummy, PASSWORD, WEAK_OK), Ok(false));
    }
    assert_eq!(
        cost_signature(PYTHON_ARGON2ID),
        "$argon2id$v=19$m=64,t=1,p=1"
    );
    assert_eq!(
        cost_signature(PYTHON_BCRYPT_2A),
        cost_signature(HTPASSWD_BCRYPT_2Y)
    );
    assert_ne!(
        cost_signature(MKPASSWD_SHA512),
        cost_signature(MKPASSWD_SHA256_ROUNDS)
    );
}
