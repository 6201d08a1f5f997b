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
use serde::Deserialize;
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

fn malformed(format: HashFormat, reason: impl std::fmt::Display) -> PasswordError {
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
enum Parsed<'a> {
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

fn parse(hash: &str, options: VerifyOptions) -> Result<(HashFormat, Parsed<'_>), PasswordError> {
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
        HashFormat::Plain => Parsed::Plain(hash["{PLAIN}".len()..].as_bytes()),
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

/// An algorithm [`hash_password`] can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashAlgorithm {
    /// argon2id (the default).
    #[default]
    Argon2id,
    /// argon2i.
    Argon2i,
    /// argon2d.
    Argon2d,
    /// bcrypt (`$2b$`); passwords of 72 bytes or more are refused.
    Bcrypt,
    /// scrypt (PHC).
    Scrypt,
    /// SHA-256-crypt (`$5$`).
    Sha256Crypt,
    /// SHA-512-crypt (`$6$`).
    Sha512Crypt,
}

/// What [`hash_password`] makes: an algorithm and its cost parameters.
/// A parameter left out takes the algorithm's default: argon2
/// `m_cost = 19456` (KiB), `t_cost = 2`, `p_cost = 1` (OWASP's minimum,
/// the argon2 crate's defaults); bcrypt `cost = 12`; scrypt `log_n = 17`,
/// `r = 8`, `p = 1`; SHA-crypt `rounds = 5000`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashParams {
    /// The algorithm.
    #[serde(default)]
    pub algorithm: HashAlgorithm,
    /// argon2 memory in KiB.
    pub m_cost: Option<u32>,
    /// argon2 passes.
    pub t_cost: Option<u32>,
    /// argon2 lanes.
    pub p_cost: Option<u32>,
    /// bcrypt cost (log2 of the rounds).
    pub cost: Option<u32>,
    /// scrypt log2(N).
    pub log_n: Option<u8>,
    /// scrypt block size.
    pub r: Option<u32>,
    /// scrypt parallelism.
    pub p: Option<u32>,
    /// SHA-crypt rounds.
    pub rounds: Option<u32>,
}

impl HashParams {
    /// The parameters of `algorithm` with its defaults.
    pub fn new(algorithm: HashAlgorithm) -> Self {
        HashParams {
            algorithm,
            ..HashParams::default()
        }
    }

    /// An error naming the first parameter given that `algorithm` has no
    /// use for, or a cost past this module's limits (checked before any
    /// hashing work).
    fn validate(&self) -> Result<(), PasswordError> {
        self.reject_foreign()?;
        let over = |name: &str, value: Option<u32>, max: u32| match value {
            Some(value) if value > max => Err(PasswordError::InvalidParams(format!(
                "{name} = {value} is above the limit {max}"
            ))),
            _ => Ok(()),
        };
        over("m_cost", self.m_cost, MAX_ARGON2_M_COST)?;
        over("t_cost", self.t_cost, MAX_ARGON2_T_COST)?;
        over("p_cost", self.p_cost, MAX_ARGON2_P_COST)?;
        over("cost", self.cost, MAX_BCRYPT_COST)?;
        over("p", self.p, MAX_SCRYPT_P)?;
        over("rounds", self.rounds, MAX_SHA_CRYPT_ROUNDS)?;
        let log_n = u32::from(self.log_n.unwrap_or(scrypt::Params::RECOMMENDED_LOG_N));
        let r = u128::from(self.r.unwrap_or(scrypt::Params::RECOMMENDED_R));
        if self.algorithm == HashAlgorithm::Scrypt
            && (log_n >= 64 || (128 * r) << log_n > u128::from(MAX_SCRYPT_MEMORY))
        {
            return Err(PasswordError::InvalidParams(format!(
                "scrypt log_n = {log_n}, r = {r} need more than {MAX_SCRYPT_MEMORY} bytes"
            )));
        }
        Ok(())
    }

    fn reject_foreign(&self) -> Result<(), PasswordError> {
        use HashAlgorithm::*;
        let given = [
            (
                "m_cost",
                self.m_cost.is_some(),
                matches!(self.algorithm, Argon2id | Argon2i | Argon2d),
            ),
            (
                "t_cost",
                self.t_cost.is_some(),
                matches!(self.algorithm, Argon2id | Argon2i | Argon2d),
            ),
            (
                "p_cost",
                self.p_cost.is_some(),
                matches!(self.algorithm, Argon2id | Argon2i | Argon2d),
            ),
            ("cost", self.cost.is_some(), self.algorithm == Bcrypt),
            ("log_n", self.log_n.is_some(), self.algorithm == Scrypt),
            ("r", self.r.is_some(), self.algorithm == Scrypt),
            ("p", self.p.is_some(), self.algorithm == Scrypt),
            (
                "rounds",
                self.rounds.is_some(),
                matches!(self.algorithm, Sha256Crypt | Sha512Crypt),
            ),
        ];
        match given
            .iter()
            .find(|(_, present, applies)| *present && !applies)
        {
            Some((name, _, _)) => Err(PasswordError::InvalidParams(format!(
                "{name} does not apply to {:?}",
                self.algorithm
            ))),
            None => Ok(()),
        }
    }
}

/// Hash `password` with a random salt; returns the PHC (or crypt) string.
/// The result always passes [`check_hash`] (costs within the limits).
pub fn hash_password(password: &[u8], params: &HashParams) -> Result<String, PasswordError> {
    use argon2::password_hash::PasswordHasher;
    params.validate()?;
    let invalid = |err: &dyn std::fmt::Display| PasswordError::InvalidParams(err.to_string());
    let text = match params.algorithm {
        HashAlgorithm::Argon2id | HashAlgorithm::Argon2i | HashAlgorithm::Argon2d => {
            let algorithm = match params.algorithm {
                HashAlgorithm::Argon2i => argon2::Algorithm::Argon2i,
                HashAlgorithm::Argon2d => argon2::Algorithm::Argon2d,
                _ => argon2::Algorithm::Argon2id,
            };
            let argon_params = argon2::Params::new(
                params.m_cost.unwrap_or(argon2::Params::DEFAULT_M_COST),
                params.t_cost.unwrap_or(argon2::Params::DEFAULT_T_COST),
                params.p_cost.unwrap_or(argon2::Params::DEFAULT_P_COST),
                None,
            )
            .map_err(|err| invalid(&err))?;
            argon2::Argon2::new(algorithm, argon2::Version::V0x13, argon_params)
                .hash_password(password)
                .map_err(|err| invalid(&err))?
                .to_string()
        }
        HashAlgorithm::Bcrypt => {
            let cost = params.cost.unwrap_or(bcrypt::DEFAULT_COST);
            bcrypt::non_truncating_hash(password, cost).map_err(|err| invalid(&err))?
        }
        HashAlgorithm::Scrypt => {
            let scrypt_params = scrypt::Params::new(
                params.log_n.unwrap_or(scrypt::Params::RECOMMENDED_LOG_N),
                params.r.unwrap_or(scrypt::Params::RECOMMENDED_R),
                params.p.unwrap_or(scrypt::Params::RECOMMENDED_P),
            )
            .map_err(|err| invalid(&err))?;
            scrypt::Scrypt::new_with_params(scrypt_params)
                .hash_password(password)
                .map_err(|err| invalid(&err))?
                .to_string()
        }
        HashAlgorithm::Sha256Crypt | HashAlgorithm::Sha512Crypt => {
            let algorithm = if params.algorithm == HashAlgorithm::Sha256Crypt {
                sha_crypt::Algorithm::Sha256Crypt
            } else {
                sha_crypt::Algorithm::Sha512Crypt
            };
            let rounds = params
                .rounds
                .unwrap_or(sha_crypt::Params::RECOMMENDED_ROUNDS);
            let sha_params = sha_crypt::Params::new(rounds).map_err(|err| invalid(&err))?;
            // 12 random bytes are the 16 salt characters crypt(3) uses.
            let mut salt = [0u8; 12];
            getrandom::fill(&mut salt).map_err(|err| invalid(&err))?;
            sha_crypt::ShaCrypt::new(algorithm, sha_params)
                .hash_password_with_salt(password, &salt)
                .map_err(|err| invalid(&err))?
                .as_str()
                .to_owned()
        }
    };
    // Refuse what verification would refuse (costs past the limits).
    check_hash(&text, VerifyOptions::default())
        .map_err(|err| PasswordError::InvalidParams(err.to_string()))?;
    Ok(text)
}

/// A fresh hash of a random password with the same format and cost as
/// `hash`, for verifying unknown users at the cost of a known one.
pub fn dummy_hash_like(hash: &str) -> Result<String, PasswordError> {
    let options = VerifyOptions { allow_weak: true };
    let (format, parsed) = parse(hash, options)?;
    let mut random = [0u8; 24];
    getrandom::fill(&mut random)
        .map_err(|err| PasswordError::InvalidParams(format!("no random bytes: {err}")))?;
    let password = base64::engine::general_purpose::STANDARD_NO_PAD.encode(random);
    let params = match parsed {
        Parsed::Argon2(phc) => {
            let argon = argon2::Params::try_from(&phc).map_err(|err| malformed(format, err))?;
            HashParams {
                algorithm: match format {
                    HashFormat::Argon2i => HashAlgorithm::Argon2i,
                    HashFormat::Argon2d => HashAlgorithm::Argon2d,
                    _ => HashAlgorithm::Argon2id,
                },
                m_cost: Some(argon.m_cost()),
                t_cost: Some(argon.t_cost()),
                p_cost: Some(argon.p_cost()),
                ..HashParams::default()
            }
        }
        Parsed::Scrypt(phc) => {
            let scrypt = scrypt::Params::try_from(&phc).map_err(|err| malformed(format, err))?;
            HashParams {
                algorithm: HashAlgorithm::Scrypt,
                log_n: Some(scrypt.log_n()),
                r: Some(scrypt.r()),
                p: Some(scrypt.p()),
                ..HashParams::default()
            }
        }
        Parsed::Bcrypt(text) => {
            let parts: bcrypt::HashParts = text.parse().map_err(|err| malformed(format, err))?;
            HashParams {
                cost: Some(parts.get_cost()),
                ..HashParams::new(HashAlgorithm::Bcrypt)
            }
        }
        Parsed::ShaCrypt(text) => HashParams {
            rounds: Some(sha_crypt_rounds(text)),
            ..HashParams::new(if format == HashFormat::Sha256Crypt {
                HashAlgorithm::Sha256Crypt
            } else {
                HashAlgorithm::Sha512Crypt
            })
        },
        Parsed::LdapSha(_) => {
            let digest = sha1::Sha1::digest(password.as_bytes());
            return Ok(format!(
                "{{SHA}}{}",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        Parsed::Plain(_) => return Ok(format!("{{PLAIN}}{password}")),
    };
    hash_password(password.as_bytes(), &params)
}

fn sha_crypt_rounds(hash: &str) -> u32 {
    hash[3..]
        .strip_prefix("rounds=")
        .and_then(|rest| rest.split('$').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(sha_crypt::Params::RECOMMENDED_ROUNDS)
}

/// The part of `hash` that decides what verifying it costs (algorithm and
/// parameters, without salt and output), to group the hashes of a file.
pub fn cost_signature(hash: &str) -> String {
    match HashFormat::detect(hash) {
        Some(
            HashFormat::Argon2id | HashFormat::Argon2i | HashFormat::Argon2d | HashFormat::Scrypt,
        ) => {
            // `$id$v=..$params$salt$hash` or `$id$params$salt$hash`.
            let fields: Vec<&str> = hash.split('$').collect();
            fields[..fields.len().saturating_sub(2)].join("$")
        }
        Some(HashFormat::Bcrypt) => hash
            .get(..6)
            .unwrap_or(hash)
            .replace("$2a", "$2b")
            .replace("$2y", "$2b"),
        Some(format @ (HashFormat::Sha256Crypt | HashFormat::Sha512Crypt)) => {
            format!("{}{}", format.name(), sha_crypt_rounds(hash))
        }
        Some(format) => format.name().to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
#[path = "password_tests.rs"]
mod tests;
