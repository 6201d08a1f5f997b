//! The `Authorization` header: `Basic` and `Bearer` credentials.

use aaa::Secret;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Standard base64, with or without padding (clients differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Credentials offered in an `Authorization` header. Secrets are masked in
/// `Debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Basic base64(user[:password])`. `password` is `None` when the
    /// decoded text has no colon, `Some("")` when it ends with one.
    Basic {
        /// The user name (UTF-8).
        user: String,
        /// The password, if a colon was present.
        password: Option<Secret>,
    },
    /// `Bearer token`.
    Bearer {
        /// The token.
        token: Secret,
    },
}

/// Why an `Authorization` header was refused with `400`. Messages never
/// include the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The header is not visible ASCII.
    #[error("the Authorization header is not valid text")]
    NotText,
    /// The header has no credentials after the scheme.
    #[error("the Authorization header has no credentials")]
    Empty,
    /// A scheme other than Basic or Bearer.
    #[error("unsupported authorization scheme {0:?}")]
    UnknownScheme(String),
    /// The Basic credentials are not base64 of UTF-8 `user[:password]`.
    #[error("malformed Basic credentials: {0}")]
    MalformedBasic(&'static str),
}

impl Credential {
    /// Parse an `Authorization` header value. Scheme names are
    /// case-insensitive.
    pub fn parse(header: &[u8]) -> Result<Self, CredentialError> {
        let text = std::str::from_utf8(header).map_err(|_| CredentialError::NotText)?;
        let text = text.trim();
        let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            if rest.is_empty() {
                return Err(CredentialError::Empty);
            }
            Self::parse_basic(rest)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if rest.is_empty() || rest.contains(char::is_whitespace) {
                return Err(CredentialError::Empty);
            }
            Ok(Credential::Bearer {
                token: Secret::new(rest.as_bytes()),
            })
        } else {
            let shown: String = scheme.chars().take(20).collect();
            Err(CredentialError::UnknownScheme(shown))
        }
    }

    fn parse_basic(encoded: &str) -> Result<Self, CredentialError> {
        let decoded = BASE64
            .decode(encoded)
            .map_err(|_| CredentialError::MalformedBasic("not base64"))?;
        let (user, password) = match decoded.iter().position(|&b| b == b':') {
            Some(colon) => (&decoded[..colon], Some(Secret::new(&decoded[colon + 1..]))),
            None => (&decoded[..], None),
        };
        let user = std::str::from_utf8(user)
            .map_err(|_| CredentialError::MalformedBasic("the user name is not UTF-8"))?;
        Ok(Credential::Basic {
            user: user.to_owned(),
            password,
        })
    }

    /// `Basic` or `Bearer`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Credential::Basic { .. } => "Basic",
            Credential::Bearer { .. } => "Bearer",
        }
    }

    /// The user name, for log lines (`None` for a bearer token).
    pub fn user(&self) -> Option<&str> {
        match self {
            Credential::Basic { user, .. } => Some(user),
            Credential::Bearer { .. } => None,
        }
    }

    /// The secret part, for redacting error texts.
    pub fn secret(&self) -> Option<&Secret> {
        match self {
            Credential::Basic { password, .. } => password.as_ref(),
            Credential::Bearer { token } => Some(token),
        }
    }

    /// The fields a verdict cache keys on: scheme, user, and whether a
    /// password was given and which (hashed with a salt by the cache; the
    /// clear password is never kept).
    pub fn cache_fields(&self) -> Vec<&[u8]> {
        match self {
            Credential::Basic { user, password } => match password {
                Some(password) => vec![b"Basic", user.as_bytes(), b"password", password.expose()],
                None => vec![b"Basic", user.as_bytes(), b"no-password"],
            },
            Credential::Bearer { token } => vec![b"Bearer", token.expose()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(plain: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(plain)
        )
    }

    #[test]
    fn basic_password_present_empty_or_missing() {
        let parsed = Credential::parse(basic("scott:tiger").as_bytes()).unwrap();
        assert_eq!(
            parsed,
            Credential::Basic {
                user: "scott".into(),
                password: Some(Secret::new("tiger"))
            }
        );
        let empty = Credential::parse(basic("scott:").as_bytes()).unwrap();
        assert_eq!(empty.secret(), Some(&Secret::new("")));
        let missing = Credential::parse(basic("scott").as_bytes()).unwrap();
        assert_eq!(missing.secret(), None);
        assert_eq!(missing.user(), Some("scott"));
        // Only the first colon separates; the password may hold more.
        let colons = Credential::parse(basic("u:a:b").as_bytes()).unwrap();
        assert_eq!(colons.secret(), Some(&Secret::new("a:b")));
        // Scheme case and missing padding are tolerated.
        let lower = Credential::parse(b"basic c2NvdHQ6dGlnZXI").unwrap();
        assert_eq!(lower, parsed);
    }

    #[test]
    fn bearer() {
        let parsed = Credential::parse(b"Bearer abc.def").unwrap();
        assert_eq!(parsed.scheme(), "Bearer");
        assert_eq!(parsed.secret(), Some(&Secret::new("abc.def")));
        assert!(!format!("{parsed:?}").contains("abc.def"));
    }

    #[test]
    fn malformed_headers() {
        let cases: [(&[u8], CredentialError); 6] = [
            (b"Basic", CredentialError::Empty),
            (b"Basic !!!", CredentialError::MalformedBasic("not base64")),
            (b"Bearer", CredentialError::Empty),
            (b"Bearer a b", CredentialError::Empty),
            (
                b"Digest x=1",
                CredentialError::UnknownScheme("Digest".into()),
            ),
            (b"\xff\xfe", CredentialError::NotText),
        ];
        for (header, expected) in cases {
            assert_eq!(Credential::parse(header), Err(expected), "{header:?}");
        }
        let latin1 = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b"\xe9t\xe9:pw")
        );
        assert!(matches!(
            Credential::parse(latin1.as_bytes()),
            Err(CredentialError::MalformedBasic(_))
        ));
    }

    #[test]
    fn cache_keys_distinguish_every_field_and_hide_the_password() {
        let cache: policy::VerdictCache<policy::LoginVerdict> = policy::VerdictCache::new(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(5),
            10,
        );
        let generation = policy::LoginGeneration::default();
        let key = |header: &str| {
            let credential = Credential::parse(header.as_bytes()).unwrap();
            cache.key(generation, &credential.cache_fields())
        };
        let keys = [
            key(&basic("scott:tiger")),
            key(&basic("scott:")),
            key(&basic("scott")),
            key(&basic("scot:ttiger")),
            key("Bearer scott:tiger"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
            assert!(!a.0.windows(5).any(|w| w == b"tiger"));
        }
        assert_eq!(key(&basic("scott:tiger")), keys[0]);
    }
}
