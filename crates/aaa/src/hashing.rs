//! Making password hashes: [`hash_password`] with an algorithm and its
//! parameters, and [`dummy_hash_like`] (a hash as costly as a given one,
//! for unknown users).

use crate::password::{
    check_hash, malformed, parse, HashFormat, Parsed, PasswordError, VerifyOptions,
    MAX_ARGON2_M_COST, MAX_ARGON2_P_COST, MAX_ARGON2_T_COST, MAX_BCRYPT_COST, MAX_SCRYPT_MEMORY,
    MAX_SCRYPT_P, MAX_SHA_CRYPT_ROUNDS,
};
use base64::Engine;
use serde::Deserialize;
use sha2::Digest;

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

impl HashAlgorithm {
    /// Every algorithm with its name (as in Lua and on the command line).
    pub const ALL: [(&'static str, HashAlgorithm); 7] = [
        ("argon2id", HashAlgorithm::Argon2id),
        ("argon2i", HashAlgorithm::Argon2i),
        ("argon2d", HashAlgorithm::Argon2d),
        ("bcrypt", HashAlgorithm::Bcrypt),
        ("scrypt", HashAlgorithm::Scrypt),
        ("sha256-crypt", HashAlgorithm::Sha256Crypt),
        ("sha512-crypt", HashAlgorithm::Sha512Crypt),
    ];
}

impl std::str::FromStr for HashAlgorithm {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        HashAlgorithm::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, algorithm)| *algorithm)
            .ok_or_else(|| {
                let names: Vec<&str> = HashAlgorithm::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown algorithm {name:?} (one of {})", names.join(", "))
            })
    }
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
