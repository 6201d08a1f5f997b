//! Password hashes as `htpasswd`, `mkpasswd` and the PHC libraries write
//! them: format detection, verification in constant time, and hashing.
//!
//! Strong formats: argon2id/argon2i/argon2d and scrypt (PHC strings),
//! bcrypt (`$2a$`, `$2b$`, `$2y$`), SHA-crypt (`$5$`, `$6$`). Weak formats
//! (unsalted or fast: `{SHA}`, `{PLAIN}`, md5-crypt `$1$`, `$apr1$`, DES
//! crypt) are refused unless the caller allows them; of those, `{SHA}` and
//! `{PLAIN}` can then be verified, while md5-crypt, apr1 and DES crypt stay
//! refused as unsupported (no well-kept crate implements them).
//!
//! Error messages name the format and what is wrong, never the hash or the
//! password.

use base64::Engine;
use sha2::Digest;
use subtle::ConstantTimeEq;

/// Highest argon2 memory cost accepted, in KiB (2 GiB, RFC 9106's first
/// recommendation). Costlier hashes are refused so one login cannot
/// exhaust the host.
pub const MAX_ARGON2_M_COST: u32 = 2 * 1024 * 1024;
/// Highest argon2 time cost (passes) accepted.
pub const MAX_ARGON2_T_COST: u32 = 64;
/// Highest argon2 parallelism accepted.
pub const MAX_ARGON2_P_COST: u32 = 64;
/// Highest scrypt memory accepted, in bytes (128 · r · 2^ln).
pub const MAX_SCRYPT_MEMORY: u64 = 2 << 30;
/// Highest scrypt parallelism accepted.
pub const MAX_SCRYPT_P: u32 = 16;
/// Highest bcrypt cost accepted (what `htpasswd -C` allows).
pub const MAX_BCRYPT_COST: u32 = 17;
/// Highest SHA-crypt round count accepted.
pub const MAX_SHA_CRYPT_ROUNDS: u32 = 10_000_000;

/// The kind of a password hash string, told apart by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFormat {
    /// `$argon2id$...` (PHC).
    Argon2id,
    /// `$argon2i$...` (PHC).
    Argon2i,
    /// `$argon2d$...` (PHC).
    Argon2d,
    /// `$2a$`, `$2b$`, `$2y$` (what `htpasswd -B` writes).
    Bcrypt,
    /// `$scrypt$...` (PHC).
    Scrypt,
    /// `$5$` SHA-256-crypt.
    Sha256Crypt,
    /// `$6$` SHA-512-crypt (what `mkpasswd -m sha-512` writes).
    Sha512Crypt,
    /// `{SHA}` base64 of an unsalted SHA-1 (`htpasswd -s`). Weak.
    LdapSha,
    /// `{PLAIN}` followed by the password itself. Weak.
    Plain,
    /// `$1$` md5-crypt. Weak, not supported.
    Md5Crypt,
    /// `$apr1$` Apache's md5-crypt (`htpasswd -m`, its default). Weak, not
    /// supported.
    Apr1,
    /// Traditional 13-character DES crypt. Weak, not supported.
    DesCrypt,
}

impl HashFormat {
    /// The format of `hash`, or `None` when no known prefix matches.
    pub fn detect(hash: &str) -> Option<HashFormat> {
        const PREFIXES: [(&str, HashFormat); 13] = [
            ("$argon2id$", HashFormat::Argon2id),
            ("$argon2i$", HashFormat::Argon2i),
            ("$argon2d$", HashFormat::Argon2d),
            ("$2a$", HashFormat::Bcrypt),
            ("$2b$", HashFormat::Bcrypt),
            ("$2y$", HashFormat::Bcrypt),
            ("$scrypt$", HashFormat::Scrypt),
            ("$5$", HashFormat::Sha256Crypt),
            ("$6$", HashFormat::Sha512Crypt),
            ("{SHA}", HashFormat::LdapSha),
            ("{PLAIN}", HashFormat::Plain),
            ("$1$", HashFormat::Md5Crypt),
            ("$apr1$", HashFormat::Apr1),
        ];
        if let Some((_, format)) = PREFIXES.iter().find(|(p, _)| hash.starts_with(p)) {
            return Some(*format);
        }
        let des = hash.len() == 13 && hash.bytes().all(is_crypt_base64);
        des.then_some(HashFormat::DesCrypt)
    }

    /// The name used in messages and documentation.
    pub fn name(self) -> &'static str {
        match self {
            HashFormat::Argon2id => "argon2id",
            HashFormat::Argon2i => "argon2i",
            HashFormat::Argon2d => "argon2d",
            HashFormat::Bcrypt => "bcrypt",
            HashFormat::Scrypt => "scrypt",
            HashFormat::Sha256Crypt => "sha256-crypt ($5$)",
            HashFormat::Sha512Crypt => "sha512-crypt ($6$)",
            HashFormat::LdapSha => "{SHA} (unsalted SHA-1)",
            HashFormat::Plain => "{PLAIN} (clear text)",
            HashFormat::Md5Crypt => "md5-crypt ($1$)",
            HashFormat::Apr1 => "apr1 ($apr1$, Apache MD5)",
            HashFormat::DesCrypt => "DES crypt",
        }
    }

    /// Whether the format is too weak to accept by default.
    pub fn is_weak(self) -> bool {
        matches!(
            self,
            HashFormat::LdapSha
                | HashFormat::Plain
                | HashFormat::Md5Crypt
                | HashFormat::Apr1
                | HashFormat::DesCrypt
        )
    }
}

/// How strict verification is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Accept the weak formats that can be verified (`{SHA}`, `{PLAIN}`).
    pub allow_weak: bool,
}

/// Why a hash could not be checked or made. Never holds the hash or the
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// No known prefix.
    #[error("unrecognized password hash format")]
    Unrecognized,
    /// A weak format without `allow_weak`.
    #[error("{} is a weak password hash format; refused unless allow_weak is set", .0.name())]
    Weak(HashFormat),
    /// A weak format this build cannot verify at all.
    #[error("{} is not supported (a weak format); re-hash the password with argon2id or bcrypt", .0.name())]
    Unsupported(HashFormat),
    /// The string has the format's prefix but does not parse.
    #[error("malformed {} hash: {reason}", .format.name())]
    Malformed {
        /// The detected format.
        format: HashFormat,
        /// What is wrong (never the hash itself).
        reason: String,
    },
    /// Parameters past the `MAX_*` limits of this module.
    #[error("{} parameters exceed the limit: {reason}", .format.name())]
    TooCostly {
        /// The detected format.
        format: HashFormat,
        /// Which parameter and its limit.
        reason: String,
    },
    /// Hashing parameters that do not fit the algorithm.
    #[error("{0}")]
    InvalidParams(String),
}

pub(crate) fn malformed(format: HashFormat, reason: impl std::fmt::Display) -> PasswordError {
    PasswordError::Malformed {
        format,
        reason: reason.to_string(),
    }
}

fn too_costly(format: HashFormat, reason: String) -> PasswordError {
    PasswordError::TooCostly { format, reason }
}

fn is_crypt_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

/// A hash that parsed and is within the cost limits.
pub(crate) enum Parsed<'a> {
    Argon2(argon2::password_hash::phc::PasswordHash),
    Scrypt(argon2::password_hash::phc::PasswordHash),
    Bcrypt(&'a str),
    ShaCrypt(&'a str),
    LdapSha([u8; 20]),
    Plain(&'a [u8]),
}

/// Check that `hash` is a well-formed hash of an accepted format within
/// the cost limits, without verifying anything. Returns its format.
pub fn check_hash(hash: &str, options: VerifyOptions) -> Result<HashFormat, PasswordError> {
    parse(hash, options).map(|(format, _)| format)
}

/// Whether `password` matches `hash`. The comparison is constant-time;
/// a malformed hash, a weak one without `allow_weak`, or an unsupported
/// one is an error, never `true`.
pub fn verify_password(
    hash: &str,
    password: &[u8],
    options: VerifyOptions,
) -> Result<bool, PasswordError> {
    use argon2::password_hash::{Error as PhcError, PasswordVerifier};
    let (format, parsed) = parse(hash, options)?;
    let phc_outcome = |result: Result<(), PhcError>| match result {
        Ok(()) => Ok(true),
        Err(PhcError::PasswordInvalid) => Ok(false),
        Err(err) => Err(malformed(format, err)),
    };
    match parsed {
        Parsed::Argon2(phc) => {
            phc_outcome(argon2::Argon2::default().verify_password(password, &phc))
        }
        Parsed::Scrypt(phc) => phc_outcome(scrypt::Scrypt::new().verify_password(password, &phc)),
        Parsed::Bcrypt(text) => {
            bcrypt::verify(password, text).map_err(|err| malformed(format, err))
        }
        Parsed::ShaCrypt(text) => {
            phc_outcome(sha_crypt::ShaCrypt::default().verify_password(password, text))
        }
        Parsed::LdapSha(expected) => Ok(sha1::Sha1::digest(password).ct_eq(&expected).into()),
        // Compared as digests so the time does not depend on where the
        // first difference is, nor on the length.
        Parsed::Plain(expected) => Ok(sha2::Sha256::digest(password)
            .ct_eq(&sha2::Sha256::digest(expected))
            .into()),
    }
}

pub(crate) fn parse(
    hash: &str,
    options: VerifyOptions,
) -> Result<(HashFormat, Parsed<'_>), PasswordError> {
    let format = HashFormat::detect(hash).ok_or(PasswordError::Unrecognized)?;
    if format.is_weak() && !options.allow_weak {
        return Err(PasswordError::Weak(format));
    }
    let parsed = match format {
        HashFormat::Argon2id | HashFormat::Argon2i | HashFormat::Argon2d => {
            Parsed::Argon2(parse_argon2(format, hash)?)
        }
        HashFormat::Scrypt => Parsed::Scrypt(parse_scrypt(hash)?),
        HashFormat::Bcrypt => {
            let parts: bcrypt::HashParts = hash.parse().map_err(|err| malformed(format, err))?;
            let cost = parts.get_cost();
            if !(4..=MAX_BCRYPT_COST).contains(&cost) {
                return Err(too_costly(
                    format,
                    format!("cost {cost} is outside 4..={MAX_BCRYPT_COST}"),
                ));
            }
            Parsed::Bcrypt(hash)
        }
        HashFormat::Sha256Crypt | HashFormat::Sha512Crypt => {
            check_sha_crypt(format, hash)?;
            Parsed::ShaCrypt(hash)
        }
        HashFormat::LdapSha => {
            let digest = base64::engine::general_purpose::STANDARD
                .decode(&hash["{SHA}".len()..])
                .map_err(|_| malformed(format, "not base64"))?;
            Parsed::LdapSha(
                digest
                    .try_into()
                    .map_err(|_| malformed(format, "not a 20-byte SHA-1 digest"))?,
            )
        }
        HashFormat::Plain => Parsed::Plain(&hash.as_bytes()["{PLAIN}".len()..]),
        HashFormat::Md5Crypt | HashFormat::Apr1 | HashFormat::DesCrypt => {
            return Err(PasswordError::Unsupported(format))
        }
    };
    Ok((format, parsed))
}

fn parse_phc(
    format: HashFormat,
    hash: &str,
) -> Result<argon2::password_hash::phc::PasswordHash, PasswordError> {
    let phc = argon2::password_hash::phc::PasswordHash::new(hash)
        .map_err(|err| malformed(format, err))?;
    if phc.salt.is_none() || phc.hash.is_none() {
        return Err(malformed(format, "salt or hash output missing"));
    }
    Ok(phc)
}

fn parse_argon2(
    format: HashFormat,
    hash: &str,
) -> Result<argon2::password_hash::phc::PasswordHash, PasswordError> {
    let phc = parse_phc(format, hash)?;
    if let Some(version) = phc.version {
        argon2::Version::try_from(version).map_err(|err| malformed(format, err))?;
    }
    let params = argon2::Params::try_from(&phc).map_err(|err| malformed(format, err))?;
    let limits = [
        ("m", params.m_cost(), MAX_ARGON2_M_COST),
        ("t", params.t_cost(), MAX_ARGON2_T_COST),
        ("p", params.p_cost(), MAX_ARGON2_P_COST),
    ];
    for (name, value, max) in limits {
        if value > max {
            return Err(too_costly(format, format!("{name}={value} is above {max}")));
        }
    }
    Ok(phc)
}

fn parse_scrypt(hash: &str) -> Result<argon2::password_hash::phc::PasswordHash, PasswordError> {
    let format = HashFormat::Scrypt;
    let phc = parse_phc(format, hash)?;
    let params = scrypt::Params::try_from(&phc).map_err(|err| malformed(format, err))?;
    let memory = 128u64 * u64::from(params.r()) * params.n();
    if memory > MAX_SCRYPT_MEMORY {
        return Err(too_costly(
            format,
            format!("needs {memory} bytes of memory, above {MAX_SCRYPT_MEMORY}"),
        ));
    }
    if params.p() > MAX_SCRYPT_P {
        return Err(too_costly(
            format,
            format!("p={} is above {MAX_SCRYPT_P}", params.p()),
        ));
    }
    Ok(phc)
}

/// `$5$[rounds=N$]salt$hash`: the salt is up to 16 significant characters
/// (longer ones are cut, as glibc does), the hash 43 or 86 characters.
fn check_sha_crypt(format: HashFormat, hash: &str) -> Result<(), PasswordError> {
    let expected_len = if format == HashFormat::Sha256Crypt {
        43
    } else {
        86
    };
    let mut fields = hash[3..].split('$');
    let mut field = fields.next().unwrap_or("");
    if let Some(rounds) = field.strip_prefix("rounds=") {
        let rounds: u32 = rounds
            .parse()
            .map_err(|_| malformed(format, "rounds is not a number"))?;
        if !(1000..=MAX_SHA_CRYPT_ROUNDS).contains(&rounds) {
            return Err(too_costly(
                format,
                format!("rounds={rounds} is outside 1000..={MAX_SHA_CRYPT_ROUNDS}"),
            ));
        }
        field = fields.next().unwrap_or("");
    }
    if field
        .bytes()
        .any(|b| b == b'\n' || b == b':' || b.is_ascii_whitespace())
    {
        return Err(malformed(format, "invalid salt characters"));
    }
    let output = fields
        .next()
        .ok_or_else(|| malformed(format, "hash output missing"))?;
    if fields.next().is_some() {
        return Err(malformed(format, "too many fields"));
    }
    if output.len() != expected_len || !output.bytes().all(is_crypt_base64) {
        return Err(malformed(
            format,
            format!("the hash output must be {expected_len} crypt-base64 characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "password_tests.rs"]
mod tests;
