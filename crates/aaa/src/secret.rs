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

/// Secrets shorter than this are never searched and replaced inside a
/// message (a short needle matches unrelated words and misses spellings):
/// a message containing one is withheld whole.
pub const MIN_REDACTABLE_LEN: usize = 6;

/// What replaces a message that may contain a secret we cannot cut out.
pub const WITHHELD: &str = "<message withheld: it may contain the credential>";

/// `text` without `secret`, for error messages that came from code we do
/// not control (a Lua handler may put the password into its own error
/// text, raw or quoted with `%q`). Each spelling of the secret (as is, Lua
/// `%q`, Rust-escaped) is replaced with `<redacted>`; a secret that is not
/// UTF-8 or is shorter than [`MIN_REDACTABLE_LEN`] cannot be cut out
/// reliably, so then the whole message is withheld if any spelling of it
/// (or, for non-UTF-8 secrets, any part of it) may be present.
pub fn redact(text: &str, secret: &Secret) -> String {
    let bytes = secret.expose();
    if bytes.is_empty() {
        return text.to_owned();
    }
    let Ok(plain) = std::str::from_utf8(bytes) else {
        return WITHHELD.to_owned();
    };
    let spellings = spellings(plain);
    if plain.chars().count() < MIN_REDACTABLE_LEN {
        return if spellings.iter().any(|s| text.contains(s.as_str())) {
            WITHHELD.to_owned()
        } else {
            text.to_owned()
        };
    }
    spellings.iter().fold(text.to_owned(), |out, spelling| {
        out.replace(spelling.as_str(), "<redacted>")
    })
}

/// The ways a secret shows up in error text: as is, quoted by Lua's `%q`
/// (without the quotes), and escaped by Rust's `{:?}`/`escape_default`.
fn spellings(plain: &str) -> Vec<String> {
    let mut all = vec![
        plain.to_owned(),
        lua_quoted(plain),
        plain.escape_debug().to_string(),
        plain.escape_default().to_string(),
    ];
    all.sort();
    all.dedup();
    // Longest first, so a spelling that contains another is cut whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    all
}

/// `string.format('%q', s)` without its surrounding quotes.
fn lua_quoted(plain: &str) -> String {
    let mut out = String::with_capacity(plain.len());
    let chars: Vec<char> = plain.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next_is_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii_control() => {
                let code = c as u32;
                if next_is_digit {
                    out.push_str(&format!("\\{code:03}"));
                } else {
                    out.push_str(&format!("\\{code}"));
                }
            }
            c => out.push(c),
        }
    }
    out
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
    fn redacts_every_spelling() {
        let secret = Secret::new("pa\"ss\nword\\1");
        let lua_q = r#"pa\"ss\
word\\1"#;
        let text = format!(
            "raw pa\"ss\nword\\1 quoted {lua_q} debug {:?}",
            "pa\"ss\nword\\1"
        );
        let out = redact(&text, &secret);
        assert!(!out.contains("ss"), "{out}");
        assert_eq!(out.matches("<redacted>").count(), 3, "{out}");
    }

    #[test]
    fn short_or_binary_secrets_withhold_the_message() {
        let short = Secret::new("a");
        assert_eq!(redact("bad password a", &short), WITHHELD);
        assert_eq!(redact("nothing to see", &short), "nothing to see");
        let binary = Secret::new(vec![0xff, 0xfe, b'x', b'y', b'z', b'w', b'v']);
        assert_eq!(redact("anything", &binary), WITHHELD);
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
