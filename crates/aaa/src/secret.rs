/// A password or token. Its `Debug` and `Display` print nothing of the
/// value, so it cannot leak into a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wrap secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret bytes, for the one place that must see them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Replace every occurrence of `secret` in `text` with `<redacted>`, for
/// error messages that came from code we do not control (a Lua handler may
/// put the password into its own error text).
pub fn redact(text: &str, secret: &Secret) -> String {
    match std::str::from_utf8(secret.expose()) {
        Ok(needle) if !needle.is_empty() => text.replace(needle, "<redacted>"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
        assert_eq!(secret.expose(), b"hunter2");
    }

    #[test]
    fn redacts_inside_text() {
        let secret = Secret::new("hunter2");
        assert_eq!(
            redact("bad password hunter2!", &secret),
            "bad password <redacted>!"
        );
        assert_eq!(redact("nothing here", &Secret::new("")), "nothing here");
    }
}
