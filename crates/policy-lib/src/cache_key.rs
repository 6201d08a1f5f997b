//! Cache keys that never hold a secret in clear: a SHA-256 over a random
//! per-process salt and the key material (memoized arguments may be
//! passwords; a Redis pool is keyed by parameters that include one).

use sha2::{Digest, Sha256};

/// A cache key: the salted digest of what identifies an entry.
pub(crate) type CacheKey = [u8; 32];

/// Salted SHA-256 for cache keys. The salt is random per process, so a key
/// seen in a memory dump cannot be checked against a guessed password
/// without it.
pub(crate) struct KeyDigest {
    salt: [u8; 32],
}

impl Default for KeyDigest {
    /// A digest with a fresh random salt.
    fn default() -> Self {
        let mut salt = [0u8; 32];
        if let Err(err) = getrandom::fill(&mut salt) {
            // Still a digest, never the clear text; only the salt is lost.
            tracing::warn!("no random salt for policy-library cache keys: {err}");
        }
        KeyDigest { salt }
    }
}

impl KeyDigest {
    /// The key for the material `feed` writes into the hasher.
    pub(crate) fn key(&self, feed: impl FnOnce(&mut Sha256)) -> CacheKey {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        feed(&mut hasher);
        hasher.finalize().into()
    }
}

/// Write `bytes` length-prefixed, so consecutive fields cannot run together
/// (`("ab", "c")` and `("a", "bc")` give different keys).
pub(crate) fn update_field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_delimited_and_the_salt_differs_per_instance() {
        let digest = KeyDigest::default();
        let ab_c = digest.key(|h| {
            update_field(h, b"ab");
            update_field(h, b"c");
        });
        let a_bc = digest.key(|h| {
            update_field(h, b"a");
            update_field(h, b"bc");
        });
        assert_ne!(ab_c, a_bc);
        let again = digest.key(|h| {
            update_field(h, b"ab");
            update_field(h, b"c");
        });
        assert_eq!(ab_c, again);
        let other = KeyDigest::default().key(|h| {
            update_field(h, b"ab");
            update_field(h, b"c");
        });
        assert_ne!(ab_c, other, "another process (salt) gives another key");
    }
}
