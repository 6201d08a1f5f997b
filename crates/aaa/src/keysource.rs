//! [`KeySource`]: where key material comes from. It lives here, beside
//! [`crate::Secret`], so that `tls` can take one without depending on the
//! Lua runtime; `policy` re-exports it for the Lua parameter tables.

use serde::Deserialize;
use std::path::PathBuf;

/// Where secret or certificate bytes come from: a file path, or the bytes
/// inline as `{ key_data = '...' }`. `Debug` never shows inline data.
#[derive(Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(untagged)]
pub enum KeySource {
    /// Read the bytes from this file.
    File(PathBuf),
    /// The bytes themselves.
    Data {
        /// Inline key material.
        key_data: String,
    },
}

impl KeySource {
    /// Read the bytes; a missing or unreadable file is an error naming it.
    pub fn load(&self) -> std::io::Result<Vec<u8>> {
        match self {
            KeySource::File(path) => std::fs::read(path).map_err(|err| {
                std::io::Error::new(err.kind(), format!("reading {}: {err}", path.display()))
            }),
            KeySource::Data { key_data } => Ok(key_data.as_bytes().to_vec()),
        }
    }

    /// A label for messages: the path, or `inline key_data`.
    pub fn describe(&self) -> String {
        match self {
            KeySource::File(path) => path.display().to_string(),
            KeySource::Data { .. } => "inline key_data".to_owned(),
        }
    }
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_file() {
        let inline: KeySource = serde_json::from_str(r#"{"key_data":"s3cret"}"#).unwrap();
        assert_eq!(inline.load().unwrap(), b"s3cret");
        assert!(!format!("{inline:?}").contains("s3cret"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "pem").unwrap();
        let file: KeySource = serde_json::from_value(serde_json::json!(path)).unwrap();
        assert_eq!(file.load().unwrap(), b"pem");

        let missing = KeySource::File(dir.path().join("nope"));
        let err = missing.load().unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn unknown_table_keys_rejected() {
        assert!(serde_json::from_str::<KeySource>(r#"{"vault_path":"x"}"#).is_err());
    }
}
