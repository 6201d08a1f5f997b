//! Envelope addresses (`user@domain`) and addresses found in headers.

use serde::Serialize;
use std::fmt;

/// Longest local part accepted (RFC 5321 §4.5.3.1.1).
const MAX_USER_LEN: usize = 64;
/// Longest domain accepted (RFC 5321 §4.5.3.1.2).
const MAX_DOMAIN_LEN: usize = 255;

/// Why a text is not a usable envelope address. The message quotes the
/// offending text so an API error names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `@`, or nothing on one side of it.
    #[error("invalid address {0:?}: expected user@domain")]
    Shape(String),
    /// The local part has characters an envelope cannot carry.
    #[error("invalid address {0:?}: the local part contains whitespace, control characters or <>")]
    User(String),
    /// The domain is not a host name or an address literal.
    #[error("invalid address {0:?}: the domain is not a valid host name")]
    Domain(String),
    /// Longer than SMTP allows.
    #[error("invalid address {0:?}: too long")]
    Length(String),
}

/// An envelope address: `user@domain`, both parts non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnvelopeAddress {
    user: String,
    domain: String,
}

impl EnvelopeAddress {
    /// Parse `user@domain`; the split is at the last `@` (a quoted local part
    /// may contain one). Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let text = text.trim();
        let (user, domain) = text
            .rsplit_once('@')
            .filter(|(user, domain)| !user.is_empty() && !domain.is_empty())
            .ok_or_else(|| AddressError::Shape(text.to_owned()))?;
        if user.len() > MAX_USER_LEN || domain.len() > MAX_DOMAIN_LEN {
            return Err(AddressError::Length(text.to_owned()));
        }
        if user
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        {
            return Err(AddressError::User(text.to_owned()));
        }
        if !valid_domain(domain) {
            return Err(AddressError::Domain(text.to_owned()));
        }
        Ok(EnvelopeAddress {
            user: user.to_owned(),
            domain: domain.to_owned(),
        })
    }

    /// The local part.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `user@domain`.
    pub fn email(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }
}

impl fmt::Display for EnvelopeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.domain)
    }
}

/// A domain: dot-separated labels of letters, digits and hyphens (UTF-8
/// letters allowed), or an address literal in brackets.
fn valid_domain(domain: &str) -> bool {
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
        return literal.parse::<std::net::IpAddr>().is_ok();
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    })
}

/// An address taken from a header such as `From:` (`Name <user@domain>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderAddress {
    /// `user@domain`.
    pub email: String,
    /// The display name, if any.
    pub name: Option<String>,
    /// The local part (text before the last `@`).
    pub user: String,
    /// The domain (text after the last `@`).
    pub domain: String,
}

impl HeaderAddress {
    /// Parse the first address of a header value: `Name <a@b>`,
    /// `"Quoted, Name" <a@b>`, or a bare `a@b`. `None` when no address can
    /// be found.
    pub fn parse_first(value: &str) -> Option<Self> {
        let value = value.trim();
        let (name, email) = match value.find('<') {
            Some(open) => {
                let close = value[open..].find('>')? + open;
                let name = unquote(value[..open].trim());
                let name = (!name.is_empty()).then_some(name);
                (name, value[open + 1..close].trim())
            }
            // A bare list: the first element, without a trailing comment.
            None => (None, value.split(',').next()?.split('(').next()?.trim()),
        };
        let (user, domain) = email.rsplit_once('@')?;
        if user.is_empty() || domain.is_empty() {
            return None;
        }
        Some(HeaderAddress {
            email: email.to_owned(),
            name,
            user: user.to_owned(),
            domain: domain.to_owned(),
        })
    }
}

/// Strip one level of double quotes and backslash escapes.
fn unquote(text: &str) -> String {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_addresses() {
        let addr = EnvelopeAddress::parse(" some.one@example.com ").unwrap();
        assert_eq!(addr.user(), "some.one");
        assert_eq!(addr.domain(), "example.com");
        assert_eq!(addr.to_string(), "some.one@example.com");
        assert_eq!(
            EnvelopeAddress::parse("a@[127.0.0.1]").unwrap().domain(),
            "[127.0.0.1]"
        );
        for bad in [
            "",
            "nobody",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@exa mple.com",
            "a@-x.com",
            "a@x..com",
            "<a>@x.com",
            "a@[not-an-ip]",
        ] {
            let err = EnvelopeAddress::parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid address"), "{bad}: {err}");
        }
        let long = format!("{}@x.com", "u".repeat(65));
        assert!(matches!(
            EnvelopeAddress::parse(&long),
            Err(AddressError::Length(_))
        ));
    }

    #[test]
    fn header_addresses() {
        let a = HeaderAddress::parse_first("\"Doe, John\" <john@doe.com>").unwrap();
        assert_eq!(a.name.as_deref(), Some("Doe, John"));
        assert_eq!(a.email, "john@doe.com");
        assert_eq!((a.user.as_str(), a.domain.as_str()), ("john", "doe.com"));
        let b = HeaderAddress::parse_first("jane@doe.com, x@y.z").unwrap();
        assert_eq!(b.email, "jane@doe.com");
        assert_eq!(b.name, None);
        let c = HeaderAddress::parse_first("Jane <jane@doe.com>").unwrap();
        assert_eq!(c.name.as_deref(), Some("Jane"));
        assert!(HeaderAddress::parse_first("undisclosed-recipients:;").is_none());
        assert!(HeaderAddress::parse_first("Broken <nope").is_none());
    }
}
