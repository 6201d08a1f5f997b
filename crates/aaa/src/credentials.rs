//! Credential files: htpasswd lines `user:hash[:group1,group2]`, with
//! `#` comments and blank lines, as `htpasswd -B` and `mkpasswd` write
//! them. Parsing checks every hash (format, well-formedness, cost limits)
//! so a bad line is reported with its number when the file is loaded, not
//! at a login; error messages never quote a line (it holds a hash).

use crate::hashing::{cost_signature, dummy_hash_like};
use crate::password::{check_hash, verify_password, HashFormat, VerifyOptions};
use std::collections::HashMap;
use tracing::warn;

/// Largest credential file accepted, in bytes (64 MiB: about half a
/// million argon2id entries).
pub const MAX_CREDENTIAL_FILE_BYTES: usize = 64 << 20;

/// Why a credential file was refused: the 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct CredentialParseError {
    /// 1-based line number (0 for the file as a whole).
    pub line: usize,
    /// What is wrong with it; never the line's text.
    pub reason: String,
}

/// One user of a credential file.
struct Entry {
    hash: String,
    groups: Vec<String>,
}

/// The users of one credential file, ready to check logins against.
pub struct CredentialSet {
    entries: HashMap<String, Entry>,
    /// Verified against when the user is unknown, so that costs as much as
    /// a wrong password (timing does not tell which users exist).
    dummy: Option<String>,
    allow_weak: bool,
}

impl std::fmt::Debug for CredentialSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSet")
            .field("users", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn line_error(line: usize, reason: impl Into<String>) -> CredentialParseError {
    CredentialParseError {
        line,
        reason: reason.into(),
    }
}

impl CredentialSet {
    /// Parse a credential file. Weak hash formats are refused unless
    /// `options.allow_weak`. Computes the dummy hash for unknown users
    /// (costs one hash of the most common kind in the file).
    pub fn parse(text: &[u8], options: VerifyOptions) -> Result<Self, CredentialParseError> {
        if text.len() > MAX_CREDENTIAL_FILE_BYTES {
            return Err(line_error(
                0,
                format!("the file is larger than {MAX_CREDENTIAL_FILE_BYTES} bytes"),
            ));
        }
        let mut entries = HashMap::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        let mut costs: Vec<(String, usize, String)> = Vec::new();
        for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let text = std::str::from_utf8(raw).map_err(|_| line_error(line, "not UTF-8"))?;
            let trimmed = text.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (user, entry) = parse_line(line, text, options)?;
            if let Some(first) = first_line.get(&user) {
                return Err(line_error(
                    line,
                    format!("the user is already defined on line {first}"),
                ));
            }
            let signature = cost_signature(&entry.hash);
            match costs.iter_mut().find(|(s, _, _)| *s == signature) {
                Some((_, count, _)) => *count += 1,
                None => costs.push((signature, 1, entry.hash.clone())),
            }
            first_line.insert(user.clone(), line);
            entries.insert(user, entry);
        }
        // The first of the most frequent kinds: ties go to the earliest.
        let mut most_common: Option<&(String, usize, String)> = None;
        for candidate in &costs {
            if most_common.is_none_or(|best| candidate.1 > best.1) {
                most_common = Some(candidate);
            }
        }
        let dummy = match most_common {
            Some((_, _, hash)) => Some(
                dummy_hash_like(hash)
                    .map_err(|err| line_error(0, format!("no dummy hash: {err}")))?,
            ),
            None => None,
        };
        Ok(CredentialSet {
            entries,
            dummy,
            allow_weak: options.allow_weak,
        })
    }

    /// How many users the file defines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file defines no user.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `user` is defined.
    pub fn contains(&self, user: &str) -> bool {
        self.entries.contains_key(user)
    }

    /// The groups of `username` when `password` matches its hash; `None`
    /// for a wrong password or an unknown user (which costs the same: the
    /// password is verified against a dummy hash of the file's usual kind).
    pub fn check(&self, username: &[u8], password: &[u8]) -> Option<&[String]> {
        let options = VerifyOptions {
            allow_weak: self.allow_weak,
        };
        let entry = std::str::from_utf8(username)
            .ok()
            .and_then(|user| self.entries.get(user));
        let Some(entry) = entry else {
            if let Some(dummy) = &self.dummy {
                let _ = verify_password(dummy, password, options);
            }
            return None;
        };
        match verify_password(&entry.hash, password, options) {
            Ok(true) => Some(&entry.groups),
            Ok(false) => None,
            Err(err) => {
                // Parsing checked every hash, so this is not expected.
                warn!(error = %err, "credential entry could not be verified; refused");
                None
            }
        }
    }
}

/// One `user:hash[:groups]` line.
fn parse_line(
    line: usize,
    text: &str,
    options: VerifyOptions,
) -> Result<(String, Entry), CredentialParseError> {
    let mut fields = text.splitn(3, ':');
    let user = fields.next().unwrap_or("");
    let Some(hash) = fields.next() else {
        return Err(line_error(line, "expected user:hash[:group,group...]"));
    };
    if user.is_empty() {
        return Err(line_error(line, "empty user name"));
    }
    if user.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(line_error(
            line,
            "the user name has whitespace or control characters",
        ));
    }
    if hash.is_empty() {
        return Err(line_error(line, "empty password hash"));
    }
    check_hash(hash, options).map_err(|err| line_error(line, err.to_string()))?;
    let groups = match fields.next() {
        None => Vec::new(),
        Some(list) if list.trim().is_empty() => Vec::new(),
        Some(list) => parse_groups(line, list)?,
    };
    // A `{PLAIN}` password may hold colons: it cannot have groups.
    if HashFormat::detect(hash) == Some(HashFormat::Plain) && !groups.is_empty() {
        return Err(line_error(
            line,
            "a {PLAIN} entry cannot list groups (its password may hold ':')",
        ));
    }
    Ok((
        user.to_owned(),
        Entry {
            hash: hash.to_owned(),
            groups,
        },
    ))
}

fn parse_groups(line: usize, list: &str) -> Result<Vec<String>, CredentialParseError> {
    let mut groups: Vec<String> = Vec::new();
    for group in list.split(',').map(str::trim) {
        if group.is_empty() {
            return Err(line_error(line, "empty group name"));
        }
        if group.chars().any(|c| c.is_control() || c == ':') {
            return Err(line_error(
                line,
                "a group name has ':' or control characters",
            ));
        }
        if !groups.iter().any(|g| g == group) {
            groups.push(group.to_owned());
        }
    }
    Ok(groups)
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
